"""The storage layer: URLs, engines, owners and the one migration history, on every storage."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from autotune.records import RecordsDB
from autotune.records._schema import Base
from device_farm import LeaseStore
from device_farm.lease import metadata as farm_metadata
from pattune_common import UserInputError
from pattune_common.storage import (
    SCHEMA_VERSION,
    VERSION_TABLE,
    make_engine,
    new_owner,
    normalize_url,
    open_storage,
    owner_is_dead,
    redact_url,
    schema_version,
    this_host,
    upgrade,
)
from pattune_common.storage.schema import MIGRATIONS

pytest_plugins = ["tests.support.storages"]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "pattune", "autotune", "search_spaces", "device_farm", "codegen", "pattune_common", "benchmarks"
)
FIX = "use e.g. sqlite:///pattune.db or postgresql+psycopg://user@host/dbname"


def test_urls_are_normalised_to_psycopg3_and_checked() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///pattune.db") == "sqlite:///pattune.db"
    with pytest.raises(UserInputError) as info:
        normalize_url("mysql://u:secret@h/db")
    assert str(info.value) == (
        "database URL 'mysql://u:***@h/db' is not usable "
        f"(it must start with sqlite:/// or postgresql://); {FIX}"
    )
    with pytest.raises(UserInputError) as info:
        normalize_url("nonsense")
    # not echoed: a string that is no URL gives redaction nothing to find a password by
    assert str(info.value) == f"the database URL given does not parse as a URL; {FIX}"
    assert str(info.value).endswith(FIX) and "\n" not in str(info.value)


def test_passwords_are_hidden_even_in_urls_that_do_not_parse() -> None:
    assert redact_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact_url("u:pw@h/db") == "u:***@h/db"
    with pytest.raises(UserInputError, match="is not usable") as info:
        make_engine("sqlite+nosuchdriver://u:pw@h/x.db")
    assert "pw" not in str(info.value)


def test_sqlite_engines_are_set_up_for_several_processes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    with engine.connect() as conn:

        def pragma(name: str) -> object:
            return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") == 60_000
    engine.dispose()


def test_connections_opening_a_fresh_sqlite_file_at_once_all_get_wal(tmp_path: Path) -> None:
    # SQLite switches a file to WAL without its busy handler: without a wait, all
    # but one of several connections opening a new file failed with "locked".
    errors: list[str] = []
    for rnd in range(150):
        engines = [make_engine(f"sqlite:///{tmp_path / f'f{rnd}.db'}") for _ in range(8)]
        barrier = threading.Barrier(len(engines))

        def first_read(engine: sa.Engine, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                with engine.connect() as conn:
                    assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            except sa.exc.OperationalError as exc:
                errors.append(str(exc.orig))

        threads = [threading.Thread(target=first_read, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in engines:
            e.dispose()
    assert errors == []


def test_an_unreachable_database_is_one_line_with_the_fix() -> None:
    with pytest.raises(UserInputError) as info:
        open_storage("postgresql://u:secret@127.0.0.1:1/db", name="the store", fix="start it")
    msg = str(info.value)
    assert msg.startswith("cannot open the store postgresql+psycopg://u:***@127.0.0.1:1/db: ")
    assert msg.endswith(" (start it)") and "secret" not in msg and "\n" not in msg


def test_schema_version_is_the_head_of_the_migrations() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_current_head() == SCHEMA_VERSION
    assert [s.revision for s in script.walk_revisions()] == ["0003", "0002", "0001"]


def _columns(inspector: sa.Inspector, table: str) -> dict[str, tuple[bool, bool]]:
    pk = set(inspector.get_pk_constraint(table)["constrained_columns"])
    return {c["name"]: (bool(c["nullable"]), c["name"] in pk) for c in inspector.get_columns(table)}


def test_a_fresh_database_gets_every_table_from_the_migrations_alone(storage_url: str) -> None:
    engine = open_storage(storage_url)
    assert schema_version(engine) == SCHEMA_VERSION
    inspector = sa.inspect(engine)
    declared = {**Base.metadata.tables, **farm_metadata.tables}
    assert set(inspector.get_table_names()) == set(declared) | {VERSION_TABLE}
    for name, table in declared.items():  # the migrations agree with what the code queries
        want = {c.name: (bool(c.nullable), c.primary_key) for c in table.columns}
        assert _columns(inspector, name) == want, name
    engine.dispose()


def test_no_package_creates_tables_outside_the_migrations() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for pkg in PACKAGES
        for path in (ROOT / pkg).rglob("*.py")
        if re.search(r"\.create_all\(|create_tables\(", path.read_text())
    ]
    assert offenders == []


def test_upgrading_step_by_step_reaches_the_same_head(storage_url: str) -> None:
    engine = make_engine(storage_url)
    upgrade(engine, revision="0001")
    assert schema_version(engine) == "0001"
    assert not {"farm_leases", "farm_device_health"} & set(sa.inspect(engine).get_table_names())
    upgrade(engine)
    assert schema_version(engine) == SCHEMA_VERSION
    assert {"farm_leases", "farm_device_health"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_a_schema_newer_than_this_pattune_is_refused_in_one_line(storage_url: str) -> None:
    engine = open_storage(storage_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    for opener in (RecordsDB, LeaseStore):
        with pytest.raises(UserInputError) as info:
            opener(storage_url)
        assert str(info.value).endswith(
            "is at schema revision 9999, which this pattune does not know (newest: "
            f"{SCHEMA_VERSION}); open it with the pattune version that wrote it or a newer one"
        )
        assert "\n" not in str(info.value)


_OPENER = """
import sys, time
from autotune.records import RecordsDB
from device_farm import LeaseStore
url, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
opened = [RecordsDB(url), LeaseStore(url)] if int(sys.argv[3]) % 2 else [LeaseStore(url), RecordsDB(url)]
print(opened[0].engine.dialect.name)
"""


def test_processes_opening_a_fresh_database_together_all_succeed(storage_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "passive"}
    start = time.time() + 8.0  # after every interpreter has imported its modules
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, storage_url, str(start), str(i)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(4)
    ]  # fmt: skip
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    engine = make_engine(storage_url)
    assert schema_version(engine) == SCHEMA_VERSION
    engine.dispose()


def test_owner_names_and_the_liveness_rule() -> None:
    me = new_owner()
    host, pid, rand = me.split(":")
    assert (host, pid, len(rand)) == (this_host(), str(os.getpid()), 8)
    assert new_owner() != me
    assert not owner_is_dead(me)  # this process is alive
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    assert owner_is_dead(f"{this_host()}:{gone.stdout.strip()}:abc")
    assert not owner_is_dead(f"elsewhere-{this_host()}:{gone.stdout.strip()}:abc")  # other host
    assert not owner_is_dead("crasher") and not owner_is_dead(f"{this_host()}:0:abc")
