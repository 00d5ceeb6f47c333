"""A small random search over KernelConfigs: build, verify, then time (Kernel Tuner style).

This is the cheap stand-in for the full tuner (autotune) that the kernel
benchmark uses so its figures reflect tuned code: the default config plus
random valid samples, at most ``budget`` in all, built in parallel; a config
counts only after its output matched torch, and the few fastest are timed a
second time before one is picked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from codegen._base import Builder, BuildInput, Product
from codegen.config import ConfigSpace, KernelConfig
from codegen.generator import GeneratedKernel, generate
from codegen.runtime import KernelLibrary
from codegen.target import Target
from codegen.verify import verify
from search_spaces.layers import PrunedLayer


@dataclass
class Trial:
    """One config's outcome: median and best seconds, or an error starting with its stage."""

    config: KernelConfig
    median_s: float = float("inf")
    min_s: float = float("inf")
    max_rel_error: float = float("nan")
    error: str = ""


@dataclass
class TuneResult:
    """Best verified kernel of a search plus every trial."""

    best: Trial | None
    kernel: GeneratedKernel | None
    library: KernelLibrary | None
    trials: list[Trial] = field(default_factory=list)
    build_s: float = 0.0
    measure_s: float = 0.0


def sample_configs(space: ConfigSpace, budget: int, rng: np.random.Generator,
                   *, seed_configs: list[KernelConfig] | None = None) -> list[KernelConfig]:
    """``budget`` distinct valid configs: the seed configs that are valid in ``space``
    (or the space's default), topped up with random samples."""
    if budget < 1:
        raise ValueError(f"budget must be >= 1; got {budget}")
    out: dict[str, KernelConfig] = {}
    for cfg in seed_configs if seed_configs is not None else [space.default()]:
        if space.is_valid(cfg):
            out.setdefault(cfg.to_json(), cfg)
    for cfg in space.sample(rng, 2 * budget + 8):
        if len(out) >= budget:
            break
        out.setdefault(cfg.to_json(), cfg)
    return list(out.values())[:budget]


def quick_tune(layer: PrunedLayer, configs: list[KernelConfig], target: Target, *,
               builder: Builder, x: np.ndarray, reference: np.ndarray, repeats: int = 5,
               finalists: int = 3) -> TuneResult:
    """Build, verify and time ``configs`` on ``layer``; keep the fastest verified one.

    Args:
        layer: The pruned layer.
        configs: Valid configs to try (see :func:`sample_configs`).
        target: Compile target (must load in this process).
        builder: Builds shared libraries.
        x: Input to time and verify on.
        reference: torch's output for ``x``.
        repeats: Timed calls per config after one warmup call. The fastest call
            ranks configs: on a shared machine other processes only ever add time,
            so the minimum ranks more reliably than the median.
        finalists: The best few are timed again, round robin, and the winner is
            picked from that second look (guards against one lucky call).
    """
    t0 = time.perf_counter()
    kernels = [generate(layer, c, target) for c in configs]
    results = builder.build([BuildInput(k, target, (Product.LIBRARY,)) for k in kernels])
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    trials: list[Trial] = []
    libs: dict[int, KernelLibrary] = {}
    for i, (cfg, kernel, res) in enumerate(zip(configs, kernels, results, strict=True)):
        trial = Trial(cfg)
        trials.append(trial)
        if not res.ok:
            trial.error = res.error
            continue
        lib = KernelLibrary(res.library, kernel.weights, layer.spec)
        v = verify(lib.run(x), reference)
        trial.max_rel_error = v.max_rel_error
        if not v.ok:
            trial.error = v.error
            lib.close()
            continue
        times = lib.time(x, warmup=1, repeats=repeats)
        trial.median_s, trial.min_s = float(np.median(times)), float(np.min(times))
        libs[i] = lib
    ranked = sorted(libs, key=lambda i: trials[i].min_s)
    final = ranked[:finalists]
    second: dict[int, list[float]] = {i: [] for i in final}
    for _ in range(repeats):
        for i in final:
            second[i] += libs[i].time(x, warmup=0, repeats=1)
    best_i = min(final, key=lambda i: min(second[i])) if final else None
    for i, lib in libs.items():
        if i != best_i:
            lib.close()
    if best_i is None:
        return TuneResult(None, None, None, trials, build_s, time.perf_counter() - t1)
    return TuneResult(trials[best_i], kernels[best_i], libs[best_i], trials, build_s,
                      time.perf_counter() - t1)
