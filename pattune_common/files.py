"""Output files and folders: checked before the work, written so a failure is reported.

A command that works for an hour and then cannot write its result has wasted
the hour, so every output path is checked *before* the work starts
(:func:`check_output_file`, :func:`check_output_dir`: it is not the wrong kind,
its folder exists or can be made, and something can be written there). The
result itself is written with :func:`write_text`/:func:`write_bytes`: to a
temporary file in the same folder, flushed to disk, then renamed over the
target, so a full disk leaves the old file (or none), never half of one, and
the failure is an :class:`~pattune_common.errors.OutputError` naming the file.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pattune_common.errors import OutputError, UserInputError

__all__ = ["check_output_dir", "check_output_file", "json_safe", "read_input", "write_bytes",
           "write_text"]


def read_input(path: str | os.PathLike[str], what: str, *, max_bytes: int = 64 << 20) -> bytes:
    """The bytes of a file the user named, refusing what is not a small regular file.

    ``/dev/zero`` or a FIFO given as an inventory would be read forever (or block), a
    huge file would fill memory: both are one line instead.

    Args:
        path: The file.
        what: What it is, starting the message (``"inventory"``, ``"jobs file"``).
        max_bytes: The largest file accepted.

    Raises:
        FileNotFoundError: It does not exist (the caller words that with its fix).
        UserInputError: It is a directory, a device or pipe, too big, or unreadable.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UserInputError(f"{what} {p} cannot be read: {exc.strerror or exc}") from None
    if p.is_dir():
        raise UserInputError(f"{what} {p} is a directory; give a file")
    if not p.is_file():
        raise UserInputError(f"{what} {p} is not a regular file (a device or a pipe?)")
    if st.st_size > max_bytes:
        raise UserInputError(f"{what} {p} is {st.st_size:,} bytes, more than the "
                             f"{max_bytes:,} accepted")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UserInputError(f"{what} {p} cannot be read: {exc.strerror or exc}") from None


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float made ``None`` (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def check_output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """Check that ``path`` can be written as a file later.

    Its folder must exist: a typo in a folder name should not create a tree of
    folders somewhere unexpected (``/nonexistent/dir`` as root).

    Args:
        path: The file the command will write at its end.
        flag: The flag or keyword that named it, for the message (``--summary-json``).

    Raises:
        UserInputError: It is a folder, its folder does not exist, or nothing can be
            written there.
    """
    p = Path(path)
    if p.is_dir():
        raise UserInputError(f"{flag} {p} is a directory; give a file path such as {p / 'out.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserInputError(f"{flag} {p}: directory {parent} does not exist; create it first")
    if p.exists() and not p.is_file():  # a device or a pipe: written into, not replaced
        try:
            with open(p, "ab"):
                pass
        except OSError as exc:
            raise UserInputError(f"{flag} {p} cannot be written: {exc.strerror or exc}") from None
        return p
    _probe(parent, flag, p)
    return p


def check_output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """Create the folder ``path`` (and its parents) and check files can be written in it.

    Raises:
        UserInputError: It is a file, it cannot be made, or it is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserInputError(f"{flag} {p} is a file; give a directory (it is created if missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"{flag} {p}: cannot create the directory: "
                             f"{exc.strerror or exc}") from None
    _probe(p, flag, p)
    return p


def _probe(folder: Path, flag: str, shown: Path) -> None:
    """Write and remove a temporary file in ``folder`` (permission bits do not stop root)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pattune-probe-")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise UserInputError(f"{flag} {shown}: cannot write in {folder}: "
                             f"{exc.strerror or exc}") from None


def write_bytes(path: str | os.PathLike[str], data: bytes, *, what: str = "") -> None:
    """Write ``data`` to ``path`` whole or not at all (temporary file, fsync, rename).

    Args:
        path: The file.
        data: Its content.
        what: What the file is, for the message (``"the run summary"``).

    Raises:
        OutputError: The write failed; the message names the file and the reason.
    """
    p = Path(path)
    label = f"{what} " if what else ""
    if p.exists() and not p.is_file():
        # A device or a pipe (/dev/stdout, a FIFO): write into it; renaming a temporary
        # file over it would replace the device node itself.
        try:
            with open(p, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise OutputError(f"could not write {label}{p}: {exc.strerror or exc}") from None
        return
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        # mkstemp makes 0600 files; keep the mode a plain open() would give (or had).
        os.fchmod(fd, p.stat().st_mode & 0o777 if p.exists() else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise OutputError(f"could not write {label}{p}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_text(path: str | os.PathLike[str], text: str, *, what: str = "") -> None:
    """:func:`write_bytes` for UTF-8 text."""
    write_bytes(path, text.encode(), what=what)
