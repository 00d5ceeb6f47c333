"""``pattune bench kernels``: tuned pattern kernels against dense and sparse baselines.

For every 3x3 conv layer of a model: prune it (pattern set + connectivity),
tune the pattern kernel and the unstructured-sparse kernel with the same budget
through the product's kernel search loop (:class:`autotune.task.KernelTask`,
here with the ``hillclimb`` strategy and a :class:`~autotune.measurers.LibraryMeasurer`
that times libraries in this process), verify everything against torch, then
time all implementations interleaved, in one process, at one thread count.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotune.cost_model.manager import CostModelManager
from autotune.measurers import LibraryMeasurer
from autotune.strategies import TaskContext
from autotune.task import KernelTask, TaskResult
from benchmarks.kernels.baselines import (
    Generated,
    Implementation,
    OrtDense,
    TorchCSR,
    TorchDense,
    interleaved_medians,
)
from codegen.config import ConfigSpace, KernelConfig, config_space
from codegen.counts import count
from codegen.generator import GeneratedKernel
from codegen.local_builder import LocalBuilder
from codegen.peak import FmaPeak, measure_peak
from codegen.target import Target
from codegen.verify import verify
from pattune_common import UserInputError
from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.patterns import PatternSet
from search_spaces.projection import parse_connectivity, prune_layer

IMPLS = ("pattern", "unstructured", "torch", "ort", "torch_csr")
DENSE_IMPLS = ("torch", "ort")  # they do every MAC of the dense layer


@dataclass(frozen=True)
class BenchOptions:
    """What ``pattune bench kernels`` was asked for.

    Attributes:
        model: Built-in model name.
        dataset: Dataset the model's shapes come from (None: the model's default).
        patterns: Pattern-set size K (top-K natural patterns of the model's weights).
        connectivity: Connectivity rate (``3.6`` keeps 1/3.6 of the kernels; 1 = patterns only).
        threads: Threads for every implementation.
        budget: Configs tried per layer and per kernel kind.
        rounds: Interleaved timing rounds per layer (medians).
        layers: Only these layer names (empty: every 3x3 layer).
        seed: Seed of the input, the config sampling and the model weights.
    """

    model: str = "vgg16"
    dataset: str | None = None
    patterns: int = 8
    connectivity: str = "3.6"
    threads: int = 1
    budget: int = 30
    rounds: int = 9
    layers: tuple[str, ...] = ()
    seed: int = 0


def _model_layers(opts: BenchOptions) -> tuple[list[tuple[LayerSpec, np.ndarray]], PatternSet]:
    from search_spaces.models import conv_layers, get_model, input_shape
    from search_spaces.selection import select_pattern_set

    model = get_model(opts.model, opts.dataset, seed=opts.seed)
    shape = input_shape(opts.model, opts.dataset)
    convs = [c for c in conv_layers(model, shape) if c.is_3x3]
    if opts.layers:
        known = [c.name for c in convs]
        unknown = [n for n in opts.layers if n not in known]
        if unknown:
            raise UserInputError(
                f"unknown layer {unknown[0]!r} for model {opts.model!r}; its 3x3 layers are "
                f"{', '.join(known)}"
            )
        convs = [c for c in convs if c.name in opts.layers]
    ps = select_pattern_set(model, shape, opts.patterns)
    return [(c.spec, c.module.weight.detach().numpy().copy()) for c in convs], ps


def _check(opts: BenchOptions, target: Target) -> None:
    if not target.can_load_library:
        raise UserInputError(
            f"bench kernels times in-process next to torch, but target {target.name!r} cannot "
            "be loaded here; use the host target (the device farm measures other targets)"
        )
    if not 1 <= opts.threads <= target.max_threads:
        raise UserInputError(f"--threads must lie in 1..{target.max_threads}; got {opts.threads}")
    if opts.budget < 1:
        raise UserInputError(f"--budget must be >= 1; got {opts.budget}")
    if opts.rounds < 1:
        raise UserInputError(f"--rounds must be >= 1; got {opts.rounds}")
    try:
        parse_connectivity(opts.connectivity)
    except ValueError as exc:
        raise UserInputError(f"--connectivity: {exc}") from None
    text = str(opts.connectivity).strip().lower()
    if not text.endswith("x") and float(text) < 1:
        # Here the flag is a ratio (its help says so); 0.5 would silently mean "remove half".
        raise UserInputError(
            f"--connectivity is a ratio >= 1 here (3.6 keeps 1/3.6 of the kernels, 1 keeps "
            f"all); got {opts.connectivity!r} (to remove a fraction f, give 1/(1-f))"
        )


def search_space(spec: LayerSpec, target: Target, fmt: str, threads: int) -> ConfigSpace:
    """The space both kernel kinds are tuned in: the full space minus regions that are
    never competitive on a wide-vector CPU (a prior, the same for both kinds):
    vectors of at least 8 floats, oc_block >= 4, ic_block >= 8, >= 6 accumulators
    (with one thread, ``config_space`` itself keeps a single thread mapping)."""
    full = config_space(spec, target)
    c = full.choices

    def keep(field: str, ok: Callable[[Any], bool]) -> tuple[Any, ...]:
        return tuple(v for v in c[field] if ok(v)) or (max(c[field]),)

    return config_space(
        spec, target, min_accumulators=6, threads=threads, format=fmt,
        vector_width=keep("vector_width", lambda v: v >= 8),
        oc_block=keep("oc_block", lambda v: v >= 4),
        ic_block=keep("ic_block", lambda v: v >= 8),
    )


@dataclass(frozen=True)
class Tuned:
    """One kernel kind's search: the task's result and the confirmed fastest config."""

    task: TaskResult
    best: KernelConfig | None
    build_s: float
    measure_s: float


EXPLORE = 0.6  # share of the budget sampled at random before the hill climb
FINALISTS = 3  # fastest configs timed again side by side before one is picked


def tune_kernel(layer: PrunedLayer, space: ConfigSpace, measurer: LibraryMeasurer,
                opts: BenchOptions, *, seed: int,
                first: list[KernelConfig] | None = None) -> Tuned:
    """One kernel kind through the product's loop, then its finalists timed side by side.

    The ``hillclimb`` strategy samples ``EXPLORE`` of the budget at random (the
    default config and ``first`` count), then climbs one-step neighbours of the best
    few; every config is built, verified against torch and timed in-process. The
    ``FINALISTS`` fastest, and the default config, are then timed again round robin
    (guards against one lucky call, and against one unlucky call of the default) before
    one is kept.
    """
    explore = max(1, math.ceil(EXPLORE * opts.budget))
    build0, measure0 = measurer.stats.build_s, measurer.stats.measure_s
    task = KernelTask(
        layer=layer, context=TaskContext.of(layer), space=space, measurer=measurer,
        # hillclimb uses no cost model; the untrained "random" kind costs nothing to keep
        models=CostModelManager(device_type=measurer.device_type, kind="random"),
        strategy="hillclimb", strategy_options={"explore": explore, "top": FINALISTS},
        budget=opts.budget, batch=8, seed=seed, first=(first or [])[: explore - 1],
    )
    res = task.run()
    ranked = sorted((r for r in res.history if r.ok), key=lambda r: r.latency_s or math.inf)
    finalists = [r.config for r in ranked[:FINALISTS]]
    if res.default not in finalists and any(r.config == res.default for r in ranked):
        finalists.append(res.default)  # one slow call in the search must not drop it
    best = measurer.confirm(layer, finalists, rounds=5)
    return Tuned(res, best, measurer.stats.build_s - build0,
                 measurer.stats.measure_s - measure0)


def _tune_both(layer: PrunedLayer, target: Target, opts: BenchOptions,
               measurer: LibraryMeasurer) -> dict[str, Tuned]:
    """Tune the pattern and the unstructured kernel with the same budget and search.

    The unstructured kernel's random phase starts from the code parameters the
    pattern kernel's search tried (format csr, no LRE; duplicates dropped), then its
    own samples and hill climbing: config for config, the comparison shows what the
    patterns buy.
    """
    fkw_space = search_space(layer.spec, target, "fkw", opts.threads)
    csr_space = search_space(layer.spec, target, "csr", opts.threads)
    pattern = tune_kernel(layer, fkw_space, measurer, opts, seed=opts.seed)
    seeds = [r.config.replace(format="csr", lre=False, tap_shuffle=False, shift_sums=False)
             for r in pattern.task.history]
    unstructured = tune_kernel(layer, csr_space, measurer, opts, seed=opts.seed + 1,
                               first=[c for c in dict.fromkeys(seeds) if csr_space.is_valid(c)])
    return {"pattern": pattern, "unstructured": unstructured}


def bench_layer(spec: LayerSpec, weights: np.ndarray, ps: PatternSet, target: Target,
                opts: BenchOptions, builder: LocalBuilder, peak: FmaPeak) -> dict[str, Any]:
    """Prune, tune, verify and time one layer; return its JSON row.

    The row's ``peak_fraction`` gives per implementation the MACs it must do (non-zero
    ones for the sparse kernels, all for the dense baselines) per second over ``peak``.
    """
    import torch

    layer = prune_layer(spec, weights, ps, connectivity=opts.connectivity)
    measurer = LibraryMeasurer(target=target, builder=builder, seed=opts.seed)
    try:
        x, ref = measurer.inputs(layer)
        tuned = _tune_both(layer, target, opts, measurer)
        torch.set_num_threads(opts.threads)
        impls: list[Implementation] = []
        kernels = {}
        for name, t in tuned.items():
            got = measurer.loaded(layer, t.best) if t.best is not None else None
            if got is not None:
                kernels[name] = got[0]
                impls.append(Generated(name, got[1], x))
        impls += [TorchDense(layer, x), OrtDense(layer, x, opts.threads)]
        if spec.groups == 1:
            impls.append(TorchCSR(layer, x))
        errors = {i.name: verify(i.output(), ref) for i in impls}
        times = interleaved_medians(impls, rounds=opts.rounds)
    finally:
        measurer.close()
    med = {k: float(np.median(v)) for k, v in times.items()}
    pat = med.get("pattern", math.inf)
    row: dict[str, Any] = {
        "name": spec.name, "spec": spec.to_dict(), "in_summary": spec.cin > 3,
        "kernels_alive": layer.kernels_alive, "kernels_total": layer.kernels_total,
        "nonzeros": layer.nonzeros, "dense_macs": spec.dense_macs,
        "pruned_macs": layer.pruned_macs,
        "median_s": med,
        "speedup_vs": {k: med[k] / pat for k in med if k != "pattern"},
        "gflops_effective": {k: 2 * spec.dense_macs / v / 1e9 for k, v in med.items()},
        "gflops_useful": {k: 2 * layer.pruned_macs / v / 1e9 for k, v in med.items()},
        "peak_fraction": {k: (spec.dense_macs if k in DENSE_IMPLS else layer.pruned_macs)
                          / v / peak.macs_per_s for k, v in med.items()},
        "max_rel_error": {k: v.max_rel_error for k, v in errors.items()},
        "verify_errors": {k: v.error for k, v in errors.items() if v.error},
    }
    row.update(_format_bytes(layer, kernels))
    # Where the time goes: the work the tuned code executes (codegen.counts) and the time
    # its FMAs alone need at the measured peak.
    best = {k: t.best for k, t in tuned.items() if t.best is not None}
    row["counts"] = {k: count(layer, cfg).to_dict() for k, cfg in best.items()}
    row["fma_bound_s"] = {k: row["counts"][k]["vector_fmas"] * cfg.vector_width
                          / peak.macs_per_s for k, cfg in best.items()}
    for name, t in tuned.items():
        hist = t.task.history
        row[f"tuning_{name}"] = {
            "tried": len(hist), "failed": sum(1 for r in hist if r.error),
            "build_s": round(t.build_s, 2), "measure_s": round(t.measure_s, 2),
            "best_config": t.best.to_dict() if t.best else None,
            "first_error": next((r.error for r in hist if r.error), ""),
        }
    return row


def _format_bytes(layer: PrunedLayer, kernels: dict[str, GeneratedKernel]) -> dict[str, Any]:
    s = layer.spec
    nz = layer.nonzeros * 4
    fkw = kernels["pattern"].format_bytes if "pattern" in kernels else 0
    csr = kernels["unstructured"].format_bytes if "unstructured" in kernels else 0
    dense = s.cout * s.cin_per_group * s.kh * s.kw * 4
    return {"fkw_bytes": fkw, "csr_bytes": csr, "dense_bytes": dense, "nonzero_bytes": nz,
            "fkw_over_dense": fkw / dense, "fkw_over_nonzero": fkw / nz if nz else math.inf}


def _geomean(values: list[float]) -> float:
    ok = [v for v in values if v > 0 and math.isfinite(v)]
    return float(math.exp(sum(math.log(v) for v in ok) / len(ok))) if ok else float("nan")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary over the layers marked ``in_summary`` (the cin=3 input layer is left out)."""
    use = [r for r in rows if r["in_summary"]]
    out: dict[str, Any] = {"layers_in_summary": [r["name"] for r in use]}
    for base in ("torch", "ort", "unstructured", "torch_csr"):
        out[f"geomean_speedup_vs_{base}"] = _geomean(
            [r["speedup_vs"].get(base, math.nan) for r in use])
    out["geomean_peak_fraction"] = _geomean([r["peak_fraction"].get("pattern", math.nan)
                                             for r in use])
    out["geomean_peak_fraction_torch"] = _geomean([r["peak_fraction"].get("torch", math.nan)
                                                   for r in use])
    fkw = sum(r["fkw_bytes"] for r in use)
    nz = sum(r["nonzero_bytes"] for r in use)
    out["fkw_bytes_over_nonzero_bytes"] = fkw / nz if nz else math.nan
    out["fkw_bytes_over_dense_bytes"] = fkw / max(1, sum(r["dense_bytes"] for r in use))
    out["total_median_s"] = {k: sum(r["median_s"].get(k, math.nan) for r in use) for k in IMPLS}
    out["max_rel_error_pattern"] = max((r["max_rel_error"].get("pattern", math.inf)
                                        for r in rows), default=math.nan)
    return out


