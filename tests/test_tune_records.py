"""The records database, one shared suite over SQLite and a real PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from autotune.records import RecordsDB
from pattune_common import UserInputError
from pattune_common.storage import SCHEMA_VERSION, redact_url
from search_spaces import LayerSpec, PatternSet, all_patterns, random_pruned_layer

pytest_plugins = ["tests.support.storages"]


@pytest.fixture()
def url(storage_url: str) -> str:
    """Every storage (tests.support.storages): a fresh SQLite file, a fresh PostgreSQL database."""
    return storage_url


def _layer(seed: int = 0):  # type: ignore[no-untyped-def]
    spec = LayerSpec("conv", 8, 8, 6, 6)
    return random_pruned_layer(spec, PatternSet(all_patterns()[:8]), connectivity="3.6x", seed=seed)


def test_schema_is_created_and_versioned(url: str) -> None:
    db = RecordsDB(url)
    assert db.schema_version() == SCHEMA_VERSION
    # Re-opening an up-to-date database changes nothing and keeps rows.
    db.device_type("phone", arch="aarch64")
    again = RecordsDB(url)
    assert again.schema_version() == SCHEMA_VERSION
    assert again.device_type("phone") == db.device_type("phone")
    names = set(sa.inspect(again.engine).get_table_names())
    assert {"pt_measurements", "pt_layers", "pt_kernel_configs", "pt_alembic_version"} <= names


def test_a_config_is_measured_once(url: str) -> None:
    a, b = RecordsDB(url, owner="a"), RecordsDB(url, owner="b")
    dt = a.device_type("local")
    layer = a.layer(_layer())
    assert b.layer(_layer()) == layer  # same content, same row
    cfg, h = a.kernel_config({"oc_block": 4, "threads": 1})
    first = a.claim(device_type_id=dt, layer_id=layer, config_id=cfg, predicted=0.5)
    assert first.mine and first.existing is None
    busy = b.claim(device_type_id=dt, layer_id=layer, config_id=cfg)
    assert not busy.mine and busy.existing is None
    a.finish(first.measurement_id, median_s=2e-3, spread=0.01, raw_times_s=[2e-3, 2e-3])
    done = b.claim(device_type_id=dt, layer_id=layer, config_id=cfg)
    assert not done.mine and done.existing is not None
    assert done.existing.median_s == pytest.approx(2e-3)
    assert done.existing.predicted == pytest.approx(0.5)
    assert done.existing.config_hash == h
    assert [m.median_s for m in b.measurements(device_type="local")] == [pytest.approx(2e-3)]


def test_abandoned_claim_is_taken_over(url: str) -> None:
    dead = RecordsDB(url, owner="dead", claim_ttl_s=-1.0)  # its claims are expired at once
    live = RecordsDB(url, owner="live")
    ids = {
        "device_type_id": dead.device_type("local"),
        "layer_id": dead.layer(_layer()),
        "config_id": dead.kernel_config({"x": 1})[0],
    }
    assert dead.claim(**ids).mine
    taken = live.claim(**ids)
    assert taken.mine
    live.finish(taken.measurement_id, error="build: gcc: error: boom")
    with pytest.raises(RuntimeError, match="not claimed by dead"):
        dead.finish(taken.measurement_id, median_s=1.0)
    failed = live.measurements(device_type="local", status="failed")
    assert [m.error for m in failed] == ["build: gcc: error: boom"]


def test_finish_takes_value_or_error_not_both(url: str) -> None:
    db = RecordsDB(url)
    c = db.claim(
        device_type_id=db.device_type("local"),
        layer_id=db.layer(_layer()),
        config_id=db.kernel_config({})[0],
    )
    with pytest.raises(ValueError, match="exactly one"):
        db.finish(c.measurement_id, median_s=1.0, error="x")
    with pytest.raises(ValueError, match="exactly one"):
        db.finish(c.measurement_id)
    assert db.release_claims() == 1
    assert db.counts() == {}


def test_cost_model_versions(url: str) -> None:
    db = RecordsDB(url)
    assert db.latest_cost_model("local") is None
    assert (
        db.save_cost_model(device_type="local", kind="xgb", n_train=3, blob=b"a", metrics={}) == 1
    )
    assert (
        db.save_cost_model(device_type="local", kind="xgb", n_train=9, blob=b"b", metrics={"r": 1})
        == 2
    )
    version, kind, blob, metrics = db.latest_cost_model("local")  # type: ignore[misc]
    assert (version, kind, blob, metrics) == (2, "xgb", b"b", {"r": 1})


def _race(url: str, owner: str, n: int, out: mp.Queue[list[int]]) -> None:
    db = RecordsDB(url, owner=owner)
    dt = db.device_type("local")
    layer = db.layer(_layer())
    mine = []
    for i in range(n):
        cfg, _ = db.kernel_config({"i": i})
        c = db.claim(device_type_id=dt, layer_id=layer, config_id=cfg)
        if c.mine:
            db.finish(c.measurement_id, median_s=float(i + 1))
            mine.append(i)
    out.put(mine)


def test_processes_never_measure_a_config_twice(url: str) -> None:
    RecordsDB(url)  # create the schema once before the race
    ctx = mp.get_context("spawn")
    q: mp.Queue[list[int]] = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(url, f"p{k}", 40, q)) for k in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    flat = sorted(i for part in got for i in part)
    assert flat == list(range(40))  # every config measured, none twice


def test_bad_urls_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="must start with sqlite:/// or postgresql://"):
        RecordsDB("mysql://u:secret@h/db")
    with pytest.raises(UserInputError, match="cannot open storage") as info:
        RecordsDB("postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in str(info.value)
    assert redact_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"


def test_layer_stats_recorded(tmp_path: Path) -> None:
    db = RecordsDB(f"sqlite:///{tmp_path / 'r.db'}")
    layer = _layer(3)
    db.layer(layer)
    cfg, _ = db.kernel_config({"a": 1})
    c = db.claim(device_type_id=db.device_type("local"), layer_id=db.layer(layer), config_id=cfg)
    db.finish(c.measurement_id, median_s=1.0)
    info = db.layer_specs("local")[layer.weights_hash]
    assert info["stats"]["kernels_alive"] == layer.kernels_alive
    assert sum(info["stats"]["pattern_histogram"]) == layer.kernels_alive
    assert np.isclose(info["stats"]["nonzeros"], 4 * layer.kernels_alive)


def _claim_and_die(url: str, ids: dict[str, int]) -> None:
    db = RecordsDB(url, owner=f"dying:{uuid.uuid4().hex[:6]}")
    db.heartbeat()
    assert db.claim(**ids).mine
    # The process exits here without finishing: its claim is left behind.


def test_claim_of_a_dead_process_is_taken_over_at_once(url: str) -> None:
    live = RecordsDB(url, owner="live", worker_ttl_s=3600)
    ids = {
        "device_type_id": live.device_type("local"),
        "layer_id": live.layer(_layer()),
        "config_id": live.kernel_config({"k": 1})[0],
    }
    p = mp.get_context("spawn").Process(target=_claim_and_die, args=(url, ids))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0
    # Same host, process gone: no need to wait for any expiry.
    assert live.claim(**ids).mine


def test_claim_of_a_live_process_is_respected_until_its_heartbeat_stops(url: str) -> None:
    holder = RecordsDB(url, owner="holder")
    holder.heartbeat()
    ids = {
        "device_type_id": holder.device_type("local"),
        "layer_id": holder.layer(_layer()),
        "config_id": holder.kernel_config({"k": 2})[0],
    }
    assert holder.claim(**ids).mine
    assert not RecordsDB(url, owner="patient", worker_ttl_s=3600).claim(**ids).mine
    # A heartbeat older than the reader's worker TTL means the holder is gone.
    time.sleep(0.2)
    assert RecordsDB(url, owner="impatient", worker_ttl_s=0.1).claim(**ids).mine
