"""SSH devices on paramiko: one persistent connection, deadline-bounded commands.

Every remote command is one ``exec`` of a fixed POSIX-sh wrapper whose
arguments are ``shlex.quote``-d, so no name, path or value can inject shell.
The wrapper prints its PID (which, under sshd's per-session ``setsid``, is also
its process group) before running the program, and the device-side start/end
times after; stdout and stderr are read concurrently under our own deadline and
a timeout kills the whole remote process group.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import select
import shlex
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import paramiko

from device_farm._base import Device
from device_farm._checks import check_env, check_texts
from device_farm._errors import DeviceFault, StagedFilesLost
from device_farm._records import Artifact, RunResult, file_sha256
from device_farm._ssh_connect import SSHTarget, close_client, connect

__all__ = ["SSHDevice", "validate_work_dir"]

_WRAPPER = (
    'echo "@PATTUNE pid $$" >&2; '
    '[ -z "$1" ] || cd "$1" 2>/dev/null || { echo "@PATTUNE nodir" >&2; exit 126; }; shift; '
    "s=$(date +%s%N 2>/dev/null); \"$@\"; r=$?; e=$(date +%s%N 2>/dev/null); "
    "printf '\\n@PATTUNE t %s %s %s\\n' \"$s\" \"$e\" \"$r\" >&2; exit $r"
)
_PID = re.compile(rb"@PATTUNE pid (\d+)\n")
_TRAILER = re.compile(rb"\n@PATTUNE t (\S*) (\S*) (\d+)\n$")
_SAFE_DIR = re.compile(r"/[A-Za-z0-9._+@%=:/-]*")  # matched whole: no trailing newline


def validate_work_dir(path: str) -> str:
    """Return the normalised remote work dir, or raise ValueError naming the rule."""
    norm = posixpath.normpath(path)
    if not isinstance(path, str) or not _SAFE_DIR.fullmatch(path) or ".." in path.split("/") or norm.count("/") < 2:
        raise ValueError(
            "work_dir must be an absolute path at least two levels deep (e.g. "
            "/data/local/tmp/pattune) of letters, digits and ._+@%=:-, without '..'; "
            f"got {path!r}"
        )
    return norm


class _Capped:
    """Keeps the head (stdout) or tail (stderr) of a stream up to a byte limit."""

    def __init__(self, limit: int, keep: str) -> None:
        self.limit, self.keep, self.data, self.total = limit, keep, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.keep == "head":
            room = self.limit - len(self.data)
            if room > 0:
                self.data += chunk[:room]
        else:
            self.data += chunk
            if len(self.data) > 2 * self.limit:
                del self.data[: len(self.data) - self.limit]

    def value(self) -> bytes:
        return bytes(self.data if self.keep == "head" else self.data[-self.limit:])


class SSHDevice(Device):
    """A device reached over SSH (paramiko), with a confined remote work dir.

    Layout under ``work_dir``: ``cas/<sha256>`` (each file once, content-addressed),
    ``a/<artifact hash>/<name>`` (symlinks into ``cas``), ``tmp/`` (partial uploads).
    """

    kind = "ssh"

    def __init__(self, *, name: str, device_type: str, target: SSHTarget, work_dir: str,
                 **kwargs: Any) -> None:
        super().__init__(name=name, device_type=device_type, **kwargs)
        self.target = target
        self.work_dir = validate_work_dir(work_dir)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._staged: set[str] = set()
        self._orphans: set[int] = set()  # process groups of commands cut off by a drop
        self._lock = threading.Lock()
        self._local_sha: dict[tuple[str, int, int], str] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ssh-{name}")
        self._spare: Future[paramiko.Channel] | None = None

    # -- connection -------------------------------------------------------------------
    def _transport(self) -> paramiko.Transport:
        with self._lock:
            client = self._client
            t = client.get_transport() if client else None
            if t is not None and t.is_active():
                return t
            self._drop()
            self._client = connect(self.target.resolved(), label=self.label)
            t = self._client.get_transport()
            assert t is not None
        if self._orphans:
            self._kill_orphans()
        return t

    def _kill_orphans(self) -> None:
        """Kill programs left running when an earlier connection dropped mid-command.

        sshd does not signal a no-pty session's processes when the link dies, so a
        benchmark would keep burning the device's CPU and skew every later run.
        """
        groups, self._orphans = sorted(self._orphans), set()
        if not self._kill_groups(groups):
            self._orphans.update(groups)  # try again after the next reconnect

    def _drop(self) -> None:
        self._spare = None  # its channel dies with the transport below
        if self._sftp is not None:
            with contextlib.suppress(Exception):  # a dead channel may fail to close
                self._sftp.close()
        if self._client is not None:
            close_client(self._client)
        self._client = self._sftp = None
        self._staged.clear()  # the device may have been cleaned or replaced meanwhile

    def close(self) -> None:
        """Close the connection; the next call reconnects."""
        with self._lock:
            self._drop()

    @property
    def connected(self) -> bool:
        """Whether a live connection is held now."""
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    # -- commands ---------------------------------------------------------------------
    def execute(
        self, argv: Sequence[str], *, timeout_s: float, cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run ``argv`` on the device under a deadline; kill its process group on timeout."""
        if not argv:
            raise ValueError("argv must not be empty")
        # Names are checked here too, not only in the inventory: a key such as "-S..."
        # would be read by `env` as an option, and a Python caller can pass any mapping.
        check_env("env", dict(env or {}))
        check_texts("argv", list(argv))
        words = ["env", *(f"{k}={v}" for k, v in (env or {}).items()), *argv] if env else [*argv]
        command = " ".join(
            ["exec", "sh", "-c", shlex.quote(_WRAPPER), "sh", shlex.quote(cwd or "")]
            + [shlex.quote(w) for w in words]
        )
        result = self._run(command, timeout_s)
        if result.exit_code == 126 and result.stderr.endswith("@PATTUNE nodir\n"):
            self._staged.clear()
            raise StagedFilesLost(f"{self.label}: {cwd} is gone (work dir cleaned meanwhile?)")
        return result

    def _open(self, command: str) -> paramiko.Channel:
        for attempt in (0, 1):  # one reconnect when the held connection turns out dead
            transport = self._transport()
            try:
                chan = self._take_spare(transport) or transport.open_session(
                    timeout=self.target.connect_timeout_s)
                # paramiko waits for the exec reply without a timeout; a device that stopped
                # answering would hang us forever. Closing the channel ends that wait.
                watchdog = threading.Timer(self.target.connect_timeout_s, chan.close)
                watchdog.start()
                try:
                    chan.exec_command(command)
                finally:
                    watchdog.cancel()
                chan.shutdown_write()
                self._spare = self._pool.submit(
                    transport.open_session, timeout=self.target.connect_timeout_s)
                return chan
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.close()
                if attempt:
                    raise DeviceFault(f"{self.label}: cannot start a command: {exc}") from exc
        raise AssertionError("unreachable")

    def _take_spare(self, transport: paramiko.Transport) -> paramiko.Channel | None:
        """The session channel opened in the background after the last command, if alive.

        Opening a channel costs a network round trip; opening the next one while the
        current command runs takes it off every measurement (60 ms on a 30 ms link).
        """
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        try:
            chan = spare.result(timeout=self.target.connect_timeout_s)
        except Exception:  # noqa: BLE001  (a failed spare just means opening a fresh one)
            return None
        if chan.closed or chan.get_transport() is not transport:
            return None
        return chan

    def _run(self, command: str, timeout_s: float) -> RunResult:
        t0 = time.perf_counter()
        chan = self._open(command)
        deadline = time.monotonic() + timeout_s
        # stderr keeps room for the wrapper's trailer, cut off in _result
        out, err = _Capped(self.max_output, "head"), _Capped(self.max_output + 128, "tail")
        head = bytearray()  # the first stderr bytes, where the wrapper's PID line is
        try:
            while True:
                while chan.recv_ready():
                    out.add(chan.recv(1 << 16))
                while chan.recv_stderr_ready():
                    chunk = chan.recv_stderr(1 << 16)
                    if len(head) < 256:
                        head += chunk[: 256 - len(head)]
                    err.add(chunk)
                if chan.exit_status_ready() and not chan.recv_ready() and not (
                    chan.recv_stderr_ready()
                ) and (chan.eof_received or chan.closed):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if self._kill(bytes(head)):
                        return self._result(None, out, err, time.perf_counter() - t0, True)
                    self._orphan(head)
                    self.close()
                    raise DeviceFault(f"{self.label}: no answer at the {timeout_s:g} s deadline "
                                      "and the device cannot be reached to kill the command")
                transport = chan.get_transport()
                if chan.closed and not chan.exit_status_ready() or not (
                    transport and transport.is_active()
                ):
                    self._orphan(head)
                    raise DeviceFault(f"{self.label}: connection lost while running a command")
                if chan.eof_received:
                    # Output is over (the pipe behind fileno stays readable now, so select
                    # would spin); wait for the exit status itself.
                    chan.status_event.wait(min(remaining, 0.25))
                else:
                    select.select([chan], [], [], min(remaining, 0.25))
            code = chan.exit_status  # set: the loop above left only once it was ready
            transport = chan.get_transport()
            if code == -1 and not (transport and transport.is_active()):
                # paramiko reports -1 when the channel closed without an exit status
                self._orphan(head)
                raise DeviceFault(f"{self.label}: connection lost while running a command")
        finally:
            chan.close()
        return self._result(code, out, err, time.perf_counter() - t0, False)

    def _result(self, code: int | None, out: _Capped, err: _Capped, host_wall: float,
                timed_out: bool) -> RunResult:
        stderr = err.value()
        if stderr.startswith(b"@PATTUNE pid"):
            stderr = _PID.sub(b"", stderr, count=1)
        wall = host_wall
        m = _TRAILER.search(stderr)
        if m:
            stderr = stderr[: m.start()]
            s, e = m.group(1), m.group(2)
            if s.isdigit() and e.isdigit() and len(s) > 12:  # %N unsupported prints "%N"
                wall = (int(e) - int(s)) / 1e9
        stderr = stderr[-self.max_output:]
        return RunResult(
            exit_code=code, stdout=out.value().decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"), wall_s=wall, timed_out=timed_out,
        )

    def _orphan(self, head: bytearray) -> None:
        m = _PID.search(bytes(head))
        if m:
            self._orphans.add(int(m.group(1)))

    def _kill(self, head: bytes) -> bool:
        """Kill the timed-out command's process group; False when the device is unreachable."""
        m = _PID.search(head)
        return self._kill_groups([int(m.group(1))] if m else [])

    def _kill_groups(self, groups: list[int]) -> bool:
        # Only groups still led by our wrapper: after a reboot the numbers mean other programs.
        script = ("for g in " + " ".join(str(g) for g in groups) + "; do "
                  "grep -q '@PATTUNE pid' /proc/$g/cmdline 2>/dev/null && "
                  "kill -KILL -- -$g 2>/dev/null; done; true") if groups else "true"
        try:
            self._run(script, timeout_s=self.target.connect_timeout_s)
        except DeviceFault:
            return False
        return True

    # -- files ------------------------------------------------------------------------
    def _sftp_client(self) -> paramiko.SFTPClient:
        self._transport()
        if self._sftp is None:
            assert self._client is not None
            self._sftp = self._client.open_sftp()
            # SFTP waits for each reply without a limit; a silent device must not hang us.
            self._sftp.get_channel().settimeout(max(30.0, 3 * self.target.connect_timeout_s))
        return self._sftp

    def _check_local(self, path: str, sha: str) -> None:
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

    def stage(self, artifact: Artifact) -> str:
        """Upload missing files by sha256 and link them into the artifact's directory."""
        key = artifact.content_hash()
        adir = f"{self.work_dir}/a/{key}"
        if key in self._staged:
            return adir
        for f in artifact.files:
            self._check_local(f.local_path, f.sha256)
        try:
            self._ensure_layout()
            sftp = self._sftp_client()
            for f in artifact.files:
                self._upload(sftp, f.local_path, f.sha256, f.executable)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.close()
            raise DeviceFault(f"{self.label}: upload failed: {exc}{self._free_space()}") from exc
        links = " && ".join(
            f"ln -s ../../cas/{f.sha256} \"$t\"/{shlex.quote(f.name)}" for f in artifact.files
        ) or "true"
        script = (
            f'[ -d "$1" ] && exit 0; t=$2; mkdir -p "$t" && {links} && '
            # mv -T (GNU, toybox) fails when another process linked it first; a mv without
            # -T (old busybox) is only tried when the directory is still missing.
            f'{{ mv -T "$t" "$1" 2>/dev/null || [ -d "$1" ] || mv "$t" "$1"; }}; '
            f'rm -rf "$t"; [ -d "$1" ]'
        )
        r = self.execute(["sh", "-c", script, "sh", adir, f"{self.work_dir}/tmp/{uuid.uuid4().hex}"],
                         timeout_s=30, cwd=self.work_dir)
        if r.exit_code != 0:
            raise DeviceFault(f"{self.label}: cannot link artifact files: {r.stderr.strip()[-300:]}")
        self._staged.add(key)
        return adir

    def _ensure_layout(self) -> None:
        w = shlex.quote(self.work_dir)
        r = self.execute(
            ["sh", "-c", (f"mkdir -p {w}/cas {w}/a {w}/tmp && "
                          f"find {w}/tmp -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {{}} +")],
            timeout_s=30, cwd="/",
        )
        if r.exit_code != 0:
            raise DeviceFault(f"{self.label}: cannot create work dir {self.work_dir}: "
                              f"{r.stderr.strip()[-300:]}")

    def _upload(self, sftp: paramiko.SFTPClient, path: str, sha: str, executable: bool) -> None:
        dest = f"{self.work_dir}/cas/{sha}"
        size = os.path.getsize(path)
        try:
            if sftp.stat(dest).st_size == size:
                return
        except FileNotFoundError:
            pass
        part = f"{self.work_dir}/tmp/{sha}.{uuid.uuid4().hex}.part"
        try:
            sftp.put(path, part, confirm=True)
            sftp.chmod(part, 0o755 if executable else 0o644)
            sftp.posix_rename(part, dest)
        except BaseException:
            try:
                sftp.remove(part)
            except (OSError, paramiko.SSHException, EOFError):
                pass
            raise

    def _free_space(self) -> str:
        try:
            r = self.execute(["df", "-Pk", self.work_dir], timeout_s=10, cwd="/")
            avail = r.stdout.strip().splitlines()[-1].split()[3]
            return f" ({avail} KiB free in {self.work_dir})"
        except (DeviceFault, IndexError):
            return ""

    def clean(self) -> None:
        """Remove everything pattune stored under the work dir (cas, a, tmp)."""
        w = shlex.quote(self.work_dir)
        self.execute(["sh", "-c", f"rm -rf {w}/cas {w}/a {w}/tmp"], timeout_s=120, cwd="/")
        self._staged.clear()
