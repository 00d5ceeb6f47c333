"""Each op kind alone, built as a one-op network, equals torch on both targets.

One shared suite over every built-in target (STYLE rule 11): the host runs the shared
library in this process (1 and 2 threads), aarch64 runs ``run_model`` under qemu. Each
target's networks are built in one parallel batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from codegen import Target, aarch64_target, host_target
from codegen.network import NetworkBuild, build_graph
from tests.network_support import build, build_all, prune, randomise, run_and_compare

# One worker builds this module's networks once (scripts/test.sh runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("network-ops")


class _Fn(nn.Module):
    """A module whose forward is one function (to reach functional and method ops)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _Block(nn.Module):
    """conv -> bn -> relu with the ReLU module called twice (ResNet): the pattern kernel
    cannot fuse it, so the network runs it after the kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn(self.conv(x)))
        return self.relu(y + y)


def _seq(*mods: nn.Module) -> nn.Module:
    return nn.Sequential(*mods)


# name -> (model factory, input shape, op kinds the graph must hold)
CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], tuple[str, ...]]] = {
    "conv3x3_relu": (lambda: _seq(nn.Conv2d(5, 7, 3, padding=1), nn.ReLU()), (1, 5, 9, 13),
                     ("conv2d",)),
    "conv7x7s2_bn_relu": (lambda: _seq(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16),
                                       nn.ReLU()), (1, 3, 30, 30), ("conv2d",)),
    "conv3x3s2_relu6": (lambda: _seq(nn.Conv2d(3, 12, 3, 2, 1), nn.ReLU6()), (1, 3, 17, 17),
                        ("conv2d",)),
    "conv5x5_pad0_wide": (lambda: nn.Conv2d(4, 6, 5), (1, 4, 8, 37), ("conv2d",)),
    "grouped3x3": (lambda: nn.Conv2d(8, 12, 3, padding=1, groups=4), (1, 8, 7, 7), ("conv2d",)),
    "depthwise_s1_bn_relu6": (lambda: _seq(nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
                                           nn.BatchNorm2d(16), nn.ReLU6()), (1, 16, 11, 19),
                              ("conv2d",)),
    "depthwise_s2": (lambda: nn.Conv2d(16, 16, 3, 2, 1, groups=16), (1, 16, 12, 12), ("conv2d",)),
    "pointwise_relu": (lambda: _seq(nn.Conv2d(24, 20, 1), nn.ReLU()), (1, 24, 7, 7),
                       ("conv2d",)),
    "pointwise_wide": (lambda: nn.Conv2d(9, 13, 1), (1, 9, 5, 50), ("conv2d",)),
    "pointwise_s2_bn": (lambda: _seq(nn.Conv2d(8, 16, 1, stride=2, bias=False),
                                     nn.BatchNorm2d(16)), (1, 8, 9, 9), ("conv2d",)),
    "maxpool3x3s2p1": (lambda: nn.MaxPool2d(3, 2, 1), (1, 4, 11, 13), ("pool2d",)),
    "maxpool2x2_odd": (lambda: nn.MaxPool2d(2), (1, 3, 9, 37), ("pool2d",)),
    "maxpool3x3s1p1": (lambda: nn.MaxPool2d(3, 1, 1), (1, 2, 6, 20), ("pool2d",)),
    "maxpool3x3s3": (lambda: nn.MaxPool2d(3, 3), (1, 2, 10, 10), ("pool2d",)),
    "avgpool2x2": (lambda: nn.AvgPool2d(2), (1, 3, 9, 9), ("pool2d",)),
    "avgpool3x3s2p1_nopad": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                             (1, 3, 9, 10), ("pool2d",)),
    "global_avg": (lambda: nn.AdaptiveAvgPool2d(1), (1, 6, 7, 9), ("adaptive_avg_pool2d",)),
    "adaptive_up": (lambda: nn.AdaptiveAvgPool2d(7), (1, 3, 3, 5), ("adaptive_avg_pool2d",)),
    "adaptive_down": (lambda: nn.AdaptiveAvgPool2d((3, 4)), (1, 3, 10, 11),
                      ("adaptive_avg_pool2d",)),
    "mean_hw": (lambda: _Fn(lambda x: x.mean([2, 3])), (1, 5, 4, 6), ("adaptive_avg_pool2d",)),
    "add_relu": (lambda: _Fn(lambda x: torch.relu(x + x)), (1, 3, 5, 7), ("add",)),
    "relu6_alone": (lambda: nn.ReLU6(), (1, 3, 5, 7), ("activation",)),
    "flatten_linear_relu": (lambda: _seq(nn.Flatten(), nn.Linear(60, 33), nn.ReLU()),
                            (1, 3, 4, 5), ("flatten", "linear")),
    "view_linear": (lambda: _Fn(lambda x: x.view(x.size(0), -1)), (1, 2, 4, 4), ("flatten",)),
}

# Pattern layers (pruned as the tuner prunes): with their whole epilogue (BN, ReLU,
# 2x2 max-pool) in the kernel, and with a shared ReLU run after the kernel.
PATTERN_CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], tuple[str, ...]]] = {
    "pattern_bn_relu_pool": (lambda: _seq(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8),
                                          nn.ReLU(), nn.MaxPool2d(2)), (1, 4, 9, 11),
                             ("conv2d",)),
    "pattern_shared_relu": (_Block, (1, 4, 7, 9), ("conv2d", "add")),
}


def _model(name: str) -> tuple[nn.Module, tuple[int, ...], tuple[str, ...], dict | None]:
    factory, shape, kinds = {**CASES, **PATTERN_CASES}[name]
    torch.manual_seed(len(name))
    model = randomise(nn.Sequential(factory()).eval())  # fx traces into a bare root module
    patterns = prune(model, shape) if name in PATTERN_CASES else None
    return model, shape, kinds, patterns


@pytest.fixture(scope="module", params=["host", "aarch64"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Target, dict[str, tuple[nn.Module, NetworkBuild]]]:
    target = host_target() if request.param == "host" else aarch64_target()
    root = tmp_path_factory.mktemp(f"ops-{request.param}")
    models = {name: _model(name) for name in {**CASES, **PATTERN_CASES}}

    def job(name: str) -> Callable[[], NetworkBuild]:
        model, shape, _, patterns = models[name]
        return lambda: build(model, shape, patterns, target, root / name, root / "cache")

    builds = build_all({name: job(name) for name in models})
    return target, {name: (models[name][0], b) for name, b in builds.items()}


@pytest.mark.parametrize("name", sorted({**CASES, **PATTERN_CASES}))
def test_op_alone_matches_torch(built: tuple[Target, dict[str, tuple[nn.Module, NetworkBuild]]],
                                name: str) -> None:
    target, builds = built
    model, b = builds[name]
    threads = (1, 2) if target.can_load_library else (1,)
    for t in threads:
        assert run_and_compare(b, model, threads=t) <= 1e-4, (name, t)


@pytest.mark.parametrize("name", sorted({**CASES, **PATTERN_CASES}))
def test_each_case_is_the_op_it_names(name: str) -> None:
    model, shape, kinds, patterns = _model(name)
    graph = build_graph(model, shape, pattern_layers=patterns)
    assert tuple(op.kind for op in graph.ops) == kinds
    if name in PATTERN_CASES:
        assert graph.ops[0].pattern  # type: ignore[attr-defined]


def test_aarch64_runs_threads_under_qemu(built: tuple[Target, dict[str, tuple[nn.Module,
                                                                              NetworkBuild]]],
                                         tmp_path: Path) -> None:
    target, builds = built
    for name in ("conv7x7s2_bn_relu", "pointwise_relu", "maxpool3x3s2p1", "pattern_bn_relu_pool"):
        model, b = builds[name]
        assert run_and_compare(b, model, threads=2) <= 1e-4, (target.name, name)
