"""The arena planner: no two live buffers share memory, dead ones do, offsets stay aligned;
no op reads arena memory that no op of the run wrote."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from codegen import aarch64_target, host_target
from codegen.network import (
    Buffer,
    build_graph,
    generate_network,
    network_buffers,
    plan_arena,
    run_build,
)
from codegen.network.arena import ALIGN_FLOATS, ArenaPlan
from tests.network_support import build, model_case, prune, rel_err, torch_out


def _peak(buffers: list[Buffer]) -> int:
    """Most floats live at one op: no plan can be smaller."""
    steps = range(min(b.first for b in buffers), max(b.last for b in buffers) + 1)
    return max(sum(-(-b.floats // ALIGN_FLOATS) * ALIGN_FLOATS for b in buffers
                   if b.first <= t <= b.last) for t in steps)


@pytest.mark.parametrize("seed", range(20))
def test_random_lifetimes_never_overlap_while_live(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bufs = []
    for i in range(int(rng.integers(1, 40))):
        first = int(rng.integers(-1, 30))
        bufs.append(Buffer(f"t{i}", int(rng.integers(0, 5000)), first,
                           first + int(rng.integers(0, 8))))
    plan = plan_arena(bufs)
    assert plan.overlapping_live_pairs() == []
    assert all(o % ALIGN_FLOATS == 0 for o in plan.offsets)
    assert _peak(bufs) <= plan.floats <= sum(-(-b.floats // 16) * 16 for b in bufs)


def test_a_chain_reuses_two_buffers() -> None:
    bufs = [Buffer(f"t{i}", 1000, i - 1, i) for i in range(10)]
    plan = plan_arena(bufs)
    assert plan.floats == 2 * 1008
    assert len(set(plan.offsets)) == 2


def test_the_checker_finds_an_overlap() -> None:
    a, b = Buffer("a", 64, 0, 2), Buffer("b", 64, 1, 3)
    assert ArenaPlan((a, b), (0, 32), 96).overlapping_live_pairs() == [("a", "b")]
    assert ArenaPlan((a, b), (0, 64), 128).overlapping_live_pairs() == []


def test_bad_buffers_are_refused() -> None:
    with pytest.raises(ValueError, match="last >= first"):
        Buffer("x", 1, 3, 2)
    with pytest.raises(ValueError, match="unique names"):
        plan_arena([Buffer("x", 1, 0, 0), Buffer("x", 1, 1, 1)])


@pytest.mark.parametrize("name", ["resnet18@64", "mobilenet_v2@64", "vgg16_narrow"])
def test_network_arenas_are_sound_and_reuse_memory(name: str) -> None:
    model, shape = model_case(name)
    graph = build_graph(model, shape, pattern_layers=prune(model, shape))
    src = generate_network(graph, host_target())
    plan = src.arena
    assert plan.overlapping_live_pairs() == []
    total = sum(b.floats for b in plan.buffers)
    assert _peak(list(plan.buffers)) <= plan.floats < total / 2
    flat = next(op for op in graph.ops if op.kind == "flatten")
    assert plan.offset(flat.output) == plan.offset(flat.inputs[0])  # same memory, no copy
    pads = [b for b in plan.buffers if b.name.startswith("input:")]
    assert {b.name for b in pads} == {f"input:{op.name}" for op in graph.ops
                                      if op.kind == "conv2d" and op.pattern
                                      and not op.is_depthwise}
    assert all(b.floats > 0 and b.last - b.first <= 1 for b in pads)
    bufs, aliases = network_buffers(graph, {})
    assert {b.name for b in bufs} == {graph.input} | {op.output for op in graph.ops
                                                      if not op.aliases_input}
    assert aliases == {flat.output: flat.inputs[0]}


def test_plan_round_trips_through_json() -> None:
    plan = plan_arena([Buffer("a", 10, -1, 1), Buffer("b", 20, 0, 2)], aliases={"c": "b"})
    assert ArenaPlan.from_json(plan.to_json()) == plan
    assert plan.offset("c") == plan.offset("b")


@pytest.mark.parametrize("kind", ["host", "aarch64"])
def test_a_nan_filled_arena_changes_no_output(kind: str, tmp_path: Path) -> None:
    """Every pattern layer's padded input lives in the arena, shared over time with other
    tensors: its borders must be zeroed on each run. Built with the arena filled with
    NaNs at creation, every model still matches torch, at 1 and 2 threads."""
    target = host_target() if kind == "host" else aarch64_target()
    poisoned = dataclasses.replace(target, cflags=(*target.cflags, "-DPT_ARENA_POISON"))
    names = ["resnet18@32", "vgg16_narrow", "mobilenet_v2@32"] if kind == "host" \
        else ["resnet18@32"]
    for name in names:
        model, shape = model_case(name)
        b = build(model, shape, prune(model, shape), poisoned, tmp_path / name,
                  tmp_path / "cache")
        x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
        ref = torch_out(model, x)
        for threads in (1, 2):
            out = run_build(b, x, threads=threads)
            assert np.isfinite(out).all(), (name, threads)
            assert rel_err(out, ref) <= 1e-4, (name, threads)
