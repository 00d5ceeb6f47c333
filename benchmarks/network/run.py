"""``pattune bench network``: the whole pruned network, ours against torch and ONNX Runtime.

One built-in model, pattern-pruned as the tuner prunes it (top-K natural patterns, the
connectivity rate on every 3x3 conv but the first and the depthwise ones, which keep
all their kernels: patterns only). Each pattern layer is tuned with a small budget
through the product's kernel search loop (:class:`autotune.task.KernelTask` with an
in-process :class:`~autotune.measurers.LibraryMeasurer`, as ``pattune bench kernels``),
the whole-network library is built with the tuned configs and verified against torch,
then timed side by side in this process, round robin, at one thread count, against
torch eager, torch TorchScript-frozen (the faster of the two is "torch") and ONNX
Runtime, all on the same pruned model and input. Medians of the warm rounds.
"""

from __future__ import annotations

import math
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.kernels.run import BenchOptions as KernelBenchOptions
from benchmarks.kernels.run import search_space, tune_kernel
from codegen.config import KernelConfig
from codegen.local_builder import LocalBuilder
from codegen.target import Target
from codegen.timing import interleaved_medians
from codegen.verify import verify
from pattune_common import UserInputError
from search_spaces.layers import PrunedLayer

IMPLS = ("ours", "torch_eager", "torch_frozen", "ort")


@dataclass(frozen=True)
class NetworkBenchOptions:
    """What ``pattune bench network`` was asked for.

    Attributes:
        model: Built-in model name.
        dataset: Dataset the input shape comes from (None: the model's default).
        patterns: Pattern-set size K.
        connectivity: Connectivity ratio (``3.6`` keeps 1/3.6 of the kernels).
        threads: Threads of every implementation (and of the tuned kernels).
        budget: KernelConfigs tried per pattern layer.
        rounds: Interleaved timing rounds (medians).
        seed: Seed of weights, input and the search.
        out_dir: Where the library is built (default: a temporary folder).
    """

    model: str = "resnet18"
    dataset: str | None = None
    patterns: int = 8
    connectivity: str = "3.6"
    threads: int = 1
    budget: int = 8
    rounds: int = 15
    seed: int = 0
    out_dir: str | None = None


def _check(opts: NetworkBenchOptions, target: Target) -> str:
    """Check the options; return the connectivity in the pruner's ``"3.6x"`` form."""
    if not target.can_load_library:
        raise UserInputError(f"bench network times in-process next to torch, but target "
                             f"{target.name!r} cannot be loaded here; use the host target")
    if not 1 <= opts.threads <= target.max_threads:
        raise UserInputError(f"--threads must lie in 1..{target.max_threads}; got {opts.threads}")
    if opts.budget < 1 or opts.rounds < 1:
        raise UserInputError(f"--budget and --rounds must be >= 1; got {opts.budget}, "
                             f"{opts.rounds}")
    if not 1 <= opts.patterns <= 56:
        raise UserInputError(f"--patterns must lie in 1..56; got {opts.patterns}")
    text = str(opts.connectivity).strip().lower().removesuffix("x")
    try:
        ratio = float(text)
    except ValueError:
        ratio = math.nan
    if not ratio >= 1:
        raise UserInputError(f"--connectivity is a ratio >= 1 (3.6 keeps 1/3.6 of the "
                             f"kernels, 1 keeps all); got {opts.connectivity!r}")
    return f"{text}x"


def _calibrate(model: Any, shape: tuple[int, ...], seed: int) -> None:
    """Scale each conv and linear layer so its output has unit spread on random input.

    Seeded random weights with BatchNorm at its defaults make the activations of deep
    models vanish (MobileNet-V2's and VGG-16's outputs then barely depend on the input,
    and an error check against torch checks little). Data-dependent scaling (LSUV, in
    forward order, eval mode) keeps every layer's output at a trained model's scale.
    """
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, *shape[1:]), generator=g)
    got: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for m in [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]:
            h = m.register_forward_hook(lambda _m, _a, y: got.__setitem__("y", y))
            try:
                model(x)
            finally:
                h.remove()
            std = float(got["y"].std())
            if std > 0:
                m.weight /= std
                if m.bias is not None:
                    m.bias /= std


def _pruned(opts: NetworkBenchOptions, rate: str) -> tuple[Any, tuple[int, ...], list[PrunedLayer]]:
    """The model with its pattern pruning applied in place (no hooks), its input, layers."""
    from search_spaces.masking import attach_masks
    from search_spaces.models import get_model, input_shape
    from search_spaces.pruning import PruneConfig, plan_pruning
    from search_spaces.selection import select_pattern_set

    try:
        model = get_model(opts.model, opts.dataset, seed=opts.seed)
        shape = input_shape(opts.model, opts.dataset)
    except (KeyError, ValueError) as exc:
        raise UserInputError(f"--model/--dataset: {exc}") from None
    _calibrate(model, shape, opts.seed)
    ps = select_pattern_set(model, shape, opts.patterns)
    plan = plan_pruning(model, shape, ps, PruneConfig(connectivity=rate))
    attach_masks(model, plan.masks()).remove()  # weights stay masked; torch runs plain
    return model.eval(), shape, plan.pruned_layers(model, fuse=True)


