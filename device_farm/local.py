"""The built-in ``local`` device: this machine, the default, needs no inventory."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from device_farm._base import Device
from device_farm._errors import DeviceFault, StagedFilesLost
from device_farm._records import Artifact, RunResult

__all__ = ["LocalDevice", "default_local_work_dir"]


def default_local_work_dir() -> str:
    """``$XDG_CACHE_HOME/pattune/local`` (``~/.cache/pattune/local`` when unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pattune", "local")


def decode_capped(data: bytes, limit: int, *, keep: str) -> str:
    """Decode bytes as UTF-8 (replacing errors), keeping the ``head`` or ``tail`` ``limit``."""
    if len(data) > limit:
        data = data[:limit] if keep == "head" else data[-limit:]
    return data.decode("utf-8", "replace")


class LocalDevice(Device):
    """Runs artifacts on this machine in child processes.

    Files are copied once into ``work_dir/cas/<sha256>`` and linked by name into
    ``work_dir/a/<artifact hash>/``; commands run in their own session so a
    timeout kills the whole process group.
    """

    kind = "local"

    def __init__(self, *, name: str = "local", device_type: str = "local",
                 work_dir: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("arch", platform.machine())
        super().__init__(name=name, device_type=device_type, **kwargs)
        self.work_dir = os.path.abspath(os.path.expanduser(work_dir or default_local_work_dir()))
        self._staged: dict[str, str] = {}

    def stage(self, artifact: Artifact) -> str:
        """Copy missing files into the content store; return the artifact's directory."""
        key = artifact.content_hash()
        if key in self._staged and os.path.isdir(self._staged[key]):
            return self._staged[key]
        for f in artifact.files:
            if not os.path.isfile(f.local_path):
                raise ValueError(f"{f.local_path} does not exist; rebuild the artifact")
        cas = os.path.join(self.work_dir, "cas")
        adir = os.path.join(self.work_dir, "a", key)
        try:
            os.makedirs(cas, exist_ok=True)
            for f in artifact.files:
                self._store(f.local_path, f.sha256, os.path.join(cas, f.sha256), f.executable)
            if not os.path.isdir(adir):
                tmp = tempfile.mkdtemp(dir=self.work_dir, prefix=".a-")
                for f in artifact.files:
                    os.symlink(os.path.join(cas, f.sha256), os.path.join(tmp, f.name))
                os.makedirs(os.path.dirname(adir), exist_ok=True)
                try:
                    os.rename(tmp, adir)
                except OSError:  # another process staged it first
                    shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            raise DeviceFault(f"{self.label}: staging failed: {exc.strerror or exc}") from exc
        self._staged[key] = adir
        return adir

    def _store(self, src: str, sha: str, dest: str, executable: bool) -> None:
        if os.path.exists(dest):
            return
        tmp = f"{dest}.{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                for block in iter(lambda: fin.read(1 << 20), b""):
                    digest.update(block)
                    fout.write(block)
            if digest.hexdigest() != sha:
                raise ValueError(
                    f"{src} has sha256 {digest.hexdigest()[:12]}..., the artifact "
                    f"says {sha[:12]}...; rebuild the artifact"
                )
            os.chmod(tmp, 0o755 if executable else 0o644)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def execute(
        self, argv: Sequence[str], *, timeout_s: float, cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run ``argv`` as a child process in its own session, killed at ``timeout_s``."""
        if cwd is not None and not os.path.isdir(cwd):
            self._staged.clear()
            raise StagedFilesLost(f"{self.label}: {cwd} is gone (work dir cleaned meanwhile?)")
        full_env = {**os.environ, **(env or {})}
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
        except OSError as exc:  # what a shell reports as 127/126
            return RunResult(127, "", f"{argv[0]}: {exc.strerror}", time.perf_counter() - t0)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
        wall = time.perf_counter() - t0
        return RunResult(
            exit_code=None if timed_out else proc.returncode,
            stdout=decode_capped(out, self.max_output, keep="head"),
            stderr=decode_capped(err, self.max_output, keep="tail"),
            wall_s=wall, timed_out=timed_out,
        )
