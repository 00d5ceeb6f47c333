"""A real PostgreSQL server started by the tests (initdb + pg_ctl in a temp dir).

initdb refuses to run as root, so the cluster belongs to the ``postgres`` user
in a directory it owns; the server listens on a free loopback port and trusts
local connections (the test's throwaway cluster).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for cand in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(cand)
    raise RuntimeError(f"{name} not found: install Debian's postgresql (scripts/test.sh does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    port: int
    datadir: Path
    password: str | None = None

    def url(self, db: str = "postgres") -> str:
        login = f"postgres:{self.password}" if self.password else "postgres"
        return f"postgresql+psycopg://{login}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                _pg_bin("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                name,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, **({"PGPASSWORD": self.password} if self.password else {})},
        )
        return self.url(name)


@contextmanager
def postgres_server(*, password: str | None = None) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL cluster; stop and delete it on exit.

    Args:
        password: Require this password (scram-sha-256) on TCP connections, as a
            shared server would; without it every connection is trusted.
    """
    root = Path(tempfile.mkdtemp(prefix="pattune-pg-"))
    os.chmod(root, 0o755)
    shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    as_pg = ["runuser", "-u", "postgres", "--"]
    auth = ["-A", "trust"]
    if password is not None:
        pwfile = root / "pw"
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    subprocess.run(
        [*as_pg, _pg_bin("initdb"), "-D", str(data), *auth, "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    # A throwaway cluster: no fsync, so tests do not wait on the disk.
    opts = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
        "-c fsync=off"
    )
    subprocess.run(
        [
            *as_pg,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield PostgresServer(port=port, datadir=data, password=password)
    finally:
        subprocess.run(
            [*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
