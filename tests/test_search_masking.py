"""Masks in torch: forward equals conv2d with masked weights; files round-trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from search_spaces import PatternSet, PrunedLayer, all_patterns
from search_spaces.artifacts import load_pattern_set, load_pruned_layers, read_manifest, save_pruned
from search_spaces.masking import attach_masks, pruned_state_dict
from search_spaces.models import get_model
from search_spaces.pruning import PruneConfig, plan_pruning
from tests.search.factories import tiny

PS = PatternSet(all_patterns()[10:18])


def reference_forward(
    model: nn.Sequential, masks: dict[str, np.ndarray], x: torch.Tensor
) -> torch.Tensor:
    """Run ``tiny()``'s layers by hand with F.conv2d on explicitly masked weights."""
    for name, m in model.named_children():
        if isinstance(m, nn.Conv2d):
            w = m.weight * torch.from_numpy(masks[name]) if name in masks else m.weight
            x = F.conv2d(x, w, m.bias, stride=m.stride, padding=m.padding, groups=m.groups)
        else:
            x = m(x)
    return x


def test_masked_output_equals_conv2d_with_masked_weights() -> None:
    model = tiny()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    plan = plan_pruning(model, (1, 3, 9, 9), PS, PruneConfig(connectivity=0.5))
    attach_masks(model, plan.masks())
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    ref = tiny()
    ref.load_state_dict(original)
    with torch.no_grad():
        expected = reference_forward(ref, plan.masks(), x)
        got = model(x)
        dense = ref(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.allclose(got, dense)  # the masks really changed the output


def test_pruned_weights_stay_zero_through_sgd_with_weight_decay() -> None:
    model = tiny()
    plan = plan_pruning(model, (1, 3, 9, 9), PS, PruneConfig(connectivity=0.5))
    handle = attach_masks(model, plan.masks())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(4, 3, 9, 9, generator=g)).pow(2).mean().backward()
        for name, m in dict(model.named_modules()).items():
            if name in plan.masks():
                grad = m.weight.grad.numpy()
                assert not grad[plan.masks()[name] == 0].any()  # gradients are masked
        opt.step()
    mods = dict(model.named_modules())
    for name, mask in plan.masks().items():
        w = mods[name].weight.detach().numpy()
        assert not w[mask == 0].any()
        assert w[mask == 1].all()  # the kept weights trained and are not zero
    handle.remove()
    with torch.no_grad():
        mods["2"].weight.add_(1.0)
    model(torch.zeros(1, 3, 9, 9))
    assert (mods["2"].weight != 0).all()  # hooks really detached


def test_a_deepcopy_of_a_masked_model_masks_its_own_weights() -> None:
    model = tiny()
    plan = plan_pruning(model, (1, 3, 9, 9), PS)
    attach_masks(model, plan.masks())
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)  # revive every weight of the copy only
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 9, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        clone(x)
    mods = dict(clone.named_modules())
    for name, mask in plan.masks().items():
        w = mods[name].weight.detach().numpy()
        assert not w[mask == 0].any()
        assert (w[mask == 1] != 0).any()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "2.weight_mask" not in clone.state_dict()


def test_torchscript_model_masks_in_place() -> None:
    model = torch.jit.script(get_model("resnet18", "cifar"))
    plan = plan_pruning(model, (1, 3, 32, 32), PS)
    handle = attach_masks(model, plan.masks())
    mods = dict(model.named_modules())
    w = mods["layer1.0.conv1"].weight.detach().numpy()
    assert not w[plan.masks()["layer1.0.conv1"] == 0].any()
    assert sorted(handle.names) == sorted(plan.masks())


def test_mask_errors() -> None:
    model = tiny()
    with pytest.raises(ValueError, match=r"masks name layers the model lacks: \['zz'\]"):
        attach_masks(model, {"zz": np.ones((1,))})
    with pytest.raises(ValueError, match="mask of '0' has shape"):
        attach_masks(model, {"0": np.ones((3, 3))})


def test_state_dict_has_the_usual_keys_and_pruned_weights(tmp_path: Path) -> None:
    model = get_model("vgg16", "cifar")
    keys = list(model.state_dict())
    plan = plan_pruning(model, (1, 3, 32, 32), PS)
    attach_masks(model, plan.masks())
    sd = pruned_state_dict(model)
    assert list(sd) == keys
    fresh = get_model("vgg16", "cifar", seed=9)
    fresh.load_state_dict(sd)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


def test_artifacts_round_trip(tmp_path: Path) -> None:
    model = tiny()
    plan = plan_pruning(model, (1, 3, 9, 9), PS, PruneConfig(connectivity="2x"))
    attach_masks(model, plan.masks())
    report = save_pruned(tmp_path, model, plan, input_shape=(1, 3, 9, 9), model_name="tiny")
    manifest = read_manifest(tmp_path)
    assert manifest["input_shape"] == [1, 3, 9, 9]
    assert [e["name"] for e in manifest["layers"]] == ["0", "2", "3", "5"]
    assert load_pattern_set(tmp_path) == PS
    expected = plan.pruned_layers(model)
    for fmt in ("npz", "json"):
        got = load_pruned_layers(tmp_path, fmt=fmt)
        assert got == expected
        assert [g.weights_hash for g in got] == [e["weights_hash"] for e in manifest["layers"]]
    sd = torch.load(tmp_path / "state_dict.pt", weights_only=True)
    np.testing.assert_array_equal(sd["2.weight"].numpy(), expected[1].weights)
    with np.load(tmp_path / "masks.npz") as z:
        assert set(z.files) == set(plan.masks())
    assert json.loads((tmp_path / "report.json").read_text())["totals"] == report.totals()
    one = PrunedLayer.from_json((tmp_path / manifest["layers"][0]["json"]).read_text())
    assert one.pattern_set == PS and one.spec.cin == 3


def test_tampered_layer_file_is_refused(tmp_path: Path) -> None:
    model = tiny()
    plan = plan_pruning(model, (1, 3, 9, 9), PS)
    save_pruned(tmp_path, model, plan, input_shape=(1, 3, 9, 9))
    manifest = read_manifest(tmp_path)
    manifest["layers"][1]["weights_hash"] = "0" * 16
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="contents do not match the manifest's hash"):
        load_pruned_layers(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="schema None is not"):
        read_manifest(tmp_path)
