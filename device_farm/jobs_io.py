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
import threading
from typing import Any

from device_farm._records import MeasureJob, Measurement, file_sha256
from pattune_common import UserInputError

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
        with open(path) as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        raise UserInputError(f"jobs file {path} does not exist; pass --jobs with a JSON Lines "
                             "file of MeasureJob objects (see docs/device_farm.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
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
    """An append-only JSON Lines file of final Measurements; thread-safe appends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.done: dict[str, Measurement] = {}  # final results: a rerun skips these
        self.latest: dict[str, Measurement] = {}  # the last result of every job
        self.skipped_lines = 0
        if os.path.exists(path):
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as fh:
            raw = fh.read()
        for line in raw.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            try:
                m = Measurement.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                self.skipped_lines += 1  # a line cut short by a crash; its job runs again
                continue
            self._keep(m)
        if raw and not raw.endswith(b"\n"):
            with open(self.path, "ab") as fh:
                fh.write(b"\n")

    def _keep(self, m: Measurement) -> None:
        self.latest[m.job_id] = m
        if m.status.is_final():
            self.done[m.job_id] = m
        else:
            self.done.pop(m.job_id, None)

    def append(self, m: Measurement) -> None:
        """Write one result and flush it to disk before returning."""
        line = json.dumps(m.to_dict(), sort_keys=True) + "\n"
        with self._lock:
            with open(self.path, "a") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._keep(m)
