"""Whole-model latency accounting: what the tuner times in torch is what the kernels leave out.

The generated kernels compute conv + folded BatchNorm + ReLU; the untouched-layer
timing runs the model with those stubbed out together, so nothing is counted twice
(a fused BatchNorm timed again in torch) and nothing is lost (an unfused one not timed).
"""

from __future__ import annotations

import torch
from torch import nn

from autotune.untouched import frozen_leftover, rest_time_ms, stub_generated
from search_spaces.fusion import find_epilogues
from search_spaces.models.resnet import BasicBlock
from tests.tune.tiny import tiny, tiny_bn


def _kinds(model: nn.Module) -> dict[str, str]:
    return {n: type(m).__name__ for n, m in model.named_modules() if n and "." not in n}


def test_stubbed_model_times_only_the_layers_the_kernels_leave_out() -> None:
    model = tiny_bn()
    x = torch.randn(1, 1, 12, 12)
    stubbed = stub_generated(model, x, skip={"0", "3", "5"}, epilogues=find_epilogues(model))
    assert _kinds(stubbed) == {
        "0": "_Stub", "1": "Identity", "2": "Identity",  # conv + BatchNorm + ReLU
        "3": "_Stub", "4": "Identity",  # conv + ReLU
        "5": "_Stub", "6": "Identity", "7": "Identity",  # conv + BatchNorm + max-pool
        "8": "AdaptiveAvgPool2d", "9": "Flatten", "10": "Linear",
    }
    with torch.no_grad():
        assert torch.equal(stubbed(x), model(x))  # nothing lost
    t = rest_time_ms(model, (1, 1, 12, 12), skip={"0", "3", "5"},
                     epilogues=find_epilogues(model), repeats=3)
    assert t.method == "torchscript" and t.ms > 0


def test_only_what_follows_a_conv_is_stubbed() -> None:
    # The tests' tiny model: conv + ReLU, no BatchNorm; the last ReLU's conv is not skipped.
    model = tiny()
    x = torch.randn(1, 1, 12, 12)
    stubbed = stub_generated(model, x, skip={"0", "2"}, epilogues=find_epilogues(model))
    kinds = _kinds(stubbed)
    assert [kinds[n] for n in ("0", "1", "2", "3", "4", "5")] == [
        "_Stub", "Identity", "_Stub", "Identity", "Conv2d", "ReLU"]
    with torch.no_grad():
        assert torch.equal(stubbed(x), model(x))
    # A ReLU module shared by two call sites stays in torch; the BatchNorms fold.
    block = BasicBlock(8, 8).eval()
    x = torch.randn(1, 8, 6, 6)
    stubbed = stub_generated(block, x, skip={"conv1", "conv2"}, epilogues=find_epilogues(block))
    assert _kinds(stubbed) == {"conv1": "_Stub", "bn1": "Identity", "conv2": "_Stub",
                               "bn2": "Identity", "relu": "ReLU"}
    with torch.no_grad():
        assert torch.equal(stubbed(x), block(x))


def _aten_ops(frozen: torch.jit.ScriptModule) -> list[str]:
    return [n.kind() for n in frozen.graph.nodes() if n.kind().startswith("aten::")]


def test_leftover_graph_times_no_stand_ins_and_keeps_what_feeds_a_kernel() -> None:
    # A max-pool between two generated convs is work the deployed model does: kept.
    # The convs, their fused BatchNorm/ReLU, stubs and Identity modules are gone.
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2),
    ).eval()
    x = torch.randn(1, 1, 12, 12)
    frozen, args = frozen_leftover(model, x, skip={"0", "4"}, epilogues=find_epilogues(model))
    assert _aten_ops(frozen) == ["aten::max_pool2d", "aten::flatten", "aten::linear"]
    with torch.no_grad():
        assert torch.equal(frozen(*args)[0], model(x))


def test_untouched_time_counts_nothing_when_the_kernels_do_everything() -> None:
    # Every module is a generated conv or fused into one: the deployed model runs
    # nothing else, so the leftover graph that is timed has no op at all (no stub, no
    # Identity: nothing the eager stubbed model would pay a Python call for).
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
    ).eval()
    eps = find_epilogues(model)
    skip = {"0", "3", "6"}
    frozen, _ = frozen_leftover(model, torch.zeros(1, 1, 8, 8), skip=skip, epilogues=eps)
    assert _aten_ops(frozen) == []
    scripted = rest_time_ms(model, (1, 1, 8, 8), skip=skip, epilogues=eps, threads=1)
    assert (scripted.method, scripted.threads) == ("torchscript", 1)


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if float(y.sum()) > -1e30 else -y  # data-dependent: torch.fx cannot trace


def test_untraceable_model_falls_back_to_the_eager_stubbed_model() -> None:
    t = rest_time_ms(_Untraceable().eval(), (1, 1, 6, 6), skip={"conv"}, threads=1, repeats=3)
    assert t.method == "eager" and t.ms > 0
