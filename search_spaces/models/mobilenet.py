"""MobileNet-V2 (Sandler et al. 2018) at ImageNet and CIFAR input sizes.

Inverted residual blocks: 1x1 expand, 3x3 depthwise, 1x1 project. The CIFAR
variant (as in the common CIFAR ports) uses a stride-1 stem and keeps stride 1 in
the 24-channel stage, so 32x32 input ends at 4x4 before pooling.
"""

from __future__ import annotations

from torch import nn

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
IMAGENET_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
CIFAR_CFG = tuple((t, c, n, 1 if c == 24 else s) for t, c, n, s in IMAGENET_CFG)


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU6, padded to keep 'same' size at stride 1."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_relu(cin, hidden, 1))
        layers += [
            conv_bn_relu(hidden, hidden, 3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNet-V2 with width multiplier 1.0."""

    def __init__(
        self, cfg: tuple[tuple[int, int, int, int], ...], *, stem_stride: int, num_classes: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu(3, 32, 3, stride=stem_stride)]
        cin = 32
        for t, c, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenet_v2_imagenet(num_classes: int = 1000) -> MobileNetV2:
    """MobileNet-V2 for 3x224x224 input."""
    return MobileNetV2(IMAGENET_CFG, stem_stride=2, num_classes=num_classes)


def mobilenet_v2_cifar(num_classes: int = 10) -> MobileNetV2:
    """MobileNet-V2 for 3x32x32 input (stride-1 stem and 24-channel stage)."""
    return MobileNetV2(CIFAR_CFG, stem_stride=1, num_classes=num_classes)
