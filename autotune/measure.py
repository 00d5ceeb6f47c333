"""From KernelConfigs to recorded latencies: claim, generate, build, verify, measure, record.

:class:`KernelMeasurer` is the only place where the three other packages meet
for one layer: ``codegen`` generates and builds, ``device_farm`` measures on a
device of the type, the records database remembers. It keeps the tuner's
promise that nothing is built or measured twice: every (device type, layer,
config) is claimed in the database first; an existing result is returned as
it is, a config another live process is measuring is skipped.

Every kernel is verified against torch on this machine before its time counts
(natively for the host target, under the target's ``run_prefix`` such as
qemu-aarch64 otherwise); the device then checks the output checksum of every
run against the reference.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotune.records import RecordsDB
from codegen import (
    Builder,
    BuildInput,
    KernelConfig,
    Product,
    Target,
    generate,
    random_input,
    reference_output,
    run_executable,
    verify,
)
from device_farm import Artifact, ArtifactFile, MeasureJob, Verify
from search_spaces.layers import PrunedLayer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigResult:
    """The outcome for one config: a median in seconds, an error, or skipped.

    Attributes:
        config: The KernelConfig.
        median_s: Median latency in seconds (None on failure or skip).
        error: Why it failed (``"build: ..."``, ``"verify: ..."``, a device's message).
        reused: True when the result came from the database, not a new measurement.
        skipped: True when another live process is measuring it now.
        predicted_s: The cost model's prediction when the config was chosen.
    """

    config: KernelConfig
    median_s: float | None = None
    error: str | None = None
    reused: bool = False
    skipped: bool = False
    predicted_s: float | None = None


@dataclass
class MeasureStats:
    """Counters for progress displays and the overhead report (seconds)."""

    built: int = 0
    measured: int = 0
    reused: int = 0
    failed: int = 0
    build_s: float = 0.0
    measure_s: float = 0.0
    verify_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class KernelMeasurer:
    """Measures configs of pruned layers on one device type, through the records database.

    Args:
        records: The records database.
        device_type: Name of the device type measured on.
        target: Compile target of that device type.
        builder: Builds generated kernels (parallel, cached).
        runner: Anything with ``run(list[MeasureJob]) -> list[Measurement]``
            (a :class:`device_farm.Farm`).
        work_dir: Where per-layer input files are written.
        timeout_s: Limit for one run of a kernel executable.
    """

    def __init__(
        self,
        *,
        records: RecordsDB,
        device_type: str,
        target: Target,
        builder: Builder,
        runner: Any,
        work_dir: str | Path,
        timeout_s: float = 120.0,
    ) -> None:
        self.records = records
        self.device_type = device_type
        self.device_type_id = records.device_type(device_type, arch=target.arch)
        self.target = target
        self.builder = builder
        self.runner = runner
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self.stats = MeasureStats()
        self._inputs: dict[str, tuple[Path, np.ndarray, np.ndarray]] = {}

    # -- per layer ----------------------------------------------------------

    def _layer_input(self, layer: PrunedLayer) -> tuple[Path, np.ndarray, np.ndarray]:
        """Input file, input array and torch reference output for a layer (cached)."""
        h = layer.weights_hash
        if h not in self._inputs:
            x = random_input(layer, seed=0)
            ref = reference_output(layer, x)
            path = self.work_dir / f"input-{h}.bin"
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                np.ascontiguousarray(x, dtype="<f4").tofile(tmp)
                tmp.replace(path)
            self._inputs[h] = (path, x, ref)
        return self._inputs[h]

    def _verify_here(self, layer: PrunedLayer, exe: str, weights: str) -> str | None:
        _, x, ref = self._layer_input(layer)
        run = run_executable(
            exe,
            weights,
            x,
            layer.spec,
            self.target,
            warmup=0,
            repeats=1,
            timeout_s=self.timeout_s * 10,
            maxpool=layer.maxpool,
        )
        if run.error:
            return run.error
        if run.output is None:
            return "verify: the executable wrote no output"
        v = verify(run.output, ref)
        return v.error or None

    def _job(self, layer: PrunedLayer, cfg_hash: str, exe: str, weights: str) -> MeasureJob:
        inp, _, ref = self._layer_input(layer)
        # A wrong kernel is off by O(max|ref|) on many outputs; float reordering is
        # off by ~1e-7 relative per output, so sqrt(N) * 1e-4 * max|ref| separates them.
        atol = 1e-4 * float(np.abs(ref).max() or 1.0) * math.sqrt(ref.size)
        artifact = Artifact(
            files=(
                ArtifactFile.from_path(exe, name="kernel", executable=True),
                ArtifactFile.from_path(weights, name="weights.bin"),
                ArtifactFile.from_path(inp, name="input.bin"),
            ),
            argv=("kernel", "{dir}/input.bin", "{dir}/weights.bin", "{warmup}", "{repeats}"),
            verify=Verify(checksum=float(ref.astype(np.float64).sum()), rtol=0.0, atol=atol),
        )
        job_id = f"{layer.weights_hash}-{cfg_hash}"
        return MeasureJob(job_id=job_id, artifact=artifact, timeout_s=self.timeout_s)

    # -- the batch ----------------------------------------------------------

    def measure(
        self,
        layer: PrunedLayer,
        configs: Sequence[KernelConfig],
        *,
        predicted_s: Sequence[float | None] | None = None,
        cost_model_version: int | None = None,
    ) -> list[ConfigResult]:
        """Results for ``configs`` in order: reused, newly measured, failed or skipped."""
        if len({c.to_json() for c in configs}) != len(configs):
            raise ValueError("measure() takes distinct configs; got a config twice in one batch")
        preds = list(predicted_s) if predicted_s is not None else [None] * len(configs)
        layer_id = self.records.layer(layer)
        results: list[ConfigResult | None] = [None] * len(configs)
        mine: list[tuple[int, int, str, int]] = []  # (index, measurement id, cfg hash, cfg id)
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
                mine.append((i, claim.measurement_id, cfg_hash, cfg_id))
        if not mine:
            return [r for r in results if r is not None]

        t0 = time.perf_counter()
        kernels = [generate(layer, configs[i], self.target) for i, *_ in mine]
        builds = self.builder.build(
            [
                BuildInput(kernel=k, target=self.target, products=(Product.EXECUTABLE,))
                for k in kernels
            ]
        )
        self.stats.build_s += time.perf_counter() - t0
        self.stats.built += sum(1 for b in builds if b.ok and not b.cached)

        jobs: list[tuple[int, int, str, int | None, MeasureJob]] = []
        for (i, mid, cfg_hash, cfg_id), build in zip(mine, builds, strict=True):
            cfg = configs[i]
            build_id = self.records.record_build(
                build_hash=build.key or hashlib.sha256(build.error.encode()).hexdigest(),
                target=self.target.name,
                layer_id=layer_id,
                config_id=cfg_id,
                error=build.error or None,
            )
            if not build.ok:
                self._fail(results, i, mid, cfg, build.error, build_id, preds[i])
                continue
            t1 = time.perf_counter()
            problem = self._verify_here(layer, build.executable, build.weights)
            self.stats.verify_s += time.perf_counter() - t1
            if problem:
                self._fail(results, i, mid, cfg, problem, build_id, preds[i])
                continue
            jobs.append(
                (
                    i,
                    mid,
                    cfg_hash,
                    build_id,
                    self._job(layer, cfg_hash, build.executable, build.weights),
                )
            )

        if jobs:
            t2 = time.perf_counter()
            measurements = self.runner.run([j for *_, j in jobs])
            self.stats.measure_s += time.perf_counter() - t2
            for (i, mid, _h, job_build, _job), m in zip(jobs, measurements, strict=True):
                cfg = configs[i]
                detail = {
                    "device": m.device,
                    "status": m.status.value,
                    "cv": m.cv,
                    "rounds": m.rounds,
                    "artifact": m.artifact_hash,
                    "started_at": m.started_at,
                    "finished_at": m.finished_at,
                }
                if m.status.has_value():
                    self.records.finish(
                        mid,
                        median_s=m.median_s,
                        spread=m.cv,
                        raw_times_s=list(m.times_s),
                        device_name=m.device,
                        build_id=job_build,
                        detail=detail,
                    )
                    results[i] = ConfigResult(cfg, m.median_s, predicted_s=preds[i])
                    self.stats.measured += 1
                else:
                    self._fail(
                        results,
                        i,
                        mid,
                        cfg,
                        m.error or "device: unknown failure",
                        job_build,
                        preds[i],
                        device=m.device,
                        detail=detail,
                    )
        return [r for r in results if r is not None]

    def _fail(
        self,
        results: list[ConfigResult | None],
        i: int,
        mid: int,
        cfg: KernelConfig,
        error: str,
        build_id: int | None,
        predicted: float | None,
        *,
        device: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.records.finish(mid, error=error, build_id=build_id, device_name=device, detail=detail)
        results[i] = ConfigResult(cfg, error=error, predicted_s=predicted)
        self.stats.failed += 1
        if len(self.stats.errors) < 20:
            self.stats.errors.append(error)
        log.info("config %s failed: %s", cfg.stable_hash(), error)


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
