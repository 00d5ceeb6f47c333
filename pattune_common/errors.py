"""The project's own error types.

Only misuse and bad configuration raise (STYLE rule 5); a candidate that fails to
compile, times out or computes the wrong answer is a *record* with an ``error``
string, never an exception. The CLI turns any :class:`PattuneError` (and
``ValueError`` from user input) into one line on stderr and exit code 2.
"""

from __future__ import annotations


class PattuneError(Exception):
    """Base of every error pattune raises on purpose.

    The message is meant for a user: it names the problem and, where there is
    one, the fix, on one line.
    """


class UserInputError(PattuneError, ValueError):
    """A file, flag, model spec, inventory or URL given by the user is unusable."""


class ConfigError(PattuneError, ValueError):
    """A configuration object was built with values outside their rules."""
