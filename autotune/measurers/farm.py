"""Measure configs on a device type through the farm, remembering everything in the records.

:class:`FarmMeasurer` is where the other three packages meet for one layer:
``codegen`` generates and builds, ``device_farm`` measures on a device of the
type, the records database remembers. It keeps the tuner's promise that nothing
is built or measured twice: every (device type, layer, config) is *claimed* in
the database first; an existing result is returned as it is, and a config that
another live process is measuring is skipped.

One batch goes through five steps, each its own method: claim, build, verify
(natively for the host target, under the target's ``run_prefix`` such as
qemu-aarch64 otherwise, against torch on this machine), package and run (the
device checks each run's output checksum), record.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from autotune.measurers._base import ConfigResult, Measurer, check_distinct
from autotune.measurers.packaging import LayerInputs, kernel_job
from autotune.records import RecordsDB
from autotune.strategies import SearchSpace
from codegen import (
    Builder,
    BuildInput,
    KernelConfig,
    Product,
    Target,
    generate,
    run_executable,
    verify,
)
from device_farm import MeasureJob, Measurement
from search_spaces.layers import LayerSpec, PrunedLayer

log = logging.getLogger(__name__)


class Runner(Protocol):
    """Runs device jobs (a :class:`device_farm.Farm`): same order and length as ``jobs``."""

    def run(self, jobs: Sequence[MeasureJob]) -> list[Measurement]:
        """One Measurement per job, failures as records."""


@dataclass
class _Claimed:
    """One config this process claimed, on its way through build, verify and run."""

    index: int
    config: KernelConfig
    measurement_id: int
    config_hash: str
    config_id: int
    predicted_s: float | None
    build_id: int | None = None
    executable: str = ""
    weights: str = ""


class FarmMeasurer(Measurer[PrunedLayer]):
    """Measures configs of pruned layers on one device type, through the records database.

    Args:
        records: The records database.
        device_type: Name of the device type measured on.
        target: Compile target of that device type.
        builder: Builds generated kernels (parallel, cached).
        runner: Runs device jobs (a :class:`device_farm.Farm`).
        work_dir: Where per-layer input files are written.
        timeout_s: Limit for one run of a kernel executable on a device.
    """

    def __init__(
        self,
        *,
        records: RecordsDB,
        device_type: str,
        target: Target,
        builder: Builder,
        runner: Runner,
        work_dir: str | Path,
        timeout_s: float = 120.0,
    ) -> None:
        super().__init__(device_type=device_type)
        self.records = records
        self.device_type_id = records.device_type(device_type, arch=target.arch)
        self.target = target
        self.builder = builder
        self.runner = runner
        self.inputs = LayerInputs(work_dir)
        self.timeout_s = timeout_s

    # -- what the records already know ---------------------------------------

    def recorded(self, layer: PrunedLayer) -> list[ConfigResult]:
        """Finished results of this layer on the device type, oldest first."""
        prior = self.records.measurements(
            device_type=self.device_type, layer_hash=layer.weights_hash, status=None
        )
        return [
            ConfigResult(KernelConfig.from_dict(m.config), m.median_s, m.error, reused=True,
                         predicted_s=m.predicted)
            for m in prior
            if m.status in ("done", "failed")
        ]

    def warm_start(self, layer: PrunedLayer, space: SearchSpace) -> list[KernelConfig]:
        """Best configs of earlier layers of the same shape (other weights), at most 4."""
        sig = layer.spec.signature()
        out: list[KernelConfig] = []
        for h, info in self.records.layer_specs(self.device_type).items():
            if h == layer.weights_hash or LayerSpec.from_dict(info["spec"]).signature() != sig:
                continue
            best = self.records.best(device_type=self.device_type, layer_hash=h)
            if best is not None:
                cfg = KernelConfig.from_dict(best.config)
                if space.is_valid(cfg) and cfg not in out:
                    out.append(cfg)
        return out[:4]

    # -- one batch -------------------------------------------------------------

    def measure(
        self,
        layer: PrunedLayer,
        configs: Sequence[KernelConfig],
        *,
        predicted_s: Sequence[float | None] | None = None,
        cost_model_version: int | None = None,
    ) -> list[ConfigResult]:
        """Results for ``configs`` in order: reused, newly measured, failed or skipped."""
        check_distinct(configs)
        preds: list[float | None] = (
            list(predicted_s) if predicted_s is not None else [None] * len(configs)
        )
        results: list[ConfigResult | None] = [None] * len(configs)
        mine = self._claim(layer, configs, preds, cost_model_version, results)
        if mine:
            built = self._build(layer, mine, results)
            good = self._verify(layer, built, results)
            if good:
                jobs = [self._package(layer, c) for c in good]
                self._run_and_record(good, jobs, results)
        return [r for r in results if r is not None]

    def _claim(
        self,
        layer: PrunedLayer,
        configs: Sequence[KernelConfig],
        preds: list[float | None],
        cost_model_version: int | None,
        results: list[ConfigResult | None],
    ) -> list[_Claimed]:
        """Claim each config; fill in reused and skipped results; return the ones now ours."""
        layer_id = self.records.layer(layer)
        mine: list[_Claimed] = []
        for i, cfg in enumerate(configs):
            cfg_id, cfg_hash = self.records.kernel_config(cfg.to_dict())
            claim = self.records.claim(
                device_type_id=self.device_type_id,
                layer_id=layer_id,
                config_id=cfg_id,
                predicted=_finite(preds[i]),
                cost_model_version=cost_model_version,
            )
            if claim.existing is not None:
                ex = claim.existing
                results[i] = ConfigResult(
                    cfg, ex.median_s, ex.error, reused=True, predicted_s=ex.predicted
                )
                self.stats.reused += 1
            elif not claim.mine:
                results[i] = ConfigResult(cfg, skipped=True)
            else:
                mine.append(_Claimed(i, cfg, claim.measurement_id, cfg_hash, cfg_id, preds[i]))
        return mine

    def _build(
        self, layer: PrunedLayer, claimed: list[_Claimed], results: list[ConfigResult | None]
    ) -> list[_Claimed]:
        """Generate and build every claimed config in one parallel batch; record each build."""
        t0 = time.perf_counter()
        kernels = [generate(layer, c.config, self.target) for c in claimed]
        builds = self.builder.build(
            [BuildInput(kernel=k, target=self.target, products=(Product.EXECUTABLE,))
             for k in kernels]
        )
        self.stats.build_s += time.perf_counter() - t0
        self.stats.built += sum(1 for b in builds if b.ok and not b.cached)
        layer_id = self.records.layer(layer)
        ok = []
        for c, build in zip(claimed, builds, strict=True):
            c.build_id = self.records.record_build(
                build_hash=build.key or hashlib.sha256(build.error.encode()).hexdigest(),
                target=self.target.name,
                layer_id=layer_id,
                config_id=c.config_id,
                error=build.error or None,
            )
            if not build.ok:
                self._fail(results, c, build.error)
                continue
            c.executable, c.weights = build.executable, build.weights
            ok.append(c)
        return ok

    def _verify(
        self, layer: PrunedLayer, built: list[_Claimed], results: list[ConfigResult | None]
    ) -> list[_Claimed]:
        """Run each build once here and compare with torch; fail the ones that differ."""
        data = self.inputs.of(layer)
        good = []
        for c in built:
            t0 = time.perf_counter()
            run = run_executable(
                c.executable, c.weights, data.x, layer.spec, self.target, warmup=0, repeats=1,
                timeout_s=self.timeout_s * 10, maxpool=layer.maxpool,
            )
            problem = run.error or (
                "verify: the executable wrote no output" if run.output is None
                else verify(run.output, data.reference).error
            )
            self.stats.verify_s += time.perf_counter() - t0
            if problem:
                self._fail(results, c, problem)
            else:
                good.append(c)
        return good

    def _package(self, layer: PrunedLayer, c: _Claimed) -> MeasureJob:
        return kernel_job(
            f"{layer.weights_hash}-{c.config_hash}", c.executable, c.weights,
            self.inputs.of(layer), timeout_s=self.timeout_s,
        )

    def _run_and_record(
        self, claimed: list[_Claimed], jobs: list[MeasureJob], results: list[ConfigResult | None]
    ) -> None:
        """Run the jobs on the farm; finish every claim with its median or its error."""
        t0 = time.perf_counter()
        measurements = self.runner.run(jobs)
        self.stats.measure_s += time.perf_counter() - t0
        for c, m in zip(claimed, measurements, strict=True):
            detail = {
                "device": m.device, "status": m.status.value, "cv": m.cv, "rounds": m.rounds,
                "artifact": m.artifact_hash, "started_at": m.started_at,
                "finished_at": m.finished_at,
            }
            problem = m.error or "device: unknown failure"
            if m.status.has_value() and m.median_s is not None:
                if math.isfinite(m.median_s) and m.median_s >= 0:
                    self.records.finish(
                        c.measurement_id, median_s=m.median_s, spread=m.cv,
                        raw_times_s=list(m.times_s), device_name=m.device, build_id=c.build_id,
                        detail=detail,
                    )
                    results[c.index] = ConfigResult(
                        c.config, m.median_s, predicted_s=c.predicted_s,
                        times_s=tuple(m.times_s), cv=m.cv,
                    )
                    self.stats.measured += 1
                    continue
                problem = f"device {m.device}: impossible median {m.median_s!r} s"
            self._fail(results, c, problem, device=m.device, detail=detail)

    def _fail(
        self,
        results: list[ConfigResult | None],
        c: _Claimed,
        error: str,
        *,
        device: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.records.finish(
            c.measurement_id, error=error, build_id=c.build_id, device_name=device, detail=detail
        )
        results[c.index] = ConfigResult(c.config, error=error, predicted_s=c.predicted_s)
        self.stats.fail(error)
        log.info("config %s failed: %s", c.config.stable_hash(), error)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
