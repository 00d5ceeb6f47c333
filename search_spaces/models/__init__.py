"""Built-in architectures, defined here (no torchvision, no downloads), and layer introspection.

``get_model(name, dataset=...)`` builds one of the :data:`MODEL_NAMES` with
random weights (enough for latency work) at the dataset's input size;
:func:`input_shape` gives that size; :func:`conv_layers` lists a model's conv
layers as :class:`ConvInfo` (name, :class:`LayerSpec`, module) with the real
input sizes found by a forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from search_spaces.models._introspect import ConvInfo, conv_layers
from search_spaces.models.example import EXAMPLE_CFG, FashionNet
from search_spaces.models.mobilenet import mobilenet_v2_cifar, mobilenet_v2_imagenet
from search_spaces.models.resnet import (
    resnet18_cifar,
    resnet18_imagenet,
    resnet50_cifar,
    resnet50_imagenet,
)
from search_spaces.models.vgg import vgg16_cifar, vgg16_imagenet

#: Datasets the built-in models come in, with their (N, C, H, W) input shape.
DATASET_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "imagenet": (1, 3, 224, 224),
    "cifar": (1, 3, 32, 32),
    "fashion-mnist": (1, 1, 28, 28),
}

_FACTORIES: dict[tuple[str, str], Callable[[], nn.Module]] = {
    ("vgg16", "imagenet"): vgg16_imagenet,
    ("vgg16", "cifar"): vgg16_cifar,
    ("resnet18", "imagenet"): resnet18_imagenet,
    ("resnet18", "cifar"): resnet18_cifar,
    ("resnet50", "imagenet"): resnet50_imagenet,
    ("resnet50", "cifar"): resnet50_cifar,
    ("mobilenet_v2", "imagenet"): mobilenet_v2_imagenet,
    ("mobilenet_v2", "cifar"): mobilenet_v2_cifar,
    ("example", "fashion-mnist"): FashionNet,
}

#: Built-in model names.
MODEL_NAMES: tuple[str, ...] = ("vgg16", "resnet18", "resnet50", "mobilenet_v2", "example")

#: Each model's datasets; the first is its default.
MODEL_DATASETS: dict[str, tuple[str, ...]] = {
    "vgg16": ("imagenet", "cifar"),
    "resnet18": ("imagenet", "cifar"),
    "resnet50": ("imagenet", "cifar"),
    "mobilenet_v2": ("imagenet", "cifar"),
    "example": ("fashion-mnist",),
}


def _resolve(name: str, dataset: str | None) -> tuple[str, str]:
    """Split ``"resnet18-cifar"`` forms and check both parts."""
    key = name.strip().lower().replace("-", "_")
    for ds in DATASET_SHAPES:
        suffix = "_" + ds.replace("-", "_")
        if key.endswith(suffix) and key[: -len(suffix)] in MODEL_DATASETS:
            if dataset is not None and dataset != ds:
                raise ValueError(f"model {name!r} names dataset {ds!r} but dataset={dataset!r}")
            key, dataset = key[: -len(suffix)], ds
    if key not in MODEL_DATASETS:
        raise ValueError(f"unknown model {name!r}; built-in models are {', '.join(MODEL_NAMES)}")
    allowed = MODEL_DATASETS[key]
    ds = allowed[0] if dataset is None else dataset.strip().lower()
    if ds not in allowed:
        raise ValueError(f"model {key!r} comes for datasets {', '.join(allowed)}; got {dataset!r}")
    return key, ds


def get_model(name: str, dataset: str | None = None, *, seed: int = 0) -> nn.Module:
    """Build a built-in model with seeded random weights, in eval mode.

    Args:
        name: One of :data:`MODEL_NAMES`; ``"resnet18_cifar"`` / ``"resnet18-cifar"``
            also name the dataset.
        dataset: ``"imagenet"`` (224x224, 1000 classes) or ``"cifar"`` (32x32,
            10 classes); ``"fashion-mnist"`` for ``example``. Default: the
            model's first dataset in :data:`MODEL_DATASETS`.
        seed: Seed of the weight initialisation (the global RNG is left alone).

    Raises:
        ValueError: Unknown name or a dataset the model does not come for.
    """
    key, ds = _resolve(name, dataset)
    devices: list[torch.device] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = _FACTORIES[(key, ds)]()
    return model.eval()


def input_shape(name: str, dataset: str | None = None) -> tuple[int, int, int, int]:
    """The (1, C, H, W) input shape of a built-in model for ``dataset``."""
    return DATASET_SHAPES[_resolve(name, dataset)[1]]


def model_variants() -> list[tuple[str, str]]:
    """Every built-in ``(name, dataset)`` pair."""
    return [(n, d) for n in MODEL_NAMES for d in MODEL_DATASETS[n]]


__all__ = [
    "DATASET_SHAPES",
    "EXAMPLE_CFG",
    "MODEL_DATASETS",
    "MODEL_NAMES",
    "ConvInfo",
    "FashionNet",
    "conv_layers",
    "get_model",
    "input_shape",
    "model_variants",
]