def _tune(layers: list[PrunedLayer], target: Target, opts: NetworkBenchOptions,
          progress: Callable[[str], None]) -> tuple[dict[str, KernelConfig | None], float]:
    """Each pattern layer through the product's loop; its fastest verified config."""
    from autotune.measurers import LibraryMeasurer

    kopts = KernelBenchOptions(budget=opts.budget, seed=opts.seed, threads=opts.threads)
    builder = LocalBuilder()
    configs: dict[str, KernelConfig | None] = {}
    t0 = time.perf_counter()
    for i, layer in enumerate(layers):
        progress(f"tune {layer.spec.name} ({i + 1}/{len(layers)}): {layer.spec.signature()}")
        measurer = LibraryMeasurer(target=target, builder=builder, seed=opts.seed)
        try:
            space = search_space(layer.spec, target, "fkw", opts.threads)
            configs[layer.spec.name] = tune_kernel(layer, space, measurer, kopts,
                                                   seed=opts.seed + i).best
        finally:
            measurer.close()
    return configs, time.perf_counter() - t0


def _breakdown(lib: Any, ops: list[dict[str, Any]], rounds: int) -> dict[str, dict[str, float]]:
    """Our time per op kind (ms, medians over ``rounds`` runs, each op timed by the library)."""
    from benchmarks.network.ops import label_of

    x = np.zeros(lib.input_shape, np.float32)
    out = np.empty(lib.output_shape, np.float32)
    per_run = []
    lib.run_into(x, out)
    for _ in range(rounds):
        lib.op_seconds(reset=True)
        lib.run_into(x, out)
        per_run.append(lib.op_seconds())
    med = np.median(np.array(per_run), axis=0) * 1e3
    kinds: dict[str, dict[str, float]] = {}
    for op, ms in zip(ops, med, strict=True):
        k = kinds.setdefault(label_of(op), {"ops": 0, "ms": 0.0})
        k["ops"] += 1
        k["ms"] += float(ms)
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]["ms"]))


def run_network_bench(opts: NetworkBenchOptions, target: Target, *,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark; return the JSON document (config, timings, summary)."""
    from benchmarks.network.baselines import Ort, Ours, TorchEager, TorchFrozen
    from codegen.network import build_network, reference_output

    say = progress or (lambda _m: None)
    rate = _check(opts, target)
    t_start = time.perf_counter()
    model, shape, layers = _pruned(opts, rate)
    configs, tune_s = _tune(layers, target, opts, say)
    out_dir = Path(opts.out_dir or tempfile.mkdtemp(prefix="pattune-bench-network-"))
    say(f"build the network in {out_dir}")
    build = build_network(model, shape, {la.spec.name: (la, configs[la.spec.name])
                                         for la in layers}, target, out_dir,
                          products=("shared",))
    x = np.random.default_rng(opts.seed).standard_normal(shape).astype(np.float32)
    ref = reference_output(model, x)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        with build.load(threads=opts.threads) as lib:
            say("time ours, torch eager, torch frozen, ORT side by side")
            impls = [Ours(lib, x), TorchEager(model, x), TorchFrozen(model, x),
                     Ort(model, x, opts.threads)]
            errors = {i.name: verify(i.output(), ref) for i in impls}
            times = interleaved_medians(impls, rounds=opts.rounds, warm_calls=1)
            breakdown = _breakdown(lib, build.ops(), opts.rounds)
    finally:
        torch.set_num_threads(before)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    torch_ms = min(med["torch_eager"], med["torch_frozen"])
    summary = {
        "latency_ms": med["ours"],
        "torch_ms": torch_ms,
        "torch_kind": "eager" if med["torch_eager"] <= med["torch_frozen"] else "frozen",
        "ort_ms": med["ort"],
        "speedup_vs_torch": torch_ms / med["ours"],
        "speedup_vs_ort": med["ort"] / med["ours"],
        "max_rel_err": errors["ours"].max_rel_error,
        "arena_bytes": build.arena_bytes,
        "weights_bytes": build.weights_bytes,
        "breakdown_ms": breakdown,
    }
    return {
        "schema": "pattune.bench.network/1",
        "config": {
            "model": opts.model, "dataset": opts.dataset, "input_shape": list(shape),
            "patterns": opts.patterns, "connectivity": rate, "threads": opts.threads,
            "budget": opts.budget, "rounds": opts.rounds, "seed": opts.seed,
            "target": target.to_dict(), "machine": platform.processor() or platform.machine(),
            "weights": "seeded random, each conv/linear scaled to unit output spread (LSUV)",
        },
        "layers": [{"name": la.spec.name, "signature": la.spec.signature(),
                    "kernels_alive": la.kernels_alive, "kernels_total": la.kernels_total,
                    "config": None if configs[la.spec.name] is None
                    else configs[la.spec.name].to_dict()}  # type: ignore[union-attr]
                   for la in layers],
        "median_ms": med,
        "times_ms": {k: [t * 1e3 for t in v] for k, v in times.items()},
        "max_rel_err": {k: v.max_rel_error for k, v in errors.items()},
        "verify_errors": {k: v.error for k, v in errors.items() if v.error},
        "summary": summary,
        "out_dir": str(out_dir),
        "tune_s": round(tune_s, 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }


__all__ = ["IMPLS", "NetworkBenchOptions", "run_network_bench"]
