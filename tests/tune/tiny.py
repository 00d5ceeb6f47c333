"""A tiny CNN for end-to-end tuner tests: three 3x3 convs on a 1x12x12 input."""

from __future__ import annotations

import torch
from torch import nn


def tiny() -> nn.Module:
    """Seeded weights, so every process builds the same model (same layer keys)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 4),
        ).eval()


def no_conv3() -> nn.Module:
    """A model pattern pruning cannot touch."""
    return nn.Sequential(nn.Conv2d(1, 4, 1), nn.Flatten(), nn.Linear(4 * 12 * 12, 2))
