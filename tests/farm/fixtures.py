"""Fixtures that start real parts: OpenSSH servers on loopback and a PostgreSQL cluster.

Test modules import the fixtures they use by name (a conftest here would not
reach ``tests/test_farm_*.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator

import pytest

from device_farm import LeaseStore, LocalDevice
from device_farm._base import Device
from device_farm.sshd_harness import SshdFarm, free_port
from tests.farm.programs import FAST, ssh_device


@pytest.fixture
def make_farm(tmp_path: object) -> Iterator[Callable[[int], SshdFarm]]:
    """Factory: start N sshd servers under a fresh tmp dir; all are killed afterwards."""
    farms: list[SshdFarm] = []

    def make(n: int) -> SshdFarm:
        farm = SshdFarm(tempfile.mkdtemp(prefix="sshd-", dir=str(tmp_path)), n)
        farms.append(farm)
        return farm

    yield make
    for f in farms:
        f.stop()


@pytest.fixture(params=["local", "ssh"])
def device(request: pytest.FixtureRequest, make_farm: Callable[[int], SshdFarm],
           tmp_path: object) -> Iterator[Device]:
    """Every Device implementation, for the shared suite (STYLE rule 11)."""
    if request.param == "local":
        dev: Device = LocalDevice(work_dir=os.path.join(str(tmp_path), "local-work"),
                                  protocol=FAST, env={"DEV": "local"})
    else:
        farm = make_farm(1)
        dev = ssh_device(farm, farm.servers[0])
    yield dev
    dev.close()


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for root in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        return os.path.join("/usr/lib/postgresql", root, "bin", name)
    raise RuntimeError(f"{name} not found; install Debian's postgresql")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL cluster made by initdb in a temp dir, on a free port; yields its URL."""
    root = tempfile.mkdtemp(prefix="pattune-pg-")
    os.chmod(root, 0o755)
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.makedirs(sock)
    shutil.chown(root, "postgres", "postgres")
    shutil.chown(sock, "postgres", "postgres")
    port = free_port()

    def as_pg(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    as_pg(_pg_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    as_pg(_pg_bin("pg_ctl"), "-D", data, "-l", os.path.join(root, "log"), "-w", "-o",
          f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        as_pg(_pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Every lease storage: SQLite in a tmp file and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/leases.db"
    base: str = request.getfixturevalue("pg_url")
    name = f"t{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    store = LeaseStore(base)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        from sqlalchemy import text

        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    store.close()
    return base.rsplit("/", 1)[0] + "/" + name
