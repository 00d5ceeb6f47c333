"""Each op of a built network timed next to torch computing the same op, side by side.

Per round: one untimed network run, then one run whose per-op seconds the library
measures itself (``pt_model_op_seconds``); then the same for torch: one untimed pass
through the network's ops in order (torch's functional op for each, on the folded
weights), then one pass with each op timed. Both sides run each op inside the network,
after the ops before it, so cache states match; same thread count; medians over the
rounds. ``python -m benchmarks.network.ops --model resnet18`` prints the
table by op kind (docs/network.md has the figures).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own idiom

from codegen import host_target
from codegen.network import Graph, NetworkBuild, build_graph, build_network
from codegen.network.ops import Activation, AdaptiveAvgPool2d, Add, Conv2d, Linear, Op, Pool2d


@dataclass(frozen=True)
class OpTiming:
    """One op's median times (milliseconds).

    Attributes:
        index: Position in the network.
        name: Op name.
        kind: Kind label (``conv 7x7/2``, ``conv 1x1``, ``depthwise 3x3``, ``maxpool`` ...).
        ours_ms: Median of the network's own per-op time.
        torch_ms: Median of torch's time for the same op alone.
    """

    index: int
    name: str
    kind: str
    ours_ms: float
    torch_ms: float


def label_of(d: dict[str, Any]) -> str:
    """The kind label of an op from its JSON form (``model.json``'s ``ops``)."""
    kind = d["kind"]
    if kind == "conv2d":
        geo = f"{d['kh']}x{d['kw']}" + (f"/{d['stride']}" if d["stride"] > 1 else "")
        dw = d["groups"] == d["cin"] == d["cout"] and d["groups"] > 1
        if d.get("pattern"):
            return f"pattern {'depthwise ' if dw else ''}{geo}"
        if dw:
            return f"depthwise {geo}"
        return f"conv {geo}" + (", cin 3" if d["cin"] == 3 else "")
    if kind == "pool2d":
        return f"{d['mode']}pool {d['k']}x{d['k']}/{d['stride']}"
    if kind == "adaptive_avg_pool2d":
        return "global avgpool" if d["oh"] == d["ow"] == 1 else "adaptive avgpool"
    return str(kind)


def _label(op: Op) -> str:
    return label_of(op.to_dict())


def _act(y: torch.Tensor, act: str) -> torch.Tensor:
    return torch.relu(y) if act == "relu" else F.relu6(y) if act == "relu6" else y


def _torch_op(op: Op, graph: Graph) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """torch computing ``op`` on the tensors it reads from ``env``."""
    if isinstance(op, Conv2d):
        if op.pattern:
            layer, _ = graph.patterns[op.name]
            w = torch.from_numpy(np.array(layer.weights))
            b = None if layer.bias is None else torch.from_numpy(np.array(layer.bias))
            relu, pool = layer.relu, layer.maxpool
        else:
            w, b = (torch.from_numpy(a) for a in graph.params[op.name])
            relu, pool = False, False

        def conv(env: dict[str, torch.Tensor]) -> torch.Tensor:
            y = F.conv2d(env[op.inputs[0]], w, b, op.stride, op.padding, 1, op.groups)
            y = torch.relu(y) if relu else y
            return _act(F.max_pool2d(y, 2, 2) if pool else y, op.act)
        return conv
    if isinstance(op, Pool2d):
        if op.mode == "max":
            return lambda env: F.max_pool2d(env[op.inputs[0]], op.k, op.stride, op.padding)
        return lambda env: F.avg_pool2d(env[op.inputs[0]], op.k, op.stride, op.padding,
                                        count_include_pad=op.count_include_pad)
    if isinstance(op, AdaptiveAvgPool2d):
        return lambda env: F.adaptive_avg_pool2d(env[op.inputs[0]], (op.oh, op.ow)).reshape(
            op.out_shape)
    if isinstance(op, Add):
        return lambda env: _act(env[op.inputs[0]] + env[op.inputs[1]], op.act)
    if isinstance(op, Activation):
        return lambda env: _act(env[op.inputs[0]], op.act)
    if isinstance(op, Linear):
        w, b = (torch.from_numpy(a) for a in graph.params[op.name])
        return lambda env: _act(F.linear(env[op.inputs[0]], w, b), op.act)
    return lambda env: env[op.inputs[0]].reshape(op.out_shape)  # flatten: a view


def _torch_round(graph: Graph, fns: list[Callable[[dict[str, torch.Tensor]], torch.Tensor]],
                 x: torch.Tensor) -> list[float]:
    """One pass of torch through the network's ops in order, each op timed."""
    env = {graph.input: x}
    times = []
    for op, fn in zip(graph.ops, fns, strict=True):
        t0 = time.perf_counter()
        env[op.output] = fn(env)
        times.append(time.perf_counter() - t0)
    return times


def op_timings(model: torch.nn.Module, input_shape: tuple[int, ...],
               patterns: dict | None, out_dir: str | Path, *, threads: int = 1,
               rounds: int = 9, seed: int = 0) -> tuple[list[OpTiming], NetworkBuild]:
    """Build ``model`` for the host and time every op against torch's (see module docstring)."""
    graph = build_graph(model, input_shape, pattern_layers=patterns)
    build = build_network(model, input_shape, patterns, host_target(), out_dir,
                          products=("shared",))
    fns = [_torch_op(op, graph) for op in graph.ops]
    x = np.random.default_rng(seed).standard_normal(input_shape).astype(np.float32)
    tx = torch.from_numpy(x)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    ours, theirs = [], []
    try:
        with build.load(threads=threads) as lib, torch.no_grad():
            out = np.empty(lib.output_shape, np.float32)
            for _ in range(rounds):
                lib.run_into(x, out)
                lib.op_seconds(reset=True)
                lib.run_into(x, out)
                ours.append(lib.op_seconds())
                _torch_round(graph, fns, tx)
                theirs.append(_torch_round(graph, fns, tx))
    finally:
        torch.set_num_threads(before)
    om, tm = np.median(ours, axis=0) * 1e3, np.median(theirs, axis=0) * 1e3
    return [OpTiming(i, op.name, _label(op), float(om[i]), float(tm[i]))
            for i, op in enumerate(graph.ops)], build


def by_kind(timings: list[OpTiming]) -> dict[str, tuple[int, float, float]]:
    """Per kind label: ``(ops, our ms, torch ms)`` summed over the ops of that kind."""
    out: dict[str, tuple[int, float, float]] = {}
    for t in timings:
        n, a, b = out.get(t.kind, (0, 0.0, 0.0))
        out[t.kind] = (n + 1, a + t.ours_ms, b + t.torch_ms)
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the per-kind table of one built-in model (dense; ``--prune`` pattern-prunes it)."""
    from search_spaces.models import get_model, input_shape

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--dataset", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--out", default="/tmp/pattune-network-ops")
    a = p.parse_args(argv)
    model = get_model(a.model, a.dataset)
    shape = input_shape(a.model, a.dataset)
    timings, build = op_timings(model, shape, None, a.out, threads=a.threads, rounds=a.rounds)
    print(f"{a.model} {shape} threads={a.threads} arena={build.arena_bytes} "
          f"weights={build.weights_bytes}")
    print(f"{'kind':28s} {'ops':>4s} {'ours ms':>9s} {'torch ms':>9s} {'torch/ours':>10s}")
    for kind, (n, ours, theirs) in sorted(by_kind(timings).items(), key=lambda kv: -kv[1][2]):
        ratio = theirs / ours if ours > 0 else float("nan")
        print(f"{kind:28s} {n:4d} {ours:9.3f} {theirs:9.3f} {ratio:10.2f}")
    total_o, total_t = sum(t.ours_ms for t in timings), sum(t.torch_ms for t in timings)
    print(f"{'total':28s} {len(timings):4d} {total_o:9.3f} {total_t:9.3f} {total_t / total_o:10.2f}")


if __name__ == "__main__":
    main()
