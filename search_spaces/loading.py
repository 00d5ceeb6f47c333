"""Turn ``--model``, ``--evaluate`` and ``--input-shape`` values into objects.

``--model`` takes one of:

* a built-in name (:data:`search_spaces.models.MODEL_NAMES`), optionally with the
  dataset (``resnet18-cifar``); ``example`` is the bundled Fashion-MNIST network;
* ``package.module:factory``: a function called with no arguments that returns an
  ``nn.Module`` with its weights (the current directory is importable);
* the path of a TorchScript file (``torch.jit.save``).

``--evaluate package.module:function`` names a function ``model -> float`` (accuracy).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pattune_common import UserInputError
from search_spaces.models import MODEL_NAMES, get_model, input_shape

MODEL_FORMS = (
    f"a built-in name ({', '.join(MODEL_NAMES)}; add -imagenet or -cifar), "
    "package.module:factory, or a TorchScript file"
)


@dataclass(frozen=True)
class LoadedModel:
    """A model to prune and what is known about it.

    Attributes:
        model: The network.
        name: The ``--model`` text.
        input_shape: ``(N, C, H, W)`` when known (built-ins), else None.
        builtin: True for built-in architectures (random weights unless ``example``).
    """

    model: nn.Module
    name: str
    input_shape: tuple[int, ...] | None
    builtin: bool


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """Parse ``"1,3,224,224"`` (also ``x`` or space separated).

    Raises:
        UserInputError: Not four positive integers.
    """
    parts = [p for p in text.replace("x", ",").replace(" ", ",").split(",") if p]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise UserInputError(
            f"--input-shape must be four positive integers N,C,H,W such as 1,3,224,224; got {text!r}"
        )
    return dims  # type: ignore[return-value]


def import_object(spec: str, *, what: str) -> Any:
    """Import ``package.module:attribute``; the current directory is importable.

    Raises:
        UserInputError: Bad form, module not importable, attribute missing.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserInputError(f"{what} must look like package.module:function; got {spec!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure is the user's module
        raise UserInputError(
            f"cannot import {module_name!r} for {what} {spec!r}: {type(exc).__name__}: {exc}"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserInputError(
                f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    return obj


def load_model(spec: str) -> LoadedModel:
    """Load a ``--model`` value (see the module docstring); ``example`` is not trained here.

    Raises:
        UserInputError: The spec is none of the accepted forms or fails to load.
    """
    text = spec.strip()
    if ":" in text and not Path(text).exists():
        factory = import_object(text, what="--model")
        if not callable(factory):
            raise UserInputError(
                f"--model {text!r} is not callable; it must be a function returning an nn.Module"
            )
        try:
            model = factory()
        except Exception as exc:  # noqa: BLE001 - user code
            raise UserInputError(f"--model {text!r} failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(model, nn.Module):
            raise UserInputError(
                f"--model {text!r} returned {type(model).__name__}, not a torch nn.Module"
            )
        return LoadedModel(model, text, None, False)
    path = Path(text)
    if path.is_file():
        try:
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserInputError(f"cannot load TorchScript file {text}: {first}") from None
        return LoadedModel(model, text, None, False)
    try:
        model = get_model(text)
        shape = input_shape(text)
    except ValueError:
        raise UserInputError(f"cannot load model {text!r}: it is not {MODEL_FORMS}") from None
    return LoadedModel(model, text, shape, True)


def load_evaluator(spec: str) -> Callable[[nn.Module], float]:
    """Load ``--evaluate package.module:function`` (model -> accuracy as float).

    The returned callable checks the function's result and wraps its failures
    in :class:`UserInputError`.
    """
    fn = import_object(spec, what="--evaluate")
    if not callable(fn):
        raise UserInputError(
            f"--evaluate {spec!r} is not callable; it must be a function model -> float"
        )

    def evaluate(model: nn.Module) -> float:
        try:
            value = fn(model)
        except Exception as exc:  # noqa: BLE001 - user code
            raise UserInputError(
                f"--evaluate {spec!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserInputError(f"--evaluate {spec!r} returned {value!r}, not a number") from None

    return evaluate
