"""What a model trains and is evaluated with: the trainer/evaluator convention of NNI's pruners.

A :class:`Workload` is two functions:

* ``trainer(model, optimizer, criterion, epoch)``: train ``model`` for one epoch,
  calling ``optimizer.zero_grad()``, ``loss = criterion(model(x), y)``,
  ``loss.backward()`` and ``optimizer.step()`` per batch (pattune hands in the
  optimizer and the criterion: ADMM's penalty rides on the criterion, masks are
  re-applied by a hook on the optimizer's step, so a user's loop needs nothing
  pattune-specific);
* ``evaluator(model) -> float``: the model's accuracy in [0, 1].

The bundled example gets both from Fashion-MNIST (:func:`split_workload`). A user
model brings its own: ``--data package.module:function`` returning ``(train,
validation)`` torch datasets or data loaders (:func:`dataset_workload` trains and
evaluates top-1 on them), and optionally ``--train`` / ``--evaluate`` functions of
the signatures above, which replace the default trainer / evaluator
(:func:`load_workload`). A hook that cannot be imported, has the wrong signature
or raises becomes a one-line :class:`~pattune_common.UserInputError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pattune_common import UserInputError
from search_spaces.data import Split
from search_spaces.loading import import_object, load_evaluator
from search_spaces.training import evaluate

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Trainer = Callable[[nn.Module, torch.optim.Optimizer, Criterion, int], None]
Evaluator = Callable[[nn.Module], float]


@dataclass(frozen=True)
class Workload:
    """A model's training and evaluation.

    Attributes:
        trainer: One epoch of training (see the module docstring).
        evaluator: Accuracy in [0, 1].
        name: Where they come from (``fashion-mnist``, ``--data mod:fn``, ...), for reports.
        steps_per_epoch: Optimizer steps in one epoch when known (learning-rate
            schedules use it), else None.
    """

    trainer: Trainer
    evaluator: Evaluator
    name: str
    steps_per_epoch: int | None = None


def split_workload(
    train: Split, held_out: Split, *, batch_size: int = 128, seed: int = 0
) -> Workload:
    """Train on ``train`` in seeded shuffled batches, evaluate top-1 on ``held_out``.

    Each epoch's order depends on ``seed`` and the epoch alone, so a retraining
    resumed at epoch k sees the same batches as one that was never interrupted.
    """

    def trainer(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Criterion,
                epoch: int) -> None:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(len(train), generator=g)
        model.train()
        for start in range(0, len(train), batch_size):
            idx = perm[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(train.images[idx]), train.labels[idx])
            loss.backward()
            optimizer.step()

    steps = -(-len(train) // batch_size)
    return Workload(trainer, lambda m: evaluate(m, held_out), "fashion-mnist", steps)


def _loader(data: Any, *, batch_size: int, shuffle: bool, seed: int, what: str) -> DataLoader[Any]:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        g = torch.Generator().manual_seed(seed)
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=g)
    raise UserInputError(
        f"{what} must be a torch Dataset or DataLoader; got {type(data).__name__}"
    )


def dataset_workload(
    train: Any, validation: Any, *, batch_size: int = 128, seed: int = 0, name: str = "data"
) -> Workload:
    """Train on batches of ``train`` and evaluate top-1 on ``validation`` (datasets or loaders).

    Raises:
        UserInputError: Either is neither a torch Dataset nor a DataLoader.
    """
    train_loader = _loader(train, batch_size=batch_size, shuffle=True, seed=seed,
                           what=f"{name}: the training data")
    val_loader = _loader(validation, batch_size=batch_size, shuffle=False, seed=seed,
                         what=f"{name}: the validation data")

    def trainer(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Criterion,
                epoch: int) -> None:
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def evaluator(model: nn.Module) -> float:
        was = model.training
        model.eval()
        right = total = 0
        try:
            for x, y in val_loader:
                right += int((model(x).argmax(1) == y).sum())
                total += int(y.numel())
        finally:
            model.train(was)
        if total == 0:
            raise UserInputError(f"{name}: the validation data is empty")
        return right / total

    return Workload(trainer, evaluator, name, len(train_loader))


def _check_signature(fn: Any, n_args: int, flag: str, spec: str, shape: str) -> None:
    if not callable(fn):
        raise UserInputError(f"{flag} {spec!r} is not callable; it must be a function {shape}")
    try:
        inspect.signature(fn).bind(*range(n_args))
    except TypeError:
        raise UserInputError(
            f"{flag} {spec!r} must take {n_args} positional argument(s): {shape}"
        ) from None
    except ValueError:  # builtins without a signature: trust them
        return


def load_trainer(spec: str) -> Trainer:
    """Load ``--train package.module:function`` (model, optimizer, criterion, epoch) -> None."""
    shape = "(model, optimizer, criterion, epoch) -> None"
    fn = import_object(spec, what="--train")
    _check_signature(fn, 4, "--train", spec, shape)

    def trainer(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Criterion,
                epoch: int) -> None:
        try:
            fn(model, optimizer, criterion, epoch)
        except UserInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            raise UserInputError(f"--train {spec!r} failed: {type(exc).__name__}: {exc}") from None

    return trainer


def load_data(spec: str, *, batch_size: int = 128, seed: int = 0) -> Workload:
    """Load ``--data package.module:function`` () -> (train, validation); see the module docstring."""
    fn = import_object(spec, what="--data")
    _check_signature(fn, 0, "--data", spec, "() -> (train, validation)")
    try:
        got = fn()
    except Exception as exc:  # noqa: BLE001 - user code
        raise UserInputError(f"--data {spec!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(got, tuple | list) or len(got) != 2:
        raise UserInputError(
            f"--data {spec!r} must return (train, validation); got {type(got).__name__}"
        )
    return dataset_workload(got[0], got[1], batch_size=batch_size, seed=seed,
                            name=f"--data {spec}")


def load_workload(
    *, data: str | None = None, train: str | None = None, evaluate: str | None = None,
    seed: int = 0,
) -> Workload | None:
    """The user's workload from the ``--data``, ``--train`` and ``--evaluate`` hooks.

    ``--data`` gives a default trainer and evaluator; ``--train`` and ``--evaluate``
    replace them. Returns None when there is nothing to train with (no ``--data``
    and no ``--train``); an ``--evaluate`` alone is an accuracy source, not a workload.

    Raises:
        UserInputError: A hook is not importable, has the wrong signature, or fails.
        ValueError: ``--train`` without ``--data`` or ``--evaluate`` (nothing to judge by).
    """
    if data is None and train is None:
        return None
    base = load_data(data, seed=seed) if data is not None else None
    if base is None and evaluate is None:
        raise UserInputError(
            "--train needs --data or --evaluate to judge the retrained model; pass one of them"
        )
    if train is not None:
        trainer = load_trainer(train)
    else:
        assert base is not None  # data or train was given
        trainer = base.trainer
    if evaluate is not None:
        evaluator = load_evaluator(evaluate)
    else:
        assert base is not None  # checked above
        evaluator = base.evaluator
    name = " ".join(f"--{k} {v}" for k, v in (("data", data), ("train", train),
                                              ("evaluate", evaluate)) if v)
    steps = base.steps_per_epoch if base is not None and train is None else None
    return Workload(trainer=trainer, evaluator=evaluator, name=name, steps_per_epoch=steps)
