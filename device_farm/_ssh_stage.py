"""Placing an artifact's files on an SSH device in as few commands as possible.

Files live once per device in ``work_dir/cas/<sha256>``; an artifact's
directory ``work_dir/a/<hash>/`` holds symlinks to them by name. A tuning job
brings one new build (a small executable) and reuses the rest, so
:meth:`StagingMixin.stage` sends nothing itself when it can: the new file
travels on the stdin of the job's first run, and that same command links the
directory (:class:`~device_farm._ssh_wrapper.Prep`). Only files whose presence
is unknown and that are too big to send on a guess are asked about first, and
only files known to be missing besides the one sent with the run get a command
of their own. A file sent on a guess that turns out to be there already is
read and dropped by the device; a file that vanished (the work dir was cleaned
by another process) makes the run report it, and the protocol stages again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from device_farm._errors import DeviceFault, StagedFilesLost
from device_farm._records import Artifact, ArtifactFile, RunResult, file_sha256
from device_farm._ssh_wrapper import Head, Prep, Upload

__all__ = ["INLINE_MAX", "StagingMixin"]

#: Files up to this size are sent without asking whether the device has them: sending
#: 256 KiB costs less than a round trip to ask on any link worth measuring over.
INLINE_MAX = 256 * 1024

_PROBE = ('w=$1; shift; for p; do s=${p%%:*} z=${p#*:}; [ -f "$w/cas/$s" ] && '
          '[ $(($(wc -c <"$w/cas/$s"))) -eq "$z" ] || echo "$s"; done')
_DISK = re.compile(r"space|quota|too large|read-only", re.I)


class StagingMixin:
    """:meth:`stage` for :class:`~device_farm.SSHDevice` (which provides the commands)."""

    work_dir: str
    label: str

    def _command(self, argv: Sequence[str], *, timeout_s: float, cwd: str | None,
                 env: Mapping[str, str] | None, prep: Prep | None = None,
                 stdin: bytes | None = None) -> tuple[RunResult, Head]:
        raise NotImplementedError

    def _df(self) -> str:
        raise NotImplementedError

    def _init_staging(self) -> None:
        self._known: set[str] = set()  # sha256s present in the device's cas
        self._staged: set[str] = set()  # artifact hashes whose directory exists
        # artifact dir -> (artifact hash, what its first run prepares, the file it sends)
        self._pending: dict[str, tuple[str, Prep, ArtifactFile | None]] = {}
        self._local_sha: dict[tuple[str, int, int], str] = {}
        self._tidied = False

    def _forget_staged(self) -> None:
        self._known.clear()
        self._staged.clear()

    def _check_local(self, path: str, sha: str) -> int:
        """The file's size, after checking it still has the artifact's sha256."""
        if not os.path.isfile(path):
            raise ValueError(f"{path} does not exist; rebuild the artifact")
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._local_sha:
            self._local_sha[key] = file_sha256(path)
        if self._local_sha[key] != sha:
            raise ValueError(
                f"{path} has sha256 {self._local_sha[key][:12]}..., the artifact says "
                f"{sha[:12]}...; rebuild the artifact"
            )
        return st.st_size

    def stage(self, artifact: Artifact) -> str:
        """Plan the artifact's files onto the device; return its directory there.

        Files the device is known to have cost nothing; one small unknown file is
        sent with the first run in that directory, other missing ones now.
        """
        key = artifact.content_hash()
        adir = f"{self.work_dir}/a/{key}"
        if key in self._staged:
            return adir
        sizes = {f.sha256: self._check_local(f.local_path, f.sha256) for f in artifact.files}
        if not self._tidied:
            self._tidy()
        unknown = {f.sha256: f for f in artifact.files if f.sha256 not in self._known}
        big = [f for s, f in unknown.items() if sizes[s] > INLINE_MAX]
        missing = self._missing(big, sizes) if big else []
        small = sorted((f for s, f in unknown.items() if sizes[s] <= INLINE_MAX),
                       key=lambda f: sizes[f.sha256])
        inline = small.pop() if small else None  # the biggest that may travel with the run
        for f in missing + small:
            self._upload(f, sizes[f.sha256])
        upload = None if inline is None else Upload(inline.sha256, sizes[inline.sha256],
                                                    inline.executable)
        prep = Prep(work_dir=self.work_dir, artifact_dir=adir,
                    links=tuple((f.name, f.sha256) for f in artifact.files), upload=upload)
        self._pending[adir] = (key, prep, inline)
        return adir

    def _tidy(self) -> None:
        """Create the layout and remove partial uploads older than an hour (once)."""
        w = self.work_dir
        script = ('mkdir -p "$1/cas" "$1/a" "$1/tmp" && '
                  'find "$1/tmp" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {} +')
        r, _ = self._command(["sh", "-c", script, "sh", w], timeout_s=30, cwd="/", env=None)
        if r.exit_code != 0:
            raise DeviceFault(f"{self.label}: cannot create work dir {w}: "
                              f"{r.stderr.strip()[-300:]}")
        self._tidied = True

    def _missing(self, files: list[ArtifactFile], sizes: dict[str, int]) -> list[ArtifactFile]:
        """Of ``files``, those the device does not hold whole; the rest become known."""
        pairs = [f"{f.sha256}:{sizes[f.sha256]}" for f in files]
        r, _ = self._command(["sh", "-c", _PROBE, "sh", self.work_dir, *pairs], timeout_s=30,
                             cwd=None, env=None)
        if r.exit_code != 0:
            raise DeviceFault(f"{self.label}: cannot look at {self.work_dir}/cas: "
                              f"{r.stderr.strip()[-300:]}")
        absent = set(r.stdout.split())
        self._known.update(f.sha256 for f in files if f.sha256 not in absent)
        return [f for f in files if f.sha256 in absent]

    def _upload(self, f: ArtifactFile, size: int) -> None:
        """Send one file in a command of its own (a temporary name, then a rename)."""
        with open(f.local_path, "rb") as fh:
            data = fh.read()
        prep = Prep(work_dir=self.work_dir, upload=Upload(f.sha256, size, f.executable))
        _, head = self._command(["true"], timeout_s=60 + size / 50_000, cwd=None, env=None,
                                prep=prep, stdin=data)
        if head.fail:
            raise self._upload_fault(head.detail)
        self._known.add(f.sha256)

    def _upload_fault(self, detail: str) -> DeviceFault:
        # Name the free space only when the disk is what failed.
        free = self._df() if _DISK.search(detail) else ""
        return DeviceFault(f"{self.label}: upload failed: {detail or 'no reason given'}{free}")

    def _prep_for(self, cwd: str | None) -> tuple[Prep | None, bytes | None]:
        """What a command in ``cwd`` must prepare first, and the bytes it sends."""
        pending = self._pending.get(cwd) if cwd else None
        if pending is None:
            return None, None
        _, prep, inline = pending
        if inline is None:
            return prep, None
        with open(inline.local_path, "rb") as fh:
            return prep, fh.read()

    def _prep_done(self, cwd: str | None) -> None:
        pending = self._pending.pop(cwd, None) if cwd else None
        if pending is not None:
            key, prep, _ = pending
            self._staged.add(key)
            self._known.update(sha for _, sha in prep.links)

    def _prep_failed(self, cwd: str | None, head: Head) -> Any:
        """Turn the wrapper's ``fail`` line into the error the protocol acts on."""
        pending = self._pending.pop(cwd, None) if cwd else None
        if pending is not None:
            self._staged.discard(pending[0])
        if head.fail == "missing":
            self._known.difference_update(head.detail.split())
            raise StagedFilesLost(f"{self.label}: files of {cwd} are gone from "
                                  f"{self.work_dir}/cas (work dir cleaned meanwhile?)")
        if head.fail == "nodir":
            self._forget_staged()
            raise StagedFilesLost(f"{self.label}: {cwd} is gone (work dir cleaned meanwhile?)")
        if head.fail == "upload":
            raise self._upload_fault(head.detail)
        raise DeviceFault(f"{self.label}: cannot link artifact files: {head.detail}")
