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
from device_farm._output import STDOUT_TAIL, OutputCap
from device_farm._records import Artifact, RunResult

__all__ = ["LocalDevice", "default_local_work_dir", "kill_marked"]


def default_local_work_dir() -> str:
    """``$XDG_CACHE_HOME/pattune/local`` (``~/.cache/pattune/local`` when unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pattune", "local")


def decode_capped(data: bytes, limit: int, *, keep: str) -> str:
    """Decode bytes as UTF-8 (replacing errors), keeping the ``head`` or ``tail`` ``limit``."""
    if len(data) > limit:
        data = data[:limit] if keep == "head" else data[-limit:]
    return data.decode("utf-8", "replace")


def kill_marked(nonce: str, *, proc: str = "/proc") -> None:
    """SIGKILL every process whose environment holds ``PATTUNE_RUN=<nonce>`` (Linux /proc).

    A few passes, as a dying parent may have forked a last child meanwhile.
    """
    marker = f"PATTUNE_RUN={nonce}".encode()
    for _ in range(3):
        found = False
        try:
            pids = [int(p) for p in os.listdir(proc) if p.isdigit()]
        except OSError:
            return  # no /proc (not Linux): the process group kill is all there is
        for pid in pids:
            try:
                with open(f"{proc}/{pid}/environ", "rb") as fh:
                    if marker not in fh.read().split(b"\0"):
                        continue
                os.kill(pid, signal.SIGKILL)
                found = True
            except OSError:  # gone meanwhile, or another user's process
                continue
        if not found:
            return


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
        nonce = uuid.uuid4().hex
        # Every process of the run carries the nonce, so a timeout finds even children
        # that left the process group with setsid (the group kill misses those).
        full_env = {**os.environ, **(env or {}), "PATTUNE_RUN": nonce}
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
            kill_marked(nonce)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # a survivor holds the pipes open: let go
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
                proc.wait()
                out, err = b"", b""
        wall = time.perf_counter() - t0
        cap = OutputCap.of(out, head=self.max_output - STDOUT_TAIL, tail=STDOUT_TAIL)
        return RunResult(
            exit_code=None if timed_out else proc.returncode,
            stdout=cap.value().decode("utf-8", "replace"),
            stderr=decode_capped(err, self.max_output, keep="tail"),
            wall_s=wall, timed_out=timed_out, stdout_cut=cap.cut,
        )
