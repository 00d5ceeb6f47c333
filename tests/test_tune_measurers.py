"""One search loop behind one measurement seam: the in-process and replay measurers.

``KernelTask`` is the only kernel search loop; these tests drive it with the
measurers the benchmarks use (real gcc builds timed in this process, and a
recorded measurement set) and check what the loop and each measurer promise.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from autotune.cost_model.manager import CostModelManager
from autotune.measurement_set import load
from autotune.measurers import ConfigResult, LibraryMeasurer, ReplayMeasurer, replay_context
from autotune.strategies import TaskContext
from autotune.strategies.hillclimb import adjacent
from autotune.task import KernelTask
from benchmarks.kernels.run import BenchOptions, tune_kernel
from codegen import KernelConfig, LocalBuilder, config_space, host_target
from tests.codegen_support import required_layers
from tests.search_bench_support import SHIPPED


def test_adjacent_configs_move_one_field_one_step() -> None:
    layer = required_layers()["odd_width"]
    sp = config_space(layer.spec, host_target(), threads=1)
    cfg = sp.default()
    near = adjacent(sp, cfg)
    assert near and len(set(near)) == len(near)
    for c in near:
        assert sp.is_valid(c)
        moved = [f for f in sp.choices if getattr(c, f) != getattr(cfg, f)]
        assert len(moved) == 1
        vals = sp.choices[moved[0]]
        assert abs(vals.index(getattr(c, moved[0])) - vals.index(getattr(cfg, moved[0]))) == 1


def test_a_result_holds_a_latency_or_an_error() -> None:
    cfg = config_space(required_layers()["odd_width"].spec, host_target()).default()
    with pytest.raises(ValueError, match="never both"):
        ConfigResult(cfg, 1e-3, "build: boom")
    with pytest.raises(ValueError, match="finite and >= 0"):
        ConfigResult(cfg, -1.0)


def test_bench_kernel_search_is_the_product_loop(tmp_path: Path) -> None:
    layer = required_layers()["odd_width"]
    target = host_target()
    sp = config_space(layer.spec, target, threads=1, vector_width=8)
    confirmed: list[list[KernelConfig]] = []

    class Recording(LibraryMeasurer):
        def confirm(self, layer, configs, **kw):  # type: ignore[no-untyped-def]
            confirmed.append(list(configs))
            return super().confirm(layer, configs, **kw)

    measurer = Recording(target=target, builder=LocalBuilder(cache_dir=tmp_path), repeats=2)
    seeds = sp.sample(np.random.default_rng(5), 2)
    tuned = tune_kernel(layer, sp, measurer, BenchOptions(budget=7), seed=0, first=seeds)
    hist = tuned.task.history
    tried = [r.config for r in hist]
    assert len(tried) == 7 and len(set(tried)) == 7
    assert tried[0] == sp.default() and tried[1:3] == seeds  # default, then the seeds
    assert all(r.ok and len(r.times_s) == 2 and r.latency_s == min(r.times_s) for r in hist)
    fastest3 = sorted(hist, key=lambda r: r.latency_s or np.inf)[:3]
    # The finalists' second look: the three fastest, then the default wherever it ranked.
    top = [r.config for r in fastest3]
    assert confirmed == [top + ([] if sp.default() in top else [sp.default()])]
    assert tuned.best in confirmed[0]
    # After ceil(0.6 * 7) = 5 explored configs, the climb only tries one-step neighbours.
    for i, c in enumerate(tried[5:], start=5):
        assert any(c in adjacent(sp, p) for p in tried[:i])
    loaded = measurer.loaded(layer, tuned.best)
    assert loaded is not None
    x, ref = measurer.inputs(layer)
    assert np.abs(loaded[1].run(x) - ref).max() <= 1e-4 * np.abs(ref).max()
    measurer.close()
    assert measurer.loaded(layer, tuned.best) is None


def test_library_measurer_records_build_failures_in_order(tmp_path: Path) -> None:
    layer = required_layers()["odd_width"]
    good = host_target()
    bad = dataclasses.replace(good, cflags=(*good.cflags, "-fno-such-flag-pattune"))
    sp = config_space(layer.spec, good, threads=1)
    configs = sp.sample(np.random.default_rng(0), 3)
    broken = LibraryMeasurer(target=bad, builder=LocalBuilder(cache_dir=tmp_path))
    got = broken.measure(layer, configs)
    assert [r.config for r in got] == configs
    assert all(r.latency_s is None and (r.error or "").startswith("build:") for r in got)
    assert broken.stats.failed == 3 and broken.stats.measured == 0
    with pytest.raises(ValueError, match="distinct configs"):
        broken.measure(layer, [configs[0], configs[0]])


def test_a_task_on_a_replay_starts_from_the_default_and_retrains_mid_task() -> None:
    mset = load(SHIPPED)
    rec = mset.layer("features.26")
    measurer = ReplayMeasurer(mset, statistic="min")
    space = measurer.space(rec)
    models = CostModelManager(device_type=measurer.device_type, seed=0,
                              model_options={"nthread": 1})
    task = KernelTask(layer=rec, context=replay_context(rec), space=space, measurer=measurer,
                      models=models, strategy="filtered", budget=32, batch=8, seed=3)
    res = task.run()
    assert [r.config for r in res.history][0] == space.default()
    assert len(res.history) == 32 and res.measured + res.failed == 32 and res.reused == 0
    assert res.default_s == min(space.entries[space.default()].times_s)
    # The model learned from the task's own measurements, and the strategy uses the newest.
    assert models.version is not None and models.version >= 2
    assert task.strategy.cost_model is models.model and models.trained_on >= 24
    assert res.best_s == min(r.latency_s for r in res.history if r.latency_s is not None)


def test_task_context_of_a_pruned_layer_keys_the_task() -> None:
    layer = required_layers()["odd_width"]
    ctx = TaskContext.of(layer)
    assert ctx.group == layer.weights_hash and ctx.spec == layer.spec.to_dict()
    assert ctx.stats["kernels_alive"] == layer.kernels_alive
