"""Real OpenSSH servers on loopback, for the tests and ``pattune bench farm``.

:class:`SshdFarm` starts N ``sshd -D`` processes on free 127.0.0.1 ports, each
with its own temporary host key, one shared ``authorized_keys`` for a
temporary client key, and writes a ``known_hosts`` that trusts them. Each
"device" gets its own remote work dir. Nothing here is mocked: these are the
Debian ``openssh-server`` binaries. Needs root or the current user's login to
be allowed (``PermitRootLogin prohibit-password``).
"""

from __future__ import annotations

import getpass
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

__all__ = ["SshdFarm", "SshdServer", "free_port", "keygen"]

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: str, kind: str = "ed25519") -> str:
    """Create a passphrase-less key pair at ``path``; return the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "pattune-test", "-f", path],
                   check=True, stdin=subprocess.DEVNULL)
    with open(path + ".pub") as fh:
        return fh.read().strip()


@dataclass
class SshdServer:
    """One running sshd: its port, host key, config and remote work dir."""

    name: str
    port: int
    config: str
    host_key: str
    work_dir: str
    proc: subprocess.Popen[bytes] | None = None
    log: str = ""

    def start(self, *, fsize_limit: int | None = None) -> None:
        """Start (or restart) sshd and wait until it accepts connections.

        Args:
            fsize_limit: RLIMIT_FSIZE in bytes for sshd and its sessions (emulates a
                nearly full disk where mounting a small filesystem is not allowed).
        """

        def limit() -> None:
            if fsize_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", self.config, "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=limit,  # noqa: PLW1509  (only setrlimit, async-signal-safe)
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log) as fh:
                    raise RuntimeError(f"sshd {self.name} exited: {fh.read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd {self.name} did not start on port {self.port}")

    def kill(self) -> None:
        """Kill the listening sshd and every session it started (a dropped device)."""
        if self.proc is None:
            return
        pid = self.proc.pid
        # Session children of sshd -D keep serving open connections; kill them too.
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                             check=False).stdout
        self.proc.kill()
        self.proc.wait()
        for child in out.split():
            try:
                os.kill(int(child), signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None

    def regenerate_host_key(self, kind: str = "ed25519") -> None:
        """Replace the host key (a reinstalled device, or a man in the middle).

        Args:
            kind: The new key's type (``ed25519``, ``ecdsa``, ``rsa``); the server then
                offers only that type.
        """
        for suffix in ("", ".pub"):
            os.unlink(self.host_key + suffix)
        keygen(self.host_key, kind)


class SshdFarm:
    """N sshd servers under ``root`` with a client key and a known_hosts trusting them.

    Args:
        root: Folder for keys, configs and the devices' work dirs.
        count: Servers to start.
        prefix: Device names are ``prefix0``, ``prefix1``, ...
        max_sessions: sshd's ``MaxSessions``: sessions (channels) one connection may
            hold at once. Small boards and phone SSH servers often allow 1.
    """

    def __init__(self, root: str, count: int, *, prefix: str = "dev",
                 max_sessions: int = 64) -> None:
        self.root = os.path.abspath(root)
        self.max_sessions = max_sessions
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation dir
        os.makedirs(self.root, exist_ok=True)
        self.client_key = os.path.join(self.root, "client_key")
        pub = keygen(self.client_key)
        self.authorized_keys = os.path.join(self.root, "authorized_keys")
        with open(self.authorized_keys, "w") as fh:
            fh.write(pub + "\n")
        os.chmod(self.authorized_keys, 0o600)
        self.known_hosts = os.path.join(self.root, "known_hosts")
        self.user = getpass.getuser()
        self.servers: list[SshdServer] = []
        for i in range(count):
            self.servers.append(self._make(f"{prefix}{i}"))
        open(self.known_hosts, "w").close()
        for s in self.servers:
            self.trust(s)

    def _make(self, name: str) -> SshdServer:
        d = os.path.join(self.root, name)
        os.makedirs(d)
        host_key = os.path.join(d, "host_key")
        keygen(host_key)
        config = os.path.join(d, "sshd_config")
        with open(config, "w") as fh:
            fh.write(
                f"ListenAddress 127.0.0.1\nHostKey {host_key}\n"
                f"AuthorizedKeysFile {self.authorized_keys}\n"
                f"PidFile {d}/sshd.pid\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
                "AllowTcpForwarding yes\nSubsystem sftp internal-sftp\n"
                f"MaxSessions {self.max_sessions}\nMaxStartups 64:30:128\nLogLevel ERROR\n"
            )
        work = os.path.join(d, "work")
        home = os.path.join(d, "home")
        os.makedirs(home)
        with open(config, "a") as fh:
            # Each device is its own account: a private HOME, so this machine's shell rc
            # files (bash sources ~/.bashrc for every sshd command) do not run.
            fh.write(f"SetEnv HOME={home}\n")
        server = SshdServer(name=name, port=free_port(), config=config, host_key=host_key,
                            work_dir=work, log=os.path.join(d, "sshd.log"))
        server.start()
        return server

    def trust(self, server: SshdServer, *, port: int | None = None) -> None:
        """Append the server's current host key to known_hosts (for ``port``, e.g. a proxy's)."""
        with open(server.host_key + ".pub") as fh:
            kind, key = fh.read().split()[:2]
        with open(self.known_hosts, "a") as fh:
            fh.write(f"[127.0.0.1]:{port or server.port} {kind} {key}\n")

    def stop(self) -> None:
        """Kill every server."""
        for s in self.servers:
            s.kill()
