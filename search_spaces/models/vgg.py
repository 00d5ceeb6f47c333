"""VGG-16 (Simonyan & Zisserman 2015) at ImageNet and CIFAR input sizes.

The ImageNet variant is configuration "D" with the 4096-wide classifier; the
CIFAR variant keeps the same 13 conv layers and ends in one Linear(512, 10), as
the usual CIFAR ports do (the five max-pools bring 32x32 down to 1x1).
"""

from __future__ import annotations

from torch import nn

# Numbers are conv output channels, "M" a 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


def make_features(
    cfg: tuple[int | str, ...], in_channels: int, *, batch_norm: bool
) -> nn.Sequential:
    """Stack 3x3 conv (+BN) + ReLU blocks and 2x2 max-pools as ``cfg`` says."""
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        c = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG network: ``features`` (convs) then ``classifier``."""

    def __init__(self, features: nn.Sequential, classifier: nn.Module, *, pool: int) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = classifier

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(x.flatten(1))


def vgg16_imagenet(num_classes: int = 1000) -> VGG:
    """VGG-16 for 3x224x224 input (no batch norm, 4096-wide classifier)."""
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, num_classes),
    )
    return VGG(make_features(VGG16_CFG, 3, batch_norm=False), classifier, pool=7)


def vgg16_cifar(num_classes: int = 10) -> VGG:
    """VGG-16 for 3x32x32 input: 13 conv layers with batch norm, one Linear(512, classes)."""
    return VGG(make_features(VGG16_CFG, 3, batch_norm=True), nn.Linear(512, num_classes), pool=1)
