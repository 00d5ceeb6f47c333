"""A small random search over KernelConfigs: build, verify, then time (Kernel Tuner style).

This is the cheap stand-in for the full tuner (autotune) that the kernel
benchmark uses so its figures reflect tuned code: the default config plus
random valid samples, at most ``budget`` in all, built in parallel; a config
counts only after its output matched torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from codegen._base import Builder, BuildInput, Product
from codegen.config import ConfigSpace, KernelConfig
from codegen.generator import GeneratedKernel, generate
from codegen.runtime import KernelLibrary
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


def quick_tune(layer: PrunedLayer, space: ConfigSpace, *, budget: int, builder: Builder,
               x: np.ndarray, reference: np.ndarray, rng: np.random.Generator,
               repeats: int = 5) -> TuneResult:
    """Try at most ``budget`` configs of ``space`` on ``layer``; keep the fastest verified one.

    Args:
        layer: The pruned layer.
        space: Valid configs (pinned fields already applied).
        budget: Most configs built and timed (>= 1).
        builder: Builds shared libraries.
        x: Input to time and verify on.
        reference: torch's output for ``x``.
        rng: Sampling generator (owned by the caller).
        repeats: Timed calls per config after one warmup call. The fastest call
            picks the winner: on a shared machine other processes only ever add time,
            so the minimum ranks configs more reliably than the median.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1; got {budget}")
    default = space.default()
    extra = [c for c in space.sample(rng, budget + 4) if c != default][: budget - 1]
    configs = [default, *extra]
    t0 = time.perf_counter()
    kernels = [generate(layer, c, space.target) for c in configs]
    results = builder.build([BuildInput(k, space.target, (Product.LIBRARY,)) for k in kernels])
    build_s = time.perf_counter() - t0
    trials, best, best_k, best_lib = [], None, None, None
    t1 = time.perf_counter()
    for cfg, kernel, res in zip(configs, kernels, results, strict=True):
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
        if best is None or trial.min_s < best.min_s:
            if best_lib is not None:
                best_lib.close()
            best, best_k, best_lib = trial, kernel, lib
        else:
            lib.close()
    return TuneResult(best, best_k, best_lib, trials, build_s, time.perf_counter() - t1)