def run_bench(opts: BenchOptions, target: Target, *, builder: LocalBuilder | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole benchmark; return the JSON document (config, layers, summary)."""
    _check(opts, target)
    layers, ps = _model_layers(opts)
    builder = builder or LocalBuilder()
    rows = []
    t0 = time.perf_counter()
    # The ceiling every layer's peak_fraction is measured against, at the bench's threads.
    peak = measure_peak(target, threads=opts.threads)
    if progress:
        progress(f"FMA peak: {peak.gmacs:.1f} GMAC/s ({opts.threads} thread(s), "
                 f"{peak.vector_floats}-float vectors)")
    for spec, w in layers:
        if progress:
            progress(f"{spec.name}: cin {spec.cin} cout {spec.cout} {spec.h}x{spec.w}")
        rows.append(bench_layer(spec, w, ps, target, opts, builder, peak))
    return {
        "schema": "pattune.bench.kernels/1",
        "config": {
            "model": opts.model, "dataset": opts.dataset, "patterns": opts.patterns,
            "connectivity": opts.connectivity,
            "connectivity_removed_fraction": parse_connectivity(opts.connectivity),
            "threads": opts.threads, "budget": opts.budget, "rounds": opts.rounds,
            "seed": opts.seed, "target": target.to_dict(), "machine": platform.processor(),
            "fma_peak_gmacs": peak.gmacs,
            "fma_peak": {"chains": peak.chains, "vector_floats": peak.vector_floats,
                         "threads": peak.threads},
            "pattern_set": [list(p.taps) for p in ps],
            "pattern_set_source": "select_pattern_set: top-K natural patterns of the model's "
                                  "seeded random weights",
        },
        "layers": rows,
        "summary": summarise(rows),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
