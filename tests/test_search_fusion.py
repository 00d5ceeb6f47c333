"""Conv epilogues: which BatchNorm/ReLU a conv fuses, and the fused layer computes the chain."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codegen import reference_output
from search_spaces.fusion import Epilogue, find_epilogues
from search_spaces.layers import PrunedLayer
from search_spaces.models import get_model
from search_spaces.models.resnet import BasicBlock
from search_spaces.patterns import PatternSet, all_patterns
from search_spaces.pruning import PruneConfig, plan_pruning
from tests.tune.tiny import tiny_bn


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial eval statistics, so that folding changes the numbers."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g))  # type: ignore[union-attr]
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)  # type: ignore[union-attr]
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))
    return model.eval()


def test_epilogues_follow_the_dataflow() -> None:
    eps = find_epilogues(tiny_bn())
    assert eps == {
        "0": Epilogue("0", batchnorm="1", relu="2"),
        "3": Epilogue("3", relu="4"),
        "5": Epilogue("5", batchnorm="6", maxpool="7"),
    }
    # A ReLU module called from two places (ResNet's blocks) stays in torch.
    eps = find_epilogues(BasicBlock(8, 8, 1))
    assert eps["conv1"] == Epilogue("conv1", batchnorm="bn1")
    assert eps["conv2"] == Epilogue("conv2", batchnorm="bn2")
    # A conv whose output goes anywhere besides one BatchNorm/ReLU fuses nothing.
    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = self.conv(x)
            return self.relu(y) + y

    assert find_epilogues(Branch()) == {"conv": Epilogue("conv")}
    # What torch.fx cannot trace fuses nothing.
    assert find_epilogues(torch.jit.script(tiny_bn())) == {}


def _chain_io(model: nn.Module, x: torch.Tensor, eps: dict[str, Epilogue]) -> dict[str, tuple]:
    ins: dict[str, np.ndarray] = {}
    outs: dict[str, np.ndarray] = {}
    hooks = []
    for name, ep in eps.items():
        hooks.append(model.get_submodule(name).register_forward_pre_hook(
            lambda _m, a, n=name: ins.__setitem__(n, a[0].detach().clone().numpy())))
        hooks.append(model.get_submodule(ep.last).register_forward_hook(
            lambda _m, _a, o, n=name: outs.__setitem__(n, o.detach().clone().numpy())))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return {n: (ins[n], outs[n]) for n in eps}


def _masked(model: nn.Module, plan) -> nn.Module:  # type: ignore[no-untyped-def]
    out = copy.deepcopy(model)
    for lp in plan.layers:
        w = out.get_submodule(lp.spec.name).weight
        w.data *= torch.from_numpy(lp.mask)
    return out


def test_fused_layers_compute_conv_bn_relu_of_the_pruned_model() -> None:
    for model, shape in ((tiny_bn(), (1, 1, 12, 12)),
                         (get_model("resnet18", "cifar"), (1, 3, 32, 32))):
        model = _randomise_bn(model)
        plan = plan_pruning(model, shape, PatternSet(all_patterns()[:4]),
                            PruneConfig(connectivity="2x"))
        layers = plan.pruned_layers(model, fuse=True)
        plain = plan.pruned_layers(model)
        eps = find_epilogues(model)
        io = _chain_io(_masked(model, plan), torch.randn(shape), eps)
        for layer, unfused in zip(layers, plain, strict=True):
            ep = eps[layer.spec.name]
            assert layer.relu == (ep.relu is not None)
            # Same mask and patterns; the weights hash tells fused from unfused.
            assert np.array_equal(layer.alive, unfused.alive)
            assert np.array_equal(layer.weights != 0, unfused.weights != 0)
            assert (layer.weights_hash == unfused.weights_hash) == (not ep.fused)
            x, want = io[layer.spec.name]
            got = reference_output(layer, x)
            assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max()), layer.spec.name


def test_relu_is_part_of_the_hash_and_the_json(tmp_path: Path) -> None:
    model = tiny_bn()
    plan = plan_pruning(model, (1, 1, 12, 12), PatternSet(all_patterns()[:4]))
    layer = plan.pruned_layers(model, fuse=True)[1]  # conv "3": ReLU, no BatchNorm
    assert layer.relu
    plain = PrunedLayer(spec=layer.spec, pattern_set=layer.pattern_set,
                        pattern_ids=layer.pattern_ids, alive=layer.alive,
                        weights=layer.weights, bias=layer.bias)
    assert plain.weights_hash != layer.weights_hash
    assert PrunedLayer.from_json(layer.to_json()) == layer
    assert PrunedLayer.from_json(layer.to_json()).relu
    layer.save_npz(tmp_path / "l.npz")
    assert PrunedLayer.load_npz(tmp_path / "l.npz") == layer
    assert PrunedLayer.load_npz(tmp_path / "l.npz").relu


def _pooled(pool: nn.Module, relu: bool = True) -> nn.Sequential:
    """conv + BatchNorm (+ ReLU) + ``pool``, then one more conv, on an odd-sized input."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        mods: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)]
        mods += [nn.ReLU()] if relu else []
        mods += [pool, nn.Conv2d(4, 4, 3, padding=1)]
        return _randomise_bn(nn.Sequential(*mods))  # type: ignore[return-value]


