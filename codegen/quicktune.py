"""A small search over KernelConfigs: build, verify, then time (Kernel Tuner style).

This is the cheap stand-in for the full tuner (autotune) that the kernel
benchmark uses so its figures reflect tuned code: the default config plus
random valid samples, then a few rounds of hill climbing around the fastest
(:func:`search`), at most ``budget`` in all, built in parallel per round; a
config counts only after its output matched torch, and the few fastest are
timed a second time before one is picked.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from codegen._base import Builder, BuildInput, Product
from codegen.config import ConfigSpace, KernelConfig
from codegen.generator import GeneratedKernel, generate
from codegen.runtime import KernelLibrary
from codegen.target import Target
from codegen.timing import Generated, interleaved_medians
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


def neighbours(space: ConfigSpace, cfg: KernelConfig) -> list[KernelConfig]:
    """Valid configs one step from ``cfg``: one field moved to an adjacent value of its
    choices (the order of :func:`codegen.config_space`: sizes ascending)."""
    out = []
    for name, values in space.choices.items():
        i = values.index(getattr(cfg, name))
        for j in (i - 1, i + 1):
            if 0 <= j < len(values):
                cand = cfg.replace(**{name: values[j]})
                if space.is_valid(cand):
                    out.append(cand)
    return out


def search(layer: PrunedLayer, space: ConfigSpace, budget: int, rng: np.random.Generator, *,
           target: Target, builder: Builder, x: np.ndarray, reference: np.ndarray,
           seed_configs: list[KernelConfig] | None = None, explore: float = 0.6,
           repeats: int = 5, finalists: int = 3) -> TuneResult:
    """Random sampling, then hill climbing: the fastest verified kernel of ``budget`` configs.

    ``explore`` of the budget goes to :func:`sample_configs` (seeds first; the space's
    default when none are given); the rest is spent in rounds on the unseen
    :func:`neighbours` of the best few so far, since kernel latency is smooth in most
    single fields (tile sizes, blocks, distances). Every config is built, verified
    against ``reference`` and timed ``repeats`` times after one warmup call; the
    fastest call ranks configs (on a shared machine other processes only ever add
    time), and the ``finalists`` fastest are timed again, round robin, before one is
    picked (guards against one lucky call).
    """
    if not 0 < explore <= 1:
        raise ValueError(f"explore must lie in (0, 1]; got {explore}")
    first = sample_configs(space, max(1, math.ceil(explore * budget)), rng,
                           seed_configs=seed_configs)
    res = _try(layer, first, target, builder=builder, x=x, reference=reference,
               repeats=repeats)
    seen = {c.to_json() for c in first}
    rounds = 2
    for r in range(rounds):
        left = budget - len(seen)
        if left <= 0:
            break
        want = left if r == rounds - 1 else -(-left // (rounds - r))
        pool: dict[str, KernelConfig] = {}
        for trial in res.ranked()[:finalists]:
            for cand in neighbours(space, trial.config):
                if cand.to_json() not in seen:
                    pool.setdefault(cand.to_json(), cand)
        picks = list(pool.values())
        if not picks:
            break
        chosen = [picks[i] for i in sorted(rng.choice(len(picks), min(want, len(picks)),
                                                      replace=False))]
        seen.update(c.to_json() for c in chosen)
        res.merge(_try(layer, chosen, target, builder=builder, x=x, reference=reference,
                       repeats=repeats))
    return res.pick(x, repeats=repeats, finalists=finalists)


@dataclass
class _Tried:
    """Trials so far, with the loaded library of every verified one (kernels beside)."""

    trials: list[Trial]
    kernels: list[GeneratedKernel]
    libs: dict[int, KernelLibrary]
    build_s: float
    measure_s: float

    def ranked(self) -> list[Trial]:
        """Verified trials, fastest (by best call) first."""
        return sorted((self.trials[i] for i in self.libs), key=lambda t: t.min_s)

    def merge(self, other: _Tried) -> None:
        """Append ``other``'s trials (their indices shift past ours)."""
        n = len(self.trials)
        self.trials += other.trials
        self.kernels += other.kernels
        self.libs.update({n + i: lib for i, lib in other.libs.items()})
        self.build_s += other.build_s
        self.measure_s += other.measure_s

    def pick(self, x: np.ndarray, *, repeats: int, finalists: int) -> TuneResult:
        """Time the ``finalists`` fastest again, round robin; keep the winner's library.

        The bench's own protocol (:func:`codegen.timing.interleaved_medians`, with no
        pause between turns): each timed call follows an untimed one
        of the same library, so the finalists are compared warm, not on who pays for
        refilling the caches after the others.
        """
        t0 = time.perf_counter()
        final = sorted(self.libs, key=lambda i: self.trials[i].min_s)[:finalists]
        second = interleaved_medians([Generated(str(i), self.libs[i], x) for i in final],
                                     rounds=repeats, warmup=0, settle_s=0.0)
        best_i = min(final, key=lambda i: min(second[str(i)])) if final else None
        for i, lib in self.libs.items():
            if i != best_i:
                lib.close()
        measure_s = self.measure_s + time.perf_counter() - t0
        if best_i is None:
            return TuneResult(None, None, None, self.trials, self.build_s, measure_s)
        return TuneResult(self.trials[best_i], self.kernels[best_i], self.libs[best_i],
                          self.trials, self.build_s, measure_s)


def _try(layer: PrunedLayer, configs: list[KernelConfig], target: Target, *,
         builder: Builder, x: np.ndarray, reference: np.ndarray, repeats: int) -> _Tried:
    """Build ``configs`` in parallel, verify each against ``reference``, time the good ones."""
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
        lib = KernelLibrary(res.library, kernel.weights, layer.spec, maxpool=layer.maxpool)
        v = verify(lib.run(x), reference)
        trial.max_rel_error = v.max_rel_error
        if not v.ok:
            trial.error = v.error
            lib.close()
            continue
        times = lib.time(x, warmup=1, repeats=repeats)
        trial.median_s, trial.min_s = float(np.median(times)), float(np.min(times))
        libs[i] = lib
    return _Tried(trials, kernels, libs, build_s, time.perf_counter() - t1)
