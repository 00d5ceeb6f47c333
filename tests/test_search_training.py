"""Real Fashion-MNIST, training, ADMM and the cheap estimate on small subsets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces.admm import ADMMConfig, ADMMPruner, admm_prune
from search_spaces.data import DatasetError, load_raw
from search_spaces.estimate import EstimateConfig, estimate_accuracy
from search_spaces.example import EXAMPLE_INPUT_SHAPE, ExampleRecipe, new_example, trained_example
from search_spaces.pruning import PruneConfig, plan_pruning
from search_spaces.selection import select_pattern_set
from search_spaces.training import TrainConfig, configure_threads, evaluate, train
from tests.search_support import split

configure_threads(1)


def test_real_fashion_mnist_shapes_and_balance() -> None:
    images, labels = load_raw("test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    tr = split("train")
    assert tuple(tr.images.shape) == (60000, 1, 28, 28)
    assert abs(float(tr.images.mean())) < 0.01 and abs(float(tr.images.std()) - 1) < 0.01


def test_missing_files_name_the_apt_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetError, match=r"apt-get install dataset-fashion-mnist"):
        load_raw("train", root=tmp_path)
    monkeypatch.setenv("PATTUNE_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=rf"t10k-images-idx3-ubyte.gz not found in {tmp_path}"):
        load_raw("test")
    with pytest.raises(ValueError, match="split must be one of train, test"):
        load_raw("val", root=tmp_path)


def test_corrupt_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 64))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="is not an idx file"):
        load_raw("test", root=tmp_path)


def _trained(samples: int = 3000, epochs: float = 1.0):  # type: ignore[no-untyped-def]
    model = new_example(seed=0)
    train(
        model,
        split("train").subset(samples, seed=1),
        TrainConfig(epochs=epochs, lr=0.05, batch_size=64),
    )
    return model


def test_short_training_beats_chance_by_far() -> None:
    model = _trained()
    acc = evaluate(model, split("test").subset(2000, seed=2))
    assert acc > 0.6  # chance is 0.1


def test_training_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = _trained(samples=300, epochs=0.5)
    b = _trained(samples=300, epochs=0.5)
    assert torch.equal(state, torch.random.get_rng_state())
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_admm_updates_reduce_the_constraint_residual() -> None:
    model = _trained(samples=1500)
    ps = select_pattern_set(model, EXAMPLE_INPUT_SHAPE, 8)
    config = ADMMConfig(
        admm=TrainConfig(epochs=2, lr=0.01, batch_size=64, schedule="constant"),
        rho=0.01, rho_growth=1.5, rho_max=1.0, update_every=4,
    )  # fmt: skip
    admm = ADMMPruner(model, EXAMPLE_INPUT_SHAPE, ps, PruneConfig(), config)
    before = admm.residual()
    data = split("train").subset(1500, seed=3)
    train(model, data, config.admm, loss_hook=admm.penalty, step_hook=admm.step)
    h = admm.history
    assert len(h) == 1 + (2 * 24) // 4  # one entry per update, plus the start
    assert h[0] == before
    assert h[-1] < 0.75 * min(h[:3])
    assert admm.rho == pytest.approx(min(1.0, 0.01 * 1.5 ** (len(h) - 1)))
    # Z and Y lie in their constraint sets: Z has only pattern taps, Y only the kept kernels.
    for layer in admm.layers:
        assert torch.equal(layer.proj_pattern(layer.z), layer.z)
        assert torch.equal(layer.proj_connectivity(layer.y), layer.y)


def test_admm_prune_keeps_masked_zeros_after_retraining() -> None:
    model = _trained(samples=1500)
    ps = select_pattern_set(model, EXAMPLE_INPUT_SHAPE, 8)
    config = ADMMConfig(
        admm=TrainConfig(epochs=1, lr=0.01, batch_size=64, schedule="constant"),
        retrain=TrainConfig(epochs=1, lr=0.01, batch_size=64),
        update_every=5,
    )
    result = admm_prune(
        model, EXAMPLE_INPUT_SHAPE, ps, split("train").subset(1500, seed=4), config=config
    )
    mods = dict(model.named_modules())
    for name, mask in result.plan.masks().items():
        w = mods[name].weight.detach().numpy()
        assert not w[mask == 0].any(), name
        assert np.count_nonzero(w) > 0.9 * mask.sum()
    assert evaluate(model, split("test").subset(1000, seed=5)) > 0.5
    assert result.residuals[-1] < result.residuals[0]


def test_estimate_fine_tunes_a_copy() -> None:
    model = _trained()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ps = select_pattern_set(model, EXAMPLE_INPUT_SHAPE, 8)
    est, pruned, plan = estimate_accuracy(
        model, EXAMPLE_INPUT_SHAPE, ps, split("train"), split("test").subset(1000, seed=6),
        config=EstimateConfig(samples=1500, bn_batches=4),
    )  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert est.estimate_acc > 0.5 and est.samples == 1500
    mods = dict(pruned.named_modules())
    for name, mask in plan.masks().items():
        assert not mods[name].weight.detach().numpy()[mask == 0].any()


def test_oneshot_plan_on_the_trained_example_prunes_3_6x() -> None:
    model = _trained(samples=500, epochs=0.5)
    plan = plan_pruning(
        model, EXAMPLE_INPUT_SHAPE, select_pattern_set(model, EXAMPLE_INPUT_SHAPE, 8)
    )
    inner = [p for p in plan.layers if p.spec.name != "features.0"]
    for p in inner:
        assert p.alive.sum() == round(p.alive.size / 3.6)


def test_example_cache(tmp_path: Path) -> None:
    recipe = ExampleRecipe(epochs=0.5, train_samples=300)
    data = {"train_split": split("train"), "test_split": split("test").subset(500)}
    first = trained_example(recipe, cache=tmp_path, **data)
    assert not first.cached and first.path.is_file() and first.path.parent == tmp_path / "example"
    second = trained_example(recipe, cache=tmp_path, **data)
    assert second.cached and second.test_acc == first.test_acc
    for x, y in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y)
    other = ExampleRecipe(epochs=0.5, train_samples=301)
    assert other.key() != recipe.key()
    first.path.write_bytes(b"garbage")  # an unreadable cache file is retrained, not fatal
    third = trained_example(recipe, cache=tmp_path, **data)
    assert not third.cached
    with pytest.raises(ValueError, match="training epochs must be > 0"):
        ExampleRecipe(epochs=0)