def test_a_2x2_stride_2_max_pool_fuses_and_no_other() -> None:
    from search_spaces.example import new_example

    eps = find_epilogues(new_example())
    assert {n: ep.maxpool for n, ep in eps.items() if ep.maxpool} == {
        "features.3": "features.6", "features.10": "features.13", "features.17": "features.20"}
    assert eps["features.3"].last == "features.6"
    assert eps["features.3"].fused == ("features.4", "features.5", "features.6")
    assert eps["features.0"].maxpool is None
    assert find_epilogues(_pooled(nn.MaxPool2d(2)))["0"].maxpool == "3"
    assert find_epilogues(_pooled(nn.MaxPool2d(2, 2), relu=False))["0"] == Epilogue(
        "0", batchnorm="1", maxpool="2")
    for other in (nn.MaxPool2d(3), nn.MaxPool2d(2, 1), nn.MaxPool2d(2, padding=1),
                  nn.MaxPool2d(2, dilation=2), nn.MaxPool2d(2, ceil_mode=True),
                  nn.AvgPool2d(2), nn.MaxPool2d((2, 3)), nn.MaxPool2d(2, return_indices=True)):
        assert find_epilogues(_pooled(other))["0"].maxpool is None, other

    class Shared(nn.Module):  # one pool module called from two places stays in torch
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.pool(self.pool(self.conv(x)))

    assert find_epilogues(Shared())["conv"] == Epilogue("conv")

    class Tapped(nn.Module):  # the ReLU's output also goes elsewhere: no pool fused
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(2)

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = self.relu(self.conv(x))
            return self.pool(y), y

    assert find_epilogues(Tapped())["conv"] == Epilogue("conv", relu="relu")


def test_fused_pool_layers_compute_the_chain_and_change_the_hash(tmp_path: Path) -> None:
    from search_spaces.example import new_example

    for model, shape in ((_pooled(nn.MaxPool2d(2)), (1, 1, 13, 11)),
                         (_pooled(nn.MaxPool2d(2), relu=False), (1, 1, 9, 15)),
                         (_randomise_bn(new_example()), (1, 1, 28, 28))):
        plan = plan_pruning(model, shape, PatternSet(all_patterns()[:4]),
                            PruneConfig(connectivity="2x"))
        eps = find_epilogues(model)
        io = _chain_io(_masked(model, plan), torch.randn(shape), eps)
        for layer in plan.pruned_layers(model, fuse=True):
            ep = eps[layer.spec.name]
            assert layer.maxpool == (ep.maxpool is not None)
            x, want = io[layer.spec.name]
            assert layer.output_shape == want.shape
            got = reference_output(layer, x)
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max()), layer.spec.name
    layer = plan.pruned_layers(model, fuse=True)[1]  # features.3: BatchNorm, ReLU, max-pool
    assert layer.maxpool and layer.output_shape == (1, 32, 14, 14)
    no_pool = PrunedLayer(spec=layer.spec, pattern_set=layer.pattern_set,
                          pattern_ids=layer.pattern_ids, alive=layer.alive,
                          weights=layer.weights, bias=layer.bias, relu=True)
    assert no_pool.weights_hash != layer.weights_hash
    assert "maxpool" not in no_pool.to_dict()  # only when set: older keys unchanged
    assert PrunedLayer.from_json(layer.to_json()).maxpool
    layer.save_npz(tmp_path / "l.npz")
    assert PrunedLayer.load_npz(tmp_path / "l.npz").maxpool
