"""A pattern layer stores its output straight into the next pattern layer's padded input.

Where a pattern layer's only reader is the next pattern layer (stride 1, one input plane
per channel), the producer's tiles write into the consumer's zero-bordered buffer and the
consumer runs without its padding copy: the same numbers, bitwise, as with the copy, on
both targets and with two threads, and the handed-off tensor takes no arena space.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from codegen import aarch64_target, config_space, host_target
from codegen.network import build_graph, generate_network, run_build
from tests.network_support import build, model_case, prune, rel_err, torch_out

pytestmark = pytest.mark.xdist_group("network-handoff")

# VGG-16: 13 convs, a max-pool fused after the 2nd, 4th, 7th, 10th and 13th; the other
# 8 hand off. ResNet-18: each of the 8 blocks' conv1 hands off to its conv2 (conv2 feeds
# the residual add).
EDGES = {"vgg16_narrow": 8, "resnet18@32": 8}


@pytest.mark.parametrize("name", list(EDGES))
def test_eligible_edges_hand_off_and_take_no_arena(name: str) -> None:
    model, shape = model_case(name)
    graph = build_graph(model, shape, pattern_layers=prune(model, shape))
    on, off = generate_network(graph, host_target()), generate_network(
        graph, host_target(), handoff=False)
    producers = [o for o in on.op_info if o["impl"].get("output_to")]
    consumers = [o for o in on.op_info if o["impl"].get("padded_input")]
    assert len(producers) == len(consumers) == EDGES[name]
    assert not any(o["impl"].get("output_to") or o["impl"].get("padded_input")
                   for o in off.op_info)
    model_c = on.files["model.c"]
    # a consumer runs on its padded buffer with no input to copy; the producer's output
    # pointer is that buffer
    assert model_c.count("_run_in((") == model_c.count("_run_in((") and \
        len(re.findall(r"_run_in\(\(\w+\*\)m->layer\[\d+\], 0, ", model_c)) == EDGES[name]
    assert not re.findall(r"_run_in\(\(\w+\*\)m->layer\[\d+\], 0, ", off.files["model.c"])
    # every producer's reader is the consumer right after it
    index = {o["name"]: i for i, o in enumerate(on.op_info)}
    for p in producers:
        nxt = on.op_info[index[p["name"]] + 1]
        assert nxt["impl"].get("padded_input") and nxt["impl"]["symbol_prefix"] == \
            p["impl"]["output_to"]
    sizes = {b.name: b.floats for b in on.arena.buffers}
    for p in producers:
        assert sizes[p["output"]] == 0, p["name"]  # it lives in the consumer's input
        assert sizes["input:" + on.op_info[index[p["name"]] + 1]["name"]] > 0


def test_no_handoff_into_a_strided_or_shifted_reader() -> None:
    model, shape = model_case("vgg16_narrow")
    patterns = prune(model, shape)
    target = host_target()
    shifted = {n: (layer, config_space(layer.spec, target).default().replace(
        shifted=True, tap_shuffle=False, shift_sums=False)) for n, (layer, _) in patterns.items()}
    src = generate_network(build_graph(model, shape, pattern_layers=shifted), target)
    assert not any(o["impl"].get("output_to") for o in src.op_info)


@pytest.mark.parametrize("kind", ["host", "aarch64"])
def test_handoff_is_bitwise_equal_to_the_padding_copy(kind: str, tmp_path: Path) -> None:
    target = host_target() if kind == "host" else aarch64_target()
    names = ("resnet18@32", "vgg16_narrow") if kind == "host" else ("resnet18@32",)
    for name in names:
        model, shape = model_case(name)
        patterns = prune(model, shape)
        x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
        outs = {}
        for handoff in (True, False):
            b = build(model, shape, patterns, target, tmp_path / f"{name}-{handoff}",
                      tmp_path / "cache", handoff=handoff)
            for threads in (1, 2):
                outs[(handoff, threads)] = run_build(b, x, threads=threads)
        ref = torch_out(model, x)
        assert rel_err(outs[(True, 1)], ref) <= 1e-4, name
        for threads in (1, 2):
            assert np.array_equal(outs[(True, threads)], outs[(False, threads)]), (name, threads)
