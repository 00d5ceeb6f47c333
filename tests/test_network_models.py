"""Every built-in model, pattern-pruned as the tuner prunes it, runs as one network equal to torch.

The host runs the shared library in this process; aarch64 runs ``run_model`` under
qemu, at reduced width or input size (qemu is slow). ResNet-18 and VGG-16 also run at
full ImageNet size on the host.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from codegen import Target, aarch64_target, config_space, host_target
from codegen.network import NetworkBuild, build_graph, generate_network
from tests.network_support import build, build_all, model_case, prune, run_and_compare

# One worker builds this module's networks once (scripts/test.sh runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("network-models")

REDUCED = ("example", "vgg16_narrow", "vgg16_narrow_imagenet_head", "resnet18@32",
           "resnet50@32", "mobilenet_v2@32")
HOST_ONLY = ("resnet18_cifar@32", "mobilenet_v2_cifar@32")
FULL = ("resnet18@224", "vgg16@224")


def _builds(target: Target, names: tuple[str, ...], root: Path
            ) -> dict[str, tuple[nn.Module, NetworkBuild]]:
    cases = {}
    for name in names:
        model, shape = model_case(name)
        cases[name] = (model, shape, prune(model, shape))

    def job(name: str) -> Callable[[], NetworkBuild]:
        model, shape, patterns = cases[name]
        return lambda: build(model, shape, patterns, target, root / name.replace("@", "-"),
                             root / "cache")

    builds = build_all({name: job(name) for name in names})
    return {name: (cases[name][0], b) for name, b in builds.items()}


CASES = [("host", n) for n in REDUCED + HOST_ONLY] + [("aarch64", n) for n in REDUCED]


@pytest.fixture(scope="module")
def reduced(tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[[str], dict[str, tuple[nn.Module, NetworkBuild]]]:
    """Per target, its networks, built once for the module (the host's include its
    CIFAR variants; the aarch64 suite runs the reduced forms under qemu)."""
    built: dict[str, dict[str, tuple[nn.Module, NetworkBuild]]] = {}

    def of(kind: str) -> dict[str, tuple[nn.Module, NetworkBuild]]:
        if kind not in built:
            target = host_target() if kind == "host" else aarch64_target()
            names = REDUCED + (HOST_ONLY if kind == "host" else ())
            built[kind] = _builds(target, names, tmp_path_factory.mktemp(f"models-{kind}"))
        return built[kind]

    return of


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_model_matches_torch(
        reduced: Callable[[str], dict[str, tuple[nn.Module, NetworkBuild]]], kind: str,
        name: str) -> None:
    model, b = reduced(kind)[name]
    assert run_and_compare(b, model) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_model_matches_torch_on_the_host(name: str, tmp_path: Path) -> None:
    [(model, b)] = _builds(host_target(), (name,), tmp_path).values()
    assert run_and_compare(b, model) <= 1e-4
    assert run_and_compare(b, model, threads=2) <= 1e-4


def test_every_pattern_layer_of_a_model_runs_as_a_pattern_op() -> None:
    """Each pruned 3x3 conv becomes one pattern op; the modules its kernel fuses are gone."""
    model, shape = model_case("resnet18@32")
    patterns = prune(model, shape)
    graph = build_graph(model, shape, pattern_layers=patterns)
    ops = {op.module: op for op in graph.ops}
    assert {m for m, op in ops.items() if getattr(op, "pattern", False)} == set(patterns)
    kinds = [op.kind for op in graph.ops]
    # 7x7 stem + 3 downsamples are dense; 16 pattern 3x3 convs; the max-pool; 8 adds; fc.
    assert kinds.count("conv2d") == 20 and kinds.count("add") == 8
    assert kinds.count("pool2d") == 1 and kinds.count("linear") == 1
    bn_folded = [op for op in graph.ops if op.kind == "conv2d" and not op.fused]  # type: ignore[attr-defined]
    assert not bn_folded, "every ResNet conv folds its BatchNorm"


@pytest.mark.parametrize("kind", ["host", "aarch64"])
def test_tuned_configs_are_the_generated_pattern_kernels(kind: str, tmp_path: Path) -> None:
    """Sampled KernelConfigs (threads and formats among them) become the layers' units."""
    target = host_target() if kind == "host" else aarch64_target()
    model, shape = model_case("vgg16_narrow")
    rng = np.random.default_rng(5)
    tuned = {name: (layer, config_space(layer.spec, target).sample(rng, 1)[0])
             for name, (layer, _) in prune(model, shape).items()}
    b = build(model, shape, tuned, target, tmp_path / "o", tmp_path / "cache")
    units = [Path(p).read_text() for p in b.sources if Path(p).name.startswith("pt_l")]
    assert len(units) == len(tuned) and all("pattune codegen: layer" in u for u in units)
    meta = json.loads(Path(b.model_json).read_text())["pattern_layers"]
    assert {m: v["config"] for m, v in meta.items()} == {
        n: cfg.to_dict() for n, (_, cfg) in tuned.items()}
    assert run_and_compare(b, model, threads=2) <= 1e-4


def test_depthwise_pattern_layers_run_the_networks_depthwise_op() -> None:
    """MobileNet's depthwise layers (patterns only) are the depthwise op on masked weights;
    every other pattern layer is its generated kernel."""
    model, shape = model_case("mobilenet_v2@32")
    patterns = prune(model, shape)
    src = generate_network(build_graph(model, shape, pattern_layers=patterns), host_target())
    units = [text for name, text in src.files.items() if name.startswith("pt_l")]
    dw = [n for n, (layer, _) in patterns.items() if layer.spec.is_depthwise]
    assert len(dw) == 17 and len(units) == len(patterns)
    assert sum("depthwise pattern layer" in t for t in units) == len(dw)
    assert sum("pattune codegen: layer" in t for t in units) == len(patterns) - len(dw)


def test_vgg_fused_pools_are_not_run_twice() -> None:
    model, shape = model_case("vgg16_narrow")
    patterns = prune(model, shape)
    graph = build_graph(model, shape, pattern_layers=patterns)
    pooled = [op for op in graph.ops if getattr(op, "maxpool", False)]
    assert len(pooled) == 5 and not any(op.kind == "pool2d" for op in graph.ops)
