"""Your own model, data and training loop, as pattune takes them.

Tune and export it from the repository root (the current directory is importable)::

    pattune tune --model examples.user_model:model --input-shape 1,1,16,16 \\
        --data examples.user_model:data --train examples.user_model:train \\
        --evaluate examples.user_model:evaluate --trials 4 --study user
    pattune export --study user --out out/user

* ``model()`` returns the trained network (here it trains itself once, in seconds);
* ``data()`` returns ``(train, validation)``: torch datasets or data loaders;
* ``train(model, optimizer, criterion, epoch)`` runs one epoch of your own loop with
  the optimizer and criterion pattune hands in (they carry ADMM's penalty and keep
  the pruned weights at zero, so the loop needs nothing pattune-specific: NNI's
  trainer convention); leave it out and pattune trains on ``data()`` itself;
* ``evaluate(model) -> float`` is the accuracy pattune reports; leave it out and
  pattune takes top-1 on the validation data.

The task is small enough to run anywhere: 16x16 images holding one bright bar,
horizontal or vertical, in one of two halves; the label is which of the four.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _images(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    x = 0.6 * torch.randn((n, 1, 16, 16), generator=g)
    pos = torch.randint(2, 6, (n,), generator=g)
    for i in range(n):
        half, vertical = int(labels[i]) // 2, int(labels[i]) % 2
        p = int(pos[i]) + 8 * half
        if vertical:
            x[i, 0, :, p] += 1.2
        else:
            x[i, 0, p, :] += 1.2
    return TensorDataset(x, labels)


@functools.cache
def _datasets() -> tuple[TensorDataset, TensorDataset]:
    return _images(2048, seed=0), _images(512, seed=1)


def data() -> tuple[TensorDataset, TensorDataset]:
    """The training and validation data."""
    return _datasets()


def train(model: nn.Module, optimizer: torch.optim.Optimizer,
          criterion: nn.Module | object, epoch: int) -> None:
    """One epoch of an ordinary training loop."""
    g = torch.Generator().manual_seed(100 + epoch)
    loader = DataLoader(_datasets()[0], batch_size=64, shuffle=True, generator=g)
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)  # type: ignore[operator]
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(model: nn.Module) -> float:
    """Top-1 accuracy on the validation data."""
    model.eval()
    x, y = _datasets()[1].tensors
    return float((model(x).argmax(1) == y).float().mean())


@functools.cache
def _trained() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
        )
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for epoch in range(4):
            train(net, opt, nn.CrossEntropyLoss(), epoch)
    return net.eval()


def model() -> nn.Module:
    """The trained network (a fresh copy each call, as a factory should)."""
    import copy

    return copy.deepcopy(_trained())
