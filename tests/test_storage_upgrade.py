"""A database written by the previous version (e171eb9) upgrades in place, keeping every row.

That version kept the records at schema 0001 and let ``LeaseStore`` create the
farm tables itself with ``create_all``; revision 0002 must adopt those tables,
not fail on them or replace them.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy as sa

from autotune.cost_model.manager import CostModelManager
from autotune.records import MeasureState, RecordsDB
from autotune.records._schema import LayerRow
from device_farm import LeaseStore
from device_farm.lease import farm_device_health, farm_leases
from device_farm.lease import metadata as farm_metadata
from pattune_common.storage import SCHEMA_VERSION, make_engine, schema_version, upgrade

pytest_plugins = ["tests.support.storages"]

LEGACY = Path(__file__).with_name("data") / "records-e171eb9.db.gz"
HEALTH = ("pixel-1", 1, 0.0, "ssh device pixel-1: connection refused", 1795982672.5070045)
LEASE = ("pixel-2", "oldhost:1:abc", "aa9b3b6ddb42490fb68e214500bcf810",
         1795982672.509016, 1795982732.509016)  # fmt: skip


def _legacy(tmp_path: Path) -> str:
    path = tmp_path / "legacy.db"
    with gzip.open(LEGACY) as src, path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return f"sqlite:///{path}"


def _rows(engine: sa.Engine, table: sa.Table) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c.device))]


def test_the_records_of_e171eb9_survive_the_upgrade(tmp_path: Path) -> None:
    url = _legacy(tmp_path)
    before = make_engine(url)
    assert schema_version(before) == "0001"
    before.dispose()
    db = RecordsDB(url)
    assert db.schema_version() == SCHEMA_VERSION
    done = db.measurements(device_type="local")
    assert len(done) == 12 and db.count_done("local") == 12 and db.counts() == {"done": 12}
    assert all(m.status == MeasureState.DONE and (m.median_s or 0) > 0 for m in done)
    assert len({m.layer_hash for m in done}) == 4 and len(db.layer_specs("local")) == 4
    # The cost model is stored as version 1 and still loads and predicts.
    version, kind, blob, metrics = db.latest_cost_model("local")  # type: ignore[misc]
    assert (version, kind, len(blob), metrics) == (1, "xgb", 55251, {"n_train": 9, "layers": 3})
    manager = CostModelManager(records=db, device_type="local")
    assert manager.version == 1 and manager.model.fitted
    assert np.all(np.isfinite(manager.model.predict(manager.samples())))
    # Optuna's own tables (its alembic_version, not ours) are untouched and readable.
    study = optuna.load_study(study_name="legacy", storage=db.optuna_storage())
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.number for t in complete] == [0, 1]
    assert [t.values[1] for t in complete] == [1.0, 1.0]
    assert complete[0].values[0] == 0.021001000023996557
    assert all(t.user_attrs["pattune:layers"] for t in complete)


def test_new_claims_work_after_the_upgrade(tmp_path: Path) -> None:
    url = _legacy(tmp_path)
    db = RecordsDB(url, owner="after-upgrade")
    old = db.measurements(device_type="local")[0]
    with db.session() as s:
        layer_id = s.execute(
            sa.select(LayerRow.id).where(LayerRow.weights_hash == old.layer_hash)
        ).scalar_one()
    dt = db.device_type("local")
    cfg_id, cfg_hash = db.kernel_config(old.config)
    assert cfg_hash == old.config_hash  # the config hashes as it did then: found, not re-added
    again = db.claim(device_type_id=dt, layer_id=layer_id, config_id=cfg_id)
    assert not again.mine and again.existing == old  # measured then: never measured twice
    new_cfg, _ = db.kernel_config({**old.config, "unroll": 99})
    fresh = db.claim(device_type_id=dt, layer_id=layer_id, config_id=new_cfg)
    assert fresh.mine
    db.finish(fresh.measurement_id, median_s=1e-3)
    assert db.count_done("local") == 13
    assert db.save_cost_model(device_type="local", kind="xgb", n_train=13, blob=b"x",
                              metrics={}) == 2
    db.heartbeat()
    assert db.is_alive("after-upgrade")


def test_the_leases_and_health_of_e171eb9_survive_the_upgrade(tmp_path: Path) -> None:
    url = _legacy(tmp_path)
    store = LeaseStore(url, holder="after-upgrade")
    assert schema_version(store.engine) == SCHEMA_VERSION
    assert _rows(store.engine, farm_device_health) == [HEALTH]
    assert _rows(store.engine, farm_leases) == [LEASE]
    # The old fault still counts: one more makes two, which reaches a threshold of 2.
    assert store.record_failure("pixel-1", "ssh device pixel-1: timeout", threshold=2,
                                quarantine_s=60)
    assert store.quarantine("pixel-1") == "ssh device pixel-1: timeout"
    lease = store.try_acquire("pixel-3")
    assert lease is not None and LeaseStore(url, holder="other").try_acquire("pixel-3") is None
    store.release(lease)
    # The old holder lives on another host: it is never taken for dead, only its TTL frees it.
    assert store.holder_of("pixel-2") in (None, "oldhost:1:abc")


def test_farm_tables_made_by_create_all_are_adopted(storage_url: str) -> None:
    # What the previous version left: records at 0001, farm tables made by create_all.
    engine = make_engine(storage_url)
    upgrade(engine, revision="0001")
    farm_metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(farm_device_health).values(dict(zip(
            ("device", "failures", "quarantined_until", "reason", "updated_at"), HEALTH,
            strict=True))))
        conn.execute(sa.insert(farm_leases).values(dict(zip(
            ("device", "holder", "token", "acquired_at", "expires_at"), LEASE, strict=True))))
    engine.dispose()
    store = LeaseStore(storage_url)
    assert schema_version(store.engine) == SCHEMA_VERSION
    assert _rows(store.engine, farm_device_health) == [HEALTH]
    assert _rows(store.engine, farm_leases) == [LEASE]
    lease = store.try_acquire("pixel-9")
    assert lease is not None and store.holder_of("pixel-9") == store.holder
    db = RecordsDB(storage_url)
    assert db.schema_version() == SCHEMA_VERSION and db.counts() == {}
    store.close()
    db.dispose()
