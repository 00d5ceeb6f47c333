"""Storage URLs: which are accepted, their one normal form, and how they are shown.

A storage URL is an SQLAlchemy URL on SQLite (``sqlite:///pattune.db``, one
host) or PostgreSQL (``postgresql://user@host/db``, many hosts). A plain
``postgresql://`` or ``postgres://`` means psycopg 3, the driver pattune
depends on (SQLAlchemy would otherwise pick psycopg2, which is not installed).

Every function here is pure and thread-safe. A URL never reaches a log or a
message unredacted: :func:`redact_url` hides the password even of a URL that
does not parse.
"""

from __future__ import annotations

import sqlalchemy as sa

from pattune_common.errors import UserInputError
from pattune_common.redaction import redact_url as _redact

#: The fix every unusable-URL message ends with.
URL_FIX = "use e.g. sqlite:///pattune.db or postgresql+psycopg://user@host/dbname"

_BACKENDS = ("sqlite", "postgresql")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs and messages).

    See :mod:`pattune_common.redaction`: it hides the user part's password up to
    the last ``@`` and any ``password=`` query parameter, whether the URL parses
    or not.
    """
    return _redact(url)


def unusable_url(url: str, reason: str) -> UserInputError:
    """The one-line error for a storage URL that cannot be used, with the fix."""
    return UserInputError(f"database URL {redact_url(url)!r} is not usable ({reason}); {URL_FIX}")


def normalize_url(url: str) -> str:
    """Map ``postgresql://`` (and ``postgres://``) to psycopg 3 and check the backend.

    Idempotent: a normalised URL is returned unchanged.

    Raises:
        UserInputError: When the URL does not parse or names another database
            than SQLite or PostgreSQL; the message names the URL (password
            hidden) and the fix.
    """
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        # Not echoed: redaction finds a password by the URL's form, which this one lacks.
        raise UserInputError(f"the database URL given does not parse as a URL; {URL_FIX}") from None
    if parsed.get_backend_name() not in _BACKENDS:
        raise unusable_url(url, "it must start with sqlite:/// or postgresql://")
    return url
