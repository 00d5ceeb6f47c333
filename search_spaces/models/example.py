"""The bundled example: a small VGG-style network for 28x28 Fashion-MNIST.

Six 3x3 conv layers (conv + BatchNorm + ReLU, a 2x2 max-pool after every
second one), global average pooling and one linear layer. It is small enough to
train on two CPU cores in minutes and still reaches about 0.92 test accuracy,
which leaves room to see what pruning costs.
"""

from __future__ import annotations

from torch import nn

from search_spaces.models.vgg import make_features

EXAMPLE_CFG: tuple[int | str, ...] = (16, 32, "M", 32, 64, "M", 64, 64, "M")


class FashionNet(nn.Module):
    """VGG-style network for 1x28x28 input and 10 classes.

    Args:
        cfg: Conv output channels with ``"M"`` for 2x2 max-pools.
        num_classes: Output logits.
    """

    def __init__(self, cfg: tuple[int | str, ...] = EXAMPLE_CFG, num_classes: int = 10) -> None:
        super().__init__()
        self.features = make_features(cfg, 1, batch_norm=True)
        last = [v for v in cfg if isinstance(v, int)][-1]
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.pool(self.features(x)).flatten(1))
