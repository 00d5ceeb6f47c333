"""SSH devices on paramiko: one persistent connection, deadline-bounded commands.

Every remote command is one ``exec`` of a fixed POSIX-sh wrapper
(:mod:`device_farm._ssh_wrapper`) whose arguments are ``shlex.quote``-d, so no
name, path or value can inject shell. A job's remote side is one command where
it can be: the new build's upload (on stdin), the artifact directory's links
and the run (see :mod:`device_farm._ssh_stage`). The command is sent without
waiting for the server's reply (:mod:`device_farm._ssh_channel`); stdout and
stderr are read concurrently under our own deadline, and a timeout kills the
program's process group and every process carrying its run's nonce.

Servers that allow one session per connection (``MaxSessions 1``, common on
small boards and phone SSH servers) are detected the first time a second
channel is refused; from then on no channel is opened ahead of time.
"""

from __future__ import annotations

import posixpath
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import paramiko

from device_farm._base import Device
from device_farm._errors import DeviceFault
from device_farm._records import RunResult
from device_farm._ssh_channel import NoReply, collect, start
from device_farm._ssh_connect import SSHTarget, close_client, connect
from device_farm._ssh_stage import StagingMixin
from device_farm._ssh_wrapper import Head, Prep, command, kill_command, parse_head, split_trailer

__all__ = ["SSHDevice", "validate_work_dir"]

_SAFE_DIR = re.compile(r"/[A-Za-z0-9._+@%=:/-]*")  # matched whole: no trailing newline


def validate_work_dir(path: str) -> str:
    """Return the normalised remote work dir, or raise ValueError naming the rule."""
    norm = posixpath.normpath(path) if isinstance(path, str) else ""
    if not isinstance(path, str) or not _SAFE_DIR.fullmatch(path) or (
            ".." in path.split("/") or norm.count("/") < 2):
        raise ValueError(
            "work_dir must be an absolute path at least two levels deep (e.g. "
            "/data/local/tmp/pattune) of letters, digits and ._+@%=:-, without '..'; "
            f"got {path!r}"
        )
    return norm


