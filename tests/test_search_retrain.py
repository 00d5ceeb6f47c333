"""Retraining a chosen configuration: ADMM, hard pruning, masked retraining, resumable per epoch."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces.data import Split
from search_spaces.patterns import PatternSet, all_patterns
from search_spaces.pruning import PruneConfig, plan_pruning
from search_spaces.retrain import EpochRecord, RetrainConfig, retrain
from search_spaces.workload import split_workload
from tests.tune.tiny import tiny_bn

SHAPE = (1, 1, 12, 12)
PATTERNS = PatternSet(all_patterns()[:4])
PRUNE = PruneConfig(connectivity=0.0, layer_rates={"3": "2x", "5": "2x"})


def teacher_data(n: int, seed: int) -> Split:
    """Inputs labelled by the dense model itself, so the dense accuracy is 1.0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *SHAPE[1:]), generator=g)
    with torch.no_grad():
        y = tiny_bn().eval()(x).argmax(1)
    return Split(x, y)


TRAIN, HELD = teacher_data(512, 0), teacher_data(256, 1)
CFG = RetrainConfig(method="admm", admm_epochs=2, retrain_epochs=2, lr=0.01, update_every=4)


def run(tmp: Path | None, cfg: RetrainConfig = CFG, progress=None):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = tiny_bn()
    wl = split_workload(TRAIN, HELD, batch_size=64, seed=3)
    ck = None if tmp is None else tmp / "retrain.pt"
    return retrain(model, SHAPE, PATTERNS, PRUNE, wl, cfg, checkpoint=ck, progress=progress)


def test_admm_retraining_ends_pruned_to_the_patterns_and_rates(tmp_path: Path) -> None:
    seen: list[tuple[EpochRecord, int]] = []
    res = run(tmp_path, progress=lambda r, total: seen.append((r, total)))
    assert [(r.phase, r.epoch) for r, _ in seen] == [
        ("admm", 0), ("admm", 1), ("retrain", 0), ("retrain", 1)]
    assert all(total == 4 for _, total in seen)
    assert all(np.isfinite(r.loss) and 0 <= r.accuracy <= 1 for r, _ in seen)
    assert res.accuracy == seen[-1][0].accuracy and res.resumed_at is None
    # Every pattern layer's weights lie on the plan: 4 taps per kernel, half the kernels.
    modules = dict(res.model.named_modules())
    for p in res.plan.layers:
        if p.pattern_ids is None:
            continue
        w = modules[p.spec.name].weight.detach().numpy()
        assert np.all(w[p.mask == 0] == 0)
        if p.spec.name in ("3", "5"):
            assert p.alive.mean() == pytest.approx(0.5, abs=0.07)


def test_a_killed_retraining_resumes_at_its_next_epoch_with_the_same_result(
        tmp_path: Path) -> None:
    whole = run(None)

    def die_after_third(rec: EpochRecord, total: int) -> None:
        if (rec.phase, rec.epoch) == ("retrain", 0):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, progress=die_after_third)
    again = run(tmp_path)
    assert again.resumed_at == ("retrain", 1)
    assert [(r.phase, r.epoch) for r in again.history] == [
        ("admm", 0), ("admm", 1), ("retrain", 0), ("retrain", 1)]
    for (name, a), (_, b) in zip(whole.model.state_dict().items(),
                                 again.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert again.accuracy == pytest.approx(whole.accuracy)
    # A finished checkpoint returns at once: nothing left to train.
    done = run(tmp_path, progress=lambda r, t: pytest.fail("trained again"))
    assert done.resumed_at == ("retrain", 2)


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path: Path) -> None:
    run(tmp_path, cfg=RetrainConfig(method="finetune", retrain_epochs=1))
    res = run(tmp_path, cfg=RetrainConfig(method="finetune", retrain_epochs=2))
    assert res.resumed_at is None and len(res.history) == 2


def test_finetune_keeps_the_given_plan_and_none_only_masks(tmp_path: Path) -> None:
    model = tiny_bn()
    plan = plan_pruning(model, SHAPE, PATTERNS, PRUNE)
    wl = split_workload(TRAIN, HELD, batch_size=64)
    res = retrain(copy.deepcopy(model), SHAPE, PATTERNS, PRUNE, wl,
                  RetrainConfig(method="finetune", retrain_epochs=1), plan=plan)
    assert res.plan is plan and len(res.history) == 1
    res = retrain(copy.deepcopy(model), SHAPE, PATTERNS, PRUNE, wl,
                  RetrainConfig(method="none"), plan=plan)
    assert res.history == [] and 0 <= res.accuracy <= 1
    w = dict(res.model.named_modules())["3"].weight.detach().numpy()
    assert np.all(w[plan.layer("3").mask == 0] == 0)


def test_bad_retrain_settings_name_the_rule() -> None:
    with pytest.raises(ValueError, match="retrain must be one of admm, finetune, none; got 'sgd'"):
        RetrainConfig(method="sgd")
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        RetrainConfig(admm_epochs=-1)
