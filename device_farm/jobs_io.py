"""Reading job files and appending result files (JSON Lines), resumably.

A jobs file has one :class:`MeasureJob` JSON object per line; relative
``local_path``s are relative to the jobs file and a missing ``sha256`` is
computed. A results file has one :class:`Measurement` per line; a rerun skips every job
whose result there is final (``status.is_final()``) and measures again the ones
that only met device faults (the later line wins).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from typing import Any

from device_farm._records import MeasureJob, Measurement, file_sha256
from pattune_common import UserInputError
from pattune_common.files import read_input

__all__ = ["ResultsFile", "read_jobs"]


def _fill_files(data: dict[str, Any], base: str) -> None:
    art = data.get("artifact")
    if not isinstance(art, dict) or not isinstance(art.get("files", []), list):
        raise ValueError('"artifact" must be an object with a "files" list')  # noqa: TRY004
    for f in art.get("files", []):
        if not isinstance(f, dict) or not isinstance(f.get("local_path"), str):
            raise ValueError('each artifact file needs a "local_path" string')  # noqa: TRY004
        path = os.path.join(base, os.path.expanduser(f["local_path"]))
        if not os.path.isfile(path):
            raise ValueError(f"artifact file {path} does not exist")
        f["local_path"] = os.path.abspath(path)
        f.setdefault("name", os.path.basename(path))
        if "sha256" not in f:
            f["sha256"] = file_sha256(path)


def read_jobs(path: str) -> list[MeasureJob]:
    """Parse a jobs file; any bad line raises UserInputError naming the line."""
    try:
        lines = read_input(path, "jobs file", max_bytes=1 << 30).decode().splitlines()
    except FileNotFoundError:
        raise UserInputError(f"jobs file {path} does not exist; pass --jobs with a JSON Lines "
                             "file of MeasureJob objects (see docs/device_farm.md)") from None
    except UnicodeDecodeError as exc:
        raise UserInputError(f"jobs file {path} cannot be read: {exc}") from None
    base = os.path.dirname(os.path.abspath(path))
    jobs: list[MeasureJob] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("a line must be a JSON object")  # noqa: TRY004
            _fill_files(data, base)
            job = MeasureJob.from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise UserInputError(f"jobs file {path} line {n}: {msg}") from None
        if job.job_id in seen:
            raise UserInputError(f"jobs file {path} line {n}: job_id {job.job_id!r} repeats an "
                                 "earlier line; job ids must be unique")
        seen.add(job.job_id)
        jobs.append(job)
    if not jobs:
        raise UserInputError(f"jobs file {path} has no jobs; write one MeasureJob JSON per line")
    return jobs


class ResultsFile:
    """An append-only JSON Lines file of final Measurements; thread-safe appends.

    Opening checks at once that the file can be appended to, so a missing or
    read-only directory (or a directory given as the file) fails before anything
    is measured. An append that fails later (a full disk, a quota) does not
    raise: the line is kept in :attr:`unsaved`, the half-written bytes are cut
    off again, and every later append (and :meth:`flush_unsaved`) writes the
    kept lines first, so a disk that was full for a moment loses nothing. The
    caller asks :attr:`unsaved` at the end and reports what is still not on disk.

    Raises:
        UserInputError: The file cannot be created or appended to.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.done: dict[str, Measurement] = {}  # final results: a rerun skips these
        self.latest: dict[str, Measurement] = {}  # the last result of every job
        self.skipped_lines = 0
        #: Results not yet on disk, oldest first, with the last write error.
        self.unsaved: list[Measurement] = []
        self.write_error: str | None = None
        self._unsaved_lines: list[bytes] = []
        if os.path.isdir(path):
            raise UserInputError(f"--out {path} is a directory; give a file such as "
                                 f"{os.path.join(path, 'results.jsonl')}")
        if os.path.isfile(path):  # never read a device: /dev/full reads as endless zeros
            self._load()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.close(fd)
        except OSError as exc:
            raise UserInputError(f"--out {path} cannot be written: {exc.strerror}; give a file "
                                 "in an existing, writable directory") from None

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                for raw in fh:  # line by line: a results file may be large
                    line = raw.decode("utf-8", "replace")
                    if not line.strip():
                        continue
                    try:
                        m = Measurement.from_dict(json.loads(line))
                    except (ValueError, KeyError, TypeError, RecursionError):
                        self.skipped_lines += 1  # cut short by a crash; its job runs again
                        continue
                    self._keep(m)
        except OSError as exc:
            raise UserInputError(f"--out {self.path} cannot be read: {exc.strerror}") from None


    def _keep(self, m: Measurement) -> None:
        self.latest[m.job_id] = m
        if m.status.is_final():
            self.done[m.job_id] = m
        else:
            self.done.pop(m.job_id, None)

    def append(self, m: Measurement) -> None:
        """Write one result (and any kept from failed writes), flushed to disk.

        Never raises for the disk: a failure keeps the result in :attr:`unsaved`.
        """
        line = (json.dumps(m.to_dict(), sort_keys=True, allow_nan=False) + "\n").encode()
        with self._lock:
            self._keep(m)
            self.unsaved.append(m)
            self._unsaved_lines.append(line)
            self._write_unsaved()

    def flush_unsaved(self) -> list[Measurement]:
        """Try once more to write what failed before; return what is still not on disk."""
        with self._lock:
            if self._unsaved_lines:
                self._write_unsaved()
            return list(self.unsaved)

    def _write_unsaved(self) -> None:
        data = b"".join(self._unsaved_lines)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self.write_error = f"{exc.strerror or exc}"
            return
        try:
            st = os.fstat(fd)
            regular = stat.S_ISREG(st.st_mode)
            if regular and st.st_size and not _ends_with_newline(self.path, st.st_size):
                data = b"\n" + data  # end a line cut short earlier, so the next one parses
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                if regular:
                    os.fsync(fd)
            except OSError as exc:
                self.write_error = f"{exc.strerror or exc}"
                if regular:  # take back a partial write: the file holds whole lines only
                    try:
                        os.ftruncate(fd, st.st_size)
                    except OSError:
                        pass  # the next write starts with a newline instead
                return
            self._unsaved_lines.clear()
            self.unsaved.clear()
        finally:
            os.close(fd)


def _ends_with_newline(path: str, size: int) -> bool:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"