class SSHDevice(StagingMixin, Device):
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
        self._orphans: dict[int, str] = {}  # process group -> nonce, cut off by a drop
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ssh-{name}")
        self._spare: Future[paramiko.Channel] | None = None
        #: The server refused a second session on one connection (MaxSessions 1).
        self.one_session = False
        self._init_staging()

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
        groups, self._orphans = dict(self._orphans), {}
        if not self._kill_groups(sorted(groups.items())):
            self._orphans.update(groups)  # try again after the next reconnect

    def _drop(self) -> None:
        self._spare = None  # its channel dies with the transport below
        if self._client is not None:
            close_client(self._client)
        self._client = None
        self._forget_staged()  # the device may have been cleaned or replaced meanwhile

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
        """Run ``argv`` on the device under a deadline; kill its process group on timeout.

        When ``cwd`` is an artifact directory :meth:`stage` prepared, the same command
        also uploads the artifact's new file and links the directory first.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        prep, data = self._prep_for(cwd)
        result, head = self._command(argv, timeout_s=timeout_s, cwd=cwd, env=env, prep=prep,
                                     stdin=data)
        if head.fail:
            self._prep_failed(cwd, head)
        elif head.started:
            self._prep_done(cwd)
        return result

    def _command(self, argv: Sequence[str], *, timeout_s: float, cwd: str | None,
                 env: Mapping[str, str] | None, prep: Prep | None = None,
                 stdin: bytes | None = None) -> tuple[RunResult, Head]:
        nonce = uuid.uuid4().hex
        line = command(argv, cwd=cwd, env=env, nonce=nonce, prep=prep)
        return self._run(line, timeout_s, nonce=nonce, stdin=stdin)

    def _open(self, transport: paramiko.Transport) -> paramiko.Channel:
        spare, self._spare = self._spare, None
        chan: paramiko.Channel | None = None
        if spare is not None:
            try:
                chan = spare.result(timeout=self.target.connect_timeout_s)
            except paramiko.ChannelException:
                # Refused while our other channel was open: the server allows one
                # session per connection. Stop opening channels ahead of time.
                self.one_session = True
            except Exception:  # noqa: BLE001  (a failed spare just means opening a fresh one)
                pass
            if chan is not None and (chan.closed or chan.get_transport() is not transport):
                chan = None
        return chan or transport.open_session(timeout=self.target.connect_timeout_s)

    def _start(self, line: str, stdin: bytes | None) -> tuple[paramiko.Channel, float]:
        """Open a channel (reconnecting once if the held connection is dead) and send."""
        for attempt in (0, 1):
            transport = self._transport()
            try:
                chan = self._open(transport)
                sent = start(chan, line, stdin,
                             send_timeout_s=max(30.0, 3 * self.target.connect_timeout_s))
                if not self.one_session:
                    # Opening a channel costs a round trip; open the next one while this
                    # command runs (60 ms per command on a 30 ms link).
                    self._spare = self._pool.submit(
                        transport.open_session, timeout=self.target.connect_timeout_s)
                return chan, sent
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.close()
                if attempt:
                    raise DeviceFault(f"{self.label}: cannot start a command: {exc}") from exc
        raise AssertionError("unreachable")

    def _run(self, line: str, timeout_s: float, *, nonce: str,
             stdin: bytes | None = None) -> tuple[RunResult, Head]:
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        for attempt in (0, 1):
            chan, sent = self._start(line, stdin)
            try:
                got = collect(chan, sent=sent, deadline=deadline,
                              reply_timeout_s=self.target.connect_timeout_s,
                              max_output=self.max_output,
                              lost=lambda head: self._lost(head, nonce))
            except NoReply:
                # A session that froze with its TCP connection up: paramiko would wait
                # forever. Start again on a fresh connection, once.
                chan.close()
                self.close()
                if attempt:
                    raise DeviceFault(f"{self.label}: the device did not answer a command "
                                      f"within {self.target.connect_timeout_s:g} s") from None
                continue
            finally:
                if chan.active or not chan.closed:
                    chan.close()
            head = parse_head(got.head)
            if got.timed_out:
                if self._kill(head, nonce):
                    return self._result(None, got, time.perf_counter() - t0, True), head
                self._remember(head, nonce)
                self.close()
                raise DeviceFault(f"{self.label}: no answer at the {timeout_s:g} s deadline "
                                  "and the device cannot be reached to kill the command")
            return self._result(got.code, got, time.perf_counter() - t0, False), head
        raise AssertionError("unreachable")

    def _lost(self, head: bytes, nonce: str) -> DeviceFault:
        self._remember(parse_head(head), nonce)
        t = self._client.get_transport() if self._client else None
        if t is not None and t.is_active():
            return DeviceFault(f"{self.label}: the device refused or closed a command channel")
        return DeviceFault(f"{self.label}: connection lost while running a command")

    def _result(self, code: int | None, got: Any, host_wall: float,
                timed_out: bool) -> RunResult:
        stderr, device_wall = split_trailer(got.err.value())
        return RunResult(
            exit_code=code, stdout=got.out.value().decode("utf-8", "replace"),
            stderr=stderr[-self.max_output:].decode("utf-8", "replace"),
            wall_s=host_wall if device_wall is None else device_wall, timed_out=timed_out,
            stdout_cut=got.out.cut,
        )

    def _remember(self, head: Head, nonce: str) -> None:
        if head.pid is not None:
            self._orphans[head.pid] = nonce

    def _kill(self, head: Head, nonce: str) -> bool:
        """Kill the timed-out command's processes; False when the device is unreachable."""
        if head.pid is None:
            return self._kill_groups([])
        if self.one_session:
            # The running command's session stays until its program dies, and the server
            # allows no second one: kill over a fresh connection.
            self.close()
        return self._kill_groups([(head.pid, nonce)])

    def _kill_groups(self, groups: list[tuple[int, str]]) -> bool:
        try:
            self._run(kill_command(groups), timeout_s=self.target.connect_timeout_s + 20,
                      nonce=uuid.uuid4().hex)
        except DeviceFault:
            return False
        return True

    def _df(self) -> str:
        """`` (N KiB free in WORK_DIR)``, or "" when the device cannot say."""
        try:
            r, _ = self._command(["df", "-Pk", self.work_dir], timeout_s=10, cwd="/", env=None)
            avail = r.stdout.strip().splitlines()[-1].split()[3]
            return f" ({avail} KiB free in {self.work_dir})"
        except (DeviceFault, IndexError):
            return ""

    def clean(self) -> None:
        """Remove everything pattune stored under the work dir (cas, a, tmp)."""
        w = self.work_dir
        self._command(["rm", "-rf", f"{w}/cas", f"{w}/a", f"{w}/tmp"], timeout_s=120, cwd="/",
                      env=None)
        self._forget_staged()
