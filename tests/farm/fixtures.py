"""Fixtures that start real parts: OpenSSH servers on loopback and a PostgreSQL cluster.

Test modules import the fixtures they use by name (a conftest here would not
reach ``tests/test_farm_*.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

import pytest

from benchmarks.harness.sshd import SshdFarm
from device_farm import LocalDevice
from device_farm._base import Device
from pattune_common.storage import make_engine
from tests.farm.programs import FAST, ssh_device
from tests.support.pg import postgres_server


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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL cluster made by initdb in a temp dir, on a free port; yields its URL."""
    with postgres_server() as server:
        yield server.url()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """Every lease storage: SQLite in a tmp file and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/leases.db"
    base: str = request.getfixturevalue("pg_url")
    name = f"t{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    admin = make_engine(base)  # no schema in the maintenance database: only CREATE DATABASE
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        from sqlalchemy import text

        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.rsplit("/", 1)[0] + "/" + name
