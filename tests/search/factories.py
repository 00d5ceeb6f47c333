"""Model factories the CLI tests name as ``tests.search.factories:NAME``."""

from __future__ import annotations

import torch
from torch import nn


def no_3x3() -> nn.Module:
    """Only 1x1 and 5x5 convs: nothing for pattern pruning."""
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 5, padding=2))


def tiny() -> nn.Module:
    """cin=3 input layer, a stride-2 3x3, a depthwise 3x3, a 1x1 and a 2x2-kernel-count layer."""
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 2, 1),
        nn.Conv2d(2, 1, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return m


def not_a_module() -> int:
    """Returns the wrong type."""
    return 3


def broken() -> nn.Module:
    """Raises inside the factory."""
    raise RuntimeError("weights file went missing")


def accuracy_half(model: nn.Module) -> float:
    """An evaluator that ignores the model."""
    return 0.5
