"""A tiny CNN for end-to-end tuner tests: three 3x3 convs on a 1x12x12 input."""

from __future__ import annotations

from collections import OrderedDict

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


def tiny_bn() -> nn.Module:
    """Every epilogue kind: conv+BatchNorm+ReLU, conv+ReLU, conv+BatchNorm+2x2 max-pool.

    The BatchNorms get seeded, non-trivial eval statistics, so folding them matters.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 4),
        )
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n) * 0.5)  # type: ignore[union-attr]
                m.running_var.copy_(torch.rand(n) + 0.5)  # type: ignore[union-attr]
                m.weight.data.copy_(torch.randn(n))
                m.bias.data.copy_(torch.randn(n) * 0.5)
    return model.eval()


def tiny_sigmoid() -> nn.Module:
    """:func:`tiny` with a sigmoid the network runtime has no code for (module ``act``)."""
    layers = OrderedDict(tiny().named_children())
    layers["act"] = nn.Sigmoid()
    return nn.Sequential(layers).eval()


def tiny_dw() -> nn.Module:
    """A 3x3 conv, a depthwise 3x3 conv (MobileNet's kind) and a 3x3 conv."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
        ).eval()
