"""Whole-model latency accounting: what the tuner times in torch is what the kernels leave out.

The generated kernels compute conv + folded BatchNorm + ReLU; the untouched-layer
timing runs the model with those stubbed out together, so nothing is counted twice
(a fused BatchNorm timed again in torch) and nothing is lost (an unfused one not timed).
"""

from __future__ import annotations

import torch
from torch import nn

from autotune.tuner import _rest_time_ms, stub_generated
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
        "5": "_Stub", "6": "Identity",  # conv + BatchNorm
        "7": "AdaptiveAvgPool2d", "8": "Flatten", "9": "Linear",
    }
    with torch.no_grad():
        assert torch.equal(stubbed(x), model(x))  # nothing lost
    assert _rest_time_ms(model, (1, 1, 12, 12), skip={"0", "3", "5"},
                         epilogues=find_epilogues(model), repeats=3) > 0


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
