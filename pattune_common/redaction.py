"""Hiding passwords in any text before it is shown, logged or stored.

Storage URLs carry a password as ``scheme://user:password@host`` or as a
``?password=`` query parameter (libpq reads both). Every URL pattune shows goes
through :func:`redact_url`; :func:`redact_text` is the net under it for text
pattune did not write itself (a driver's error, an exception's text) on its way
to a terminal or a file.

Both err on the side of hiding: everything from the first ``:`` of the user
part to the *last* ``@`` is hidden, because URL parsers disagree about where an
unescaped ``@`` in a password ends it (SQLAlchemy stops at the first, others at
the last).
"""

from __future__ import annotations

import re

__all__ = ["redact_text", "redact_url"]

_PASSWORD_PARAM = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&#\s]*", re.I)
_TEXT_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#\s]*):[^?#\s]*@")
_BARE_USERINFO = re.compile(r"([^:/@?#\s]*):[^?#\s]*@")  # "user:password@host/db"


def redact_url(url: str) -> str:
    """``url`` with its password (user part or query parameter) replaced by ``***``."""
    userinfo = _TEXT_USERINFO if "://" in url else _BARE_USERINFO
    m = userinfo.match(url)
    if m:
        url = f"{m.group(1)}:***@{url[m.end():]}"
    return redact_text(url)  # and any URL further in (a space before it, say)


def redact_text(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@...`` URL in it hidden."""
    return _PASSWORD_PARAM.sub(r"\1***", _TEXT_USERINFO.sub(r"\1:***@", text))
