"""Fixtures for the storage suites: every storage URL, a SQLite file and a real PostgreSQL.

Test modules load them with ``pytest_plugins = ["tests.support.storages"]``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster made by initdb in a temp dir, shared by the session's tests."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage (STYLE rule 11): a fresh SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'storage.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"s_{uuid.uuid4().hex[:10]}")
