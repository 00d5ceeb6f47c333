"""Lowering a torch model to the runtime's ops: fusion, records, refusals (no compiler needed)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from codegen import host_target
from codegen.network import (
    Conv2d,
    NetworkError,
    UnsupportedOpError,
    build_graph,
    build_network,
    op_from_dict,
)
from pattune_common import PattuneError
from tests.network_support import model_case, prune


class _Act(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class _Net(nn.Module):
    def __init__(self, extra: nn.Module) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _sigmoid_block() -> nn.Module:
    block = nn.Sequential()
    block.add_module("act", _Act())
    return block


def test_an_unsupported_function_is_refused_in_one_line_naming_op_and_module(tmp_path) -> None:
    model = _Net(_sigmoid_block()).eval()
    with pytest.raises(UnsupportedOpError) as exc:
        build_graph(model, (1, 3, 8, 8))
    msg = str(exc.value)
    assert msg.startswith("network: cannot run 'torch.sigmoid' (module features.3.act); ")
    assert "\n" not in msg and isinstance(exc.value, PattuneError)
    with pytest.raises(UnsupportedOpError, match="torch.sigmoid"):  # refused at build too
        build_network(model, (1, 3, 8, 8), None, host_target(), tmp_path / "net")
    assert not (tmp_path / "net").exists()


@pytest.mark.parametrize("extra, words", [
    (nn.GELU(), "'torch.nn.GELU' (module features.3)"),
    (nn.BatchNorm2d(4), "'torch.nn.BatchNorm2d' (module features.3); only a BatchNorm right "
                        "after a conv"),
    (nn.MaxPool2d(2, ceil_mode=True), "ceil_mode=True"),
    (nn.Conv2d(4, 4, 3, dilation=2), "dilation"),
    (nn.Conv2d(4, 4, (1, 3), stride=(1, 2)), "stride (1, 2) is not square"),
])
def test_unsupported_modules_and_settings_are_refused(extra: nn.Module, words: str) -> None:
    with pytest.raises(UnsupportedOpError, match=words.replace("(", r"\(").replace(")", r"\)")):
        build_graph(_Net(extra).eval(), (1, 3, 9, 9))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bad_calls_are_refused() -> None:
    model, shape = model_case("example")
    with pytest.raises(ValueError, match=r"input_shape must be \(1, C, H, W\)"):
        build_graph(model, (2, 1, 28, 28))
    with pytest.raises(NetworkError, match=r"rejects an input of shape \(1, 3, 28, 28\)"):
        build_graph(model, (1, 3, 28, 28))
    with pytest.raises(NetworkError, match="training mode; call model.eval"):
        build_graph(model.train(), shape)
    model.eval()
    with pytest.raises(NetworkError, match="TorchScript"):
        build_graph(torch.jit.script(model), shape)


def test_batchnorm_and_activations_fuse_into_their_producers() -> None:
    model, shape = model_case("mobilenet_v2@64")
    graph = build_graph(model, shape)
    convs = [op for op in graph.ops if isinstance(op, Conv2d)]
    assert len(convs) == 52
    assert all(isinstance(model.get_submodule(op.fused[0]), nn.BatchNorm2d) for op in convs)
    assert sum(op.act == "relu6" for op in convs) == 35
    assert [op.kind for op in graph.ops[-3:]] == ["adaptive_avg_pool2d", "flatten", "linear"]
    assert sum(op.kind == "add" for op in graph.ops) == 10
    assert graph.output_shape == (1, 1000)


def test_ops_have_a_stable_json_form_and_the_graph_a_fingerprint() -> None:
    model, shape = model_case("resnet18@32")
    g1, g2 = build_graph(model, shape), build_graph(model, shape, seed=5)
    for op in g1.ops:
        assert op_from_dict(op.to_dict()) == op
    assert g1.fingerprint() == g2.fingerprint()
    assert build_graph(model, (1, 3, 40, 40)).fingerprint() != g1.fingerprint()
    patterns = prune(model, shape)  # the kernels' code depends on their layers' patterns
    assert build_graph(model, shape, pattern_layers=patterns).fingerprint() != g1.fingerprint()
    with pytest.raises(ValueError, match="unknown op kind 'softmax'"):
        op_from_dict({"kind": "softmax"})


def test_identity_pool_and_flat_reshape_disappear() -> None:
    model, shape = model_case("vgg16@224")  # 7x7 adaptive pool on a 7x7 map: the identity
    graph = build_graph(model, (1, 3, 224, 224))
    assert not any(op.kind == "adaptive_avg_pool2d" for op in graph.ops)
    assert [op.kind for op in graph.ops[-4:]] == ["flatten", "linear", "linear", "linear"]
    assert [op.act for op in graph.ops[-3:]] == ["relu", "relu", "none"]  # type: ignore[attr-defined]


def test_pattern_layers_must_match_the_model() -> None:
    model, shape = model_case("vgg16_narrow")
    patterns = prune(model, shape)
    name = "features.3"
    layer, cfg = patterns[name]
    wrong = {**patterns, name: (replace(layer, relu=False), cfg)}
    with pytest.raises(NetworkError, match="has relu=False, maxpool=True but the model's "
                                           "epilogue"):
        build_graph(model, shape, pattern_layers=wrong)
    w = np.array(layer.weights)
    w[w != 0] *= 1.5
    wrong = {**patterns, name: (replace(layer, weights=w), cfg)}
    with pytest.raises(NetworkError, match="does not hold the model's .*pruned_layers"):
        build_graph(model, shape, pattern_layers=wrong)
    with pytest.raises(NetworkError, match="pattern layers name convs the model does not run: "
                                           "nope"):
        build_graph(model, shape, pattern_layers={**patterns, "nope": (layer, cfg)})
