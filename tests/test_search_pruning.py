"""Model-level pruning: which layers get what, exact kernel counts, the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_spaces import PatternSet, all_patterns, kernels_to_keep, parse_connectivity
from search_spaces.models import conv_layers, get_model
from search_spaces.pruning import PruneConfig, plan_pruning
from search_spaces.report import PruneReport, build_report
from search_spaces.selection import NoPatternLayersError
from tests.search.factories import no_3x3, tiny

PS8 = PatternSet(all_patterns()[:8])


@pytest.mark.parametrize("rate", ["3.6x", 0.5, "2x", 0.0, "1x", 0.9])
def test_connectivity_keeps_exactly_the_right_number_per_layer(rate: object) -> None:
    model = get_model("vgg16", "cifar")
    plan = plan_pruning(model, (1, 3, 32, 32), PS8, PruneConfig(connectivity=rate))  # type: ignore[arg-type]
    removed = parse_connectivity(rate)  # type: ignore[arg-type]
    for p in plan.layers:
        s = p.spec
        n = s.cout * s.cin_per_group
        want = n if s.name == "features.0" else kernels_to_keep(n, removed)
        assert int(p.alive.sum()) == want, s.name
        # Every alive kernel keeps exactly its pattern's 4 taps; dead kernels keep nothing.
        per_kernel = p.mask.reshape(n, 9).sum(1)
        assert set(per_kernel[p.alive.ravel()].tolist()) == {4.0}
        assert not per_kernel[~p.alive.ravel()].any()


def test_alive_kernels_are_the_largest_pattern_kept_norms() -> None:
    model = get_model("resnet18", "cifar")
    plan = plan_pruning(model, (1, 3, 32, 32), PS8)
    p = plan.layer("layer2.0.conv2")
    w = dict(model.named_modules())["layer2.0.conv2"].weight.detach().numpy()
    kept = ((w * p.mask) ** 2).sum(axis=(2, 3))
    assert kept[p.alive].min() >= kept[~p.alive].max()


def test_layer_kinds_tiny_model_stride_2_depthwise_and_1x1() -> None:
    model = tiny()
    plan = plan_pruning(model, (1, 3, 9, 9), PS8, PruneConfig(connectivity=0.5))
    kinds = {p.spec.name: (p.kind, int(p.alive.sum()), p.alive.size) for p in plan.layers}
    assert kinds == {
        "0": ("pattern", 12, 12),  # first conv: patterns only
        "2": ("pattern", 16, 32),  # stride 2
        "3": ("depthwise", 8, 8),  # depthwise: patterns, no connectivity by default
        "4": ("dense", 16, 16),  # 1x1 stays dense
        "5": ("pattern", 1, 2),  # tiny: 2 kernels, half removed
    }
    assert plan.layer("2").spec.stride == 2 and plan.layer("2").spec.out_h == 5
    assert np.all(plan.layer("4").mask == 1)
    assert set(plan.masks()) == {"0", "2", "3", "5"}


def test_opt_in_connectivity_for_input_depthwise_and_other_layers() -> None:
    cfg = PruneConfig(
        connectivity=0.5,
        input_layer_connectivity=True,
        depthwise_connectivity=True,
        other_connectivity="4x",
        layer_rates={"5": 0.0},
    )
    plan = plan_pruning(tiny(), (1, 3, 9, 9), PS8, cfg)
    alive = {p.spec.name: int(p.alive.sum()) for p in plan.layers}
    assert alive == {"0": 6, "2": 16, "3": 4, "4": 4, "5": 2}
    assert plan.layer("4").kind == "connectivity"
    w = dict(tiny().named_modules())["4"].weight.detach().numpy()[..., 0, 0] ** 2
    assert w[plan.layer("4").alive].min() >= w[~plan.layer("4").alive].max()


def test_plan_leaves_the_model_untouched_and_is_deterministic() -> None:
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = plan_pruning(model, (1, 3, 9, 9), PS8)
    b = plan_pruning(model, (1, 3, 9, 9), PS8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for x, y in zip(a.layers, b.layers, strict=True):
        assert np.array_equal(x.mask, y.mask)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match=r"fraction removed in \[0, 1\) or a ratio >= 1"):
        PruneConfig(connectivity="-0.2")
    with pytest.raises(ValueError, match="layer 'x': connectivity rate must be"):
        PruneConfig(layer_rates={"x": "0.5x"})
    with pytest.raises(ValueError, match=r"per-layer rates name unknown layers \['nope'\]"):
        plan_pruning(tiny(), (1, 3, 9, 9), PS8, PruneConfig(layer_rates={"nope": 0.5}))
    with pytest.raises(NoPatternLayersError, match="no 3x3 conv layer"):
        plan_pruning(no_3x3(), (1, 3, 9, 9), PS8)


def test_report_counts_macs_and_round_trips() -> None:
    model = get_model("mobilenet_v2", "cifar")
    shape = (1, 3, 32, 32)
    plan = plan_pruning(model, shape, PS8)
    report = build_report(plan)
    specs = [c.spec for c in conv_layers(model, shape)]
    assert report.totals()["dense_macs"] == sum(s.dense_macs for s in specs)
    for row, s, p in zip(report.layers, specs, plan.layers, strict=True):
        assert row.weights_kept == int(p.mask.sum())
        assert row.pruned_macs == row.weights_kept * s.out_h * s.out_w
        if row.kind == "depthwise":
            assert row.weights_kept == 4 * s.cout and row.kernels_kept == s.cout
        if row.kind == "dense":
            assert row.pruned_macs == row.dense_macs
    assert PruneReport.from_dict(report.to_dict()) == report
    t = report.totals(kinds=("pattern",))
    assert report.pattern_compression == pytest.approx(
        (t["weights_total"] + report.totals(kinds=("depthwise",))["weights_total"])
        / (t["weights_kept"] + report.totals(kinds=("depthwise",))["weights_kept"])
    )


def test_pruned_layers_match_the_plan() -> None:
    model = tiny()
    plan = plan_pruning(model, (1, 3, 9, 9), PS8)
    layers = plan.pruned_layers(model)
    assert [pl.spec.name for pl in layers] == ["0", "2", "3", "5"]
    for pl in layers:
        p = plan.layer(pl.spec.name)
        assert np.array_equal(pl.alive, p.alive)
        assert pl.nonzeros == int(p.mask.sum())
        assert np.count_nonzero(pl.weights) <= pl.nonzeros
    assert layers[0].bias is not None and layers[1].bias is None
