"""Models and helpers shared by the network runtime tests (small shapes: qemu is slow)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codegen import KernelConfig, Target
from codegen.network import NetworkBuild, NetworkCompiler, build_network, run_build
from search_spaces.layers import PrunedLayer
from search_spaces.masking import attach_masks
from search_spaces.models import get_model
from search_spaces.models.vgg import VGG, make_features
from search_spaces.patterns import PatternSet, all_patterns
from search_spaces.pruning import PruneConfig, plan_pruning

PATTERNS8 = PatternSet(all_patterns()[:8])
PatternMap = dict[str, tuple[PrunedLayer, KernelConfig | None]]


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and biases, so folding and epilogues change numbers."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)  # type: ignore[union-attr]
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)  # type: ignore[union-attr]
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def prune(model: nn.Module, shape: tuple[int, ...], connectivity: str = "3.6x") -> PatternMap:
    """Pattern-prune ``model`` in place (masks attached) as the tuner does; its pattern layers."""
    plan = plan_pruning(model, shape, PATTERNS8, PruneConfig(connectivity=connectivity))
    attach_masks(model, plan.masks())
    return {layer.spec.name: (layer, None) for layer in plan.pruned_layers(model, fuse=True)}


def vgg16_narrow(*, imagenet_head: bool = False, divide: int = 8) -> nn.Module:
    """VGG-16's 13 convs and 5 pools at 1/``divide`` width; with ``imagenet_head`` the
    ImageNet classifier's structure (7x7 adaptive pool, Linear/ReLU/Dropout x2, Linear)."""
    cfg = tuple(v // divide if isinstance(v, int) else v for v in
                (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                 512, 512, 512, "M"))
    last = 512 // divide
    if imagenet_head:
        head: nn.Module = nn.Sequential(
            nn.Linear(last * 49, 64), nn.ReLU(inplace=True), nn.Dropout(),
            nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(64, 10))
        model = VGG(make_features(cfg, 3, batch_norm=False), head, pool=7)
    else:
        model = VGG(make_features(cfg, 3, batch_norm=True), nn.Linear(last, 10), pool=1)
    return randomise(model.eval())


def model_case(name: str) -> tuple[nn.Module, tuple[int, int, int, int]]:
    """A built-in model (or its reduced form) with random BatchNorm statistics, and its input."""
    torch.manual_seed(0)
    if name == "example":
        return randomise(get_model("example")), (1, 1, 28, 28)
    if name == "vgg16_narrow":
        return vgg16_narrow(), (1, 3, 32, 32)
    if name == "vgg16_narrow_imagenet_head":
        return vgg16_narrow(imagenet_head=True), (1, 3, 32, 32)
    base, _, res = name.partition("@")
    model = randomise(get_model(base))
    hw = int(res or 224)
    return model, (1, 3, hw, hw)


def build_all(jobs: dict[str, Callable[[], NetworkBuild]], workers: int = 2
              ) -> dict[str, NetworkBuild]:
    """Run the build callables two at a time (their compiles are what takes time)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(fn) for name, fn in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def build(model: nn.Module, shape: tuple[int, ...], patterns: PatternMap | None, target: Target,
          out: Path, cache: Path, **kwargs: object) -> NetworkBuild:
    """:func:`build_network` with the products a test on ``target`` needs, compiled serially."""
    products = ("shared",) if target.can_load_library else ("run_model",)
    return build_network(model, shape, patterns, target, out,
                         products=kwargs.pop("products", products),  # type: ignore[arg-type]
                         compiler=NetworkCompiler(workers=1, cache_dir=cache),
                         **kwargs)  # type: ignore[arg-type]


def torch_out(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The torch model's output on ``x``."""
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref|."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    return float(np.max(np.abs(out.astype(np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def run_and_compare(b: NetworkBuild, model: nn.Module, *, seed: int = 1,
                    threads: int = 1) -> float:
    """Relative error of the built network against torch on a seeded input."""
    x = np.random.default_rng(seed).standard_normal(b.input_shape).astype(np.float32)
    return rel_err(run_build(b, x, threads=threads), torch_out(model, x))
