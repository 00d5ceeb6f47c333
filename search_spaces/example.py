"""The bundled example: FashionNet trained on Fashion-MNIST once, then cached.

The cache directory is ``$PATTUNE_CACHE`` or ``~/.cache/pattune``; the file name
carries a hash of the training recipe and architecture, so changing either
trains afresh instead of loading a stale network.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pattune_common import stable_hash
from search_spaces.data import Split, load_split
from search_spaces.models.example import EXAMPLE_CFG, FashionNet
from search_spaces.training import TrainConfig, evaluate, train

log = logging.getLogger(__name__)

EXAMPLE_INPUT_SHAPE = (1, 1, 28, 28)


@dataclass(frozen=True, kw_only=True)
class ExampleRecipe:
    """How the dense example is trained.

    Attributes:
        epochs: Passes over the training examples.
        train_samples: Use a seeded subset of this many training examples (None: all 60000).
        lr: Peak learning rate (cosine schedule).
        seed: Seed of the weight init, the subset and the shuffling.
    """

    epochs: float = 4.0
    train_samples: int | None = None
    lr: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.epochs > 0:
            raise ValueError(f"training epochs must be > 0; got {self.epochs}")
        if self.train_samples is not None and self.train_samples < 1:
            raise ValueError(f"training samples must be >= 1; got {self.train_samples}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0; got {self.lr}")

    def key(self) -> str:
        """Hash of the recipe and the architecture, part of the cache file name."""
        return stable_hash(
            {"recipe": asdict(self), "cfg": [str(v) for v in EXAMPLE_CFG]}, length=12
        )


@dataclass(frozen=True)
class TrainedExample:
    """A trained dense example and where it came from.

    Attributes:
        model: The network (eval mode).
        test_acc: Accuracy on the test split given (the full 10k by default).
        cached: True when loaded from the cache instead of trained now.
        path: The cache file.
        seconds: Training time now (0 when cached).
    """

    model: FashionNet
    test_acc: float
    cached: bool
    path: Path
    seconds: float


def cache_dir(explicit: str | Path | None = None) -> Path:
    """``explicit``, else ``$PATTUNE_CACHE``, else ``~/.cache/pattune``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("PATTUNE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pattune"


def new_example(seed: int = 0) -> FashionNet:
    """An untrained FashionNet with seeded init (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FashionNet()


def trained_example(
    recipe: ExampleRecipe | None = None,
    *,
    cache: str | Path | None = None,
    data_root: str | Path | None = None,
    train_split: Split | None = None,
    test_split: Split | None = None,
) -> TrainedExample:
    """Load the dense example from the cache, or train it on Fashion-MNIST and cache it.

    Args:
        recipe: Training recipe (default :class:`ExampleRecipe`).
        cache: Cache directory (see :func:`cache_dir`).
        data_root: Fashion-MNIST directory (see :func:`search_spaces.data.data_dir`).
        train_split: Already loaded training data (saves reading it again).
        test_split: Already loaded test data.
    """
    recipe = recipe or ExampleRecipe()
    path = cache_dir(cache) / "example" / f"fashionnet-{recipe.key()}.pt"
    model = new_example(recipe.seed)
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(blob["state_dict"])
            acc = float(blob["test_acc"])
            if test_split is not None and int(blob.get("test_samples", -1)) != len(test_split):
                acc = evaluate(model, test_split)  # measured on another test set than asked
            return TrainedExample(model.eval(), acc, True, path, 0.0)
        except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:
            log.warning("ignoring unreadable cached example %s: %s", path, exc)
    tr = train_split if train_split is not None else load_split("train", root=data_root)
    te = test_split if test_split is not None else load_split("test", root=data_root)
    if recipe.train_samples is not None:
        tr = tr.subset(recipe.train_samples, seed=recipe.seed)
    t0 = time.perf_counter()
    train(model, tr, TrainConfig(epochs=recipe.epochs, lr=recipe.lr, seed=recipe.seed))
    seconds = time.perf_counter() - t0
    acc = evaluate(model, te)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    blob = {
        "state_dict": model.state_dict(),
        "test_acc": acc,
        "test_samples": len(te),
        "recipe": asdict(recipe),
    }
    torch.save(blob, tmp)
    os.replace(tmp, path)  # atomic: parallel runs never read a half-written file
    return TrainedExample(model.eval(), acc, False, path, seconds)
