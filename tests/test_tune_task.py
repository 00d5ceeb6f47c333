"""Kernel-tuning tasks on the real local device: gcc builds, torch verification, records.

Small layers and budgets keep this to seconds; what is asserted is the tuner's
bookkeeping against real builds and runs: nothing built or measured twice,
results reused by later tasks with the same key, and warm starts across weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.cost_model.manager import CostModelManager
from autotune.measurers import FarmMeasurer
from autotune.records import RecordsDB
from autotune.strategies import TaskContext
from autotune.task import KernelTask
from codegen import LocalBuilder, config_space, host_target
from device_farm import Farm, LeaseStore, LocalDevice, ProtocolConfig
from search_spaces import LayerSpec, PatternSet, all_patterns, random_pruned_layer

SPEC = LayerSpec("conv", 8, 8, 10, 10)
PATTERNS = PatternSet(all_patterns()[:8])


@pytest.fixture()
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'p.db'}"
    records = RecordsDB(url)
    target = host_target()
    farm = Farm(
        [LocalDevice(work_dir=str(tmp_path / "dev"), protocol=ProtocolConfig(min_total_s=0.005))],
        leases=LeaseStore(url),
    )
    measurer = FarmMeasurer(
        records=records,
        device_type="local",
        target=target,
        builder=LocalBuilder(cache_dir=tmp_path / "cache"),
        runner=farm,
        work_dir=tmp_path / "w",
    )
    models = CostModelManager(records=records, device_type="local", min_new=8)
    return records, target, measurer, models


def task(env, layer, strategy="filtered", budget=12, seed=0):  # type: ignore[no-untyped-def]
    records, target, measurer, models = env
    space = config_space(layer.spec, target, threads=1)
    return KernelTask(
        layer=layer,
        context=TaskContext.of(layer),
        space=space,
        measurer=measurer,
        models=models,
        strategy=strategy,
        budget=budget,
        batch=4,
        seed=seed,
    )


def test_task_measures_its_budget_once_and_reuses_it(env) -> None:  # type: ignore[no-untyped-def]
    records, _, measurer, models = env
    layer = random_pruned_layer(SPEC, PATTERNS, connectivity="2x", seed=1)
    first = task(env, layer).run()
    assert first.measured + first.failed == 12 and first.reused == 0
    assert first.best_s is not None and first.default_s is not None
    assert first.best_s <= first.default_s
    assert models.version is not None  # the cost model was trained along the way
    built = measurer.stats.built
    # The same key again: everything comes from the database, nothing is rebuilt.
    again = task(env, layer, seed=7).run()
    assert again.measured == 0 and again.reused == 12
    assert again.best == first.best and again.best_s == first.best_s
    assert measurer.stats.built == built
    assert records.counts() == {
        "done": first.measured,
        **({"failed": first.failed} if first.failed else {}),
    }


def test_larger_budget_continues_the_task(env) -> None:  # type: ignore[no-untyped-def]
    layer = random_pruned_layer(SPEC, PATTERNS, connectivity="2x", seed=2)
    task(env, layer, strategy="random", budget=4).run()
    more = task(env, layer, strategy="random", budget=8).run()
    assert more.reused == 4 and more.measured + more.failed == 4


def test_new_weights_of_the_same_shape_start_from_the_best_config(env) -> None:  # type: ignore[no-untyped-def]
    a = random_pruned_layer(SPEC, PATTERNS, connectivity="2x", seed=3)
    b = random_pruned_layer(SPEC, PATTERNS, connectivity="2x", seed=4)
    best_a = task(env, a, strategy="random", budget=8).run().best
    t = task(env, b, strategy="random", budget=3)
    t.run()
    tried = [c for c, _ in t.strategy.history]
    assert tried[0] == t.space.default()
    assert best_a in tried
