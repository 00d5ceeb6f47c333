"""Hooks that go wrong, for the export's bad-hook tests."""

from __future__ import annotations

from typing import Any


def raising_data() -> Any:
    raise RuntimeError("the data server is down")


def not_a_pair() -> Any:
    return [1, 2, 3]


def raising_train(model: Any, optimizer: Any, criterion: Any, epoch: int) -> None:
    raise RuntimeError("out of memory in epoch 0")
