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


class OutputError(PattuneError):
    """Work was done but what it produced could not all be written (full disk, quota).

    The message names the file, what is not saved and what to do. The CLI prints
    it as one line and exits with :attr:`exit_code` (1: the run failed, as
    opposed to 2: the input was bad). ``result`` carries what the call would have
    returned, so a Python caller keeps what was measured.
    """

    exit_code = 1

    def __init__(self, message: str, *, result: object = None) -> None:
        super().__init__(message)
        self.result = result
