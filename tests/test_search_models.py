"""Built-in architectures have the standard shapes; conv_layers sees real input sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_spaces.models import (
    FashionNet,
    conv_layers,
    get_model,
    input_shape,
    model_variants,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# Parameter counts of the reference ImageNet implementations (torchvision's, same layouts).
@pytest.mark.parametrize(
    ("name", "params"),
    [("resnet18", 11_689_512), ("resnet50", 25_557_032), ("mobilenet_v2", 3_504_872),
     ("vgg16", 138_357_544)],
)  # fmt: skip
def test_imagenet_parameter_counts(name: str, params: int) -> None:
    assert n_params(get_model(name, "imagenet")) == params


@pytest.mark.parametrize(
    ("name", "dataset", "convs", "conv3x3", "depthwise"),
    [
        ("vgg16", "imagenet", 13, 13, 0),
        ("vgg16", "cifar", 13, 13, 0),
        ("resnet18", "imagenet", 20, 16, 0),
        ("resnet18", "cifar", 20, 17, 0),
        ("resnet50", "imagenet", 53, 16, 0),
        ("resnet50", "cifar", 53, 17, 0),
        ("mobilenet_v2", "imagenet", 52, 18, 17),
        ("mobilenet_v2", "cifar", 52, 18, 17),
        ("example", "fashion-mnist", 6, 6, 0),
    ],
)
def test_conv_layer_counts(
    name: str, dataset: str, convs: int, conv3x3: int, depthwise: int
) -> None:
    layers = conv_layers(get_model(name, dataset), input_shape(name, dataset))
    assert len(layers) == convs
    assert sum(c.is_3x3 for c in layers) == conv3x3
    assert sum(c.spec.is_depthwise for c in layers) == depthwise


def test_every_variant_is_listed() -> None:
    assert len(model_variants()) == 9


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "resnet50", "mobilenet_v2"])
def test_cifar_variants_map_32x32_to_10_logits(name: str) -> None:
    m = get_model(name, "cifar")
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_cifar_stem_is_3x3_stride_1_without_maxpool() -> None:
    layers = {c.name: c.spec for c in conv_layers(get_model("resnet18", "cifar"), (1, 3, 32, 32))}
    stem = layers["conv1"]
    assert (stem.kh, stem.stride, stem.h) == (3, 1, 32)
    assert layers["layer1.0.conv1"].h == 32  # no max-pool in front of layer1
    assert layers["layer4.1.conv2"].h == 4


def test_imagenet_specs_follow_the_real_input_sizes() -> None:
    layers = {c.name: c.spec for c in conv_layers(get_model("resnet18"), (1, 3, 224, 224))}
    assert layers["layer1.0.conv1"].h == 56
    assert layers["layer2.0.conv1"].stride == 2 and layers["layer2.0.conv1"].h == 56
    assert layers["layer2.0.conv2"].h == 28
    vgg = conv_layers(get_model("vgg16"), (1, 3, 224, 224))
    assert [c.spec.h for c in vgg] == [224] * 2 + [112] * 2 + [56] * 3 + [28] * 3 + [14] * 3


def test_mobilenet_depthwise_specs() -> None:
    dws = [c.spec for c in conv_layers(get_model("mobilenet_v2"), (1, 3, 224, 224))
           if c.spec.is_depthwise]  # fmt: skip
    assert dws[0].cin == dws[0].cout == dws[0].groups == 32
    assert sum(s.stride == 2 for s in dws) == 4


def test_names_seeds_and_errors() -> None:
    a = get_model("resnet18-cifar", seed=3)
    b = get_model("resnet18", "cifar", seed=3)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, get_model("resnet18", "cifar", seed=4).conv1.weight)
    state = torch.random.get_rng_state()
    get_model("example")
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    with pytest.raises(ValueError, match="unknown model 'alexnet'; built-in models are vgg16"):
        get_model("alexnet")
    with pytest.raises(ValueError, match="comes for datasets imagenet, cifar"):
        get_model("vgg16", "fashion-mnist")


def test_conv_layers_rejects_a_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match="the model rejects input shape 1,3,28,28"):
        conv_layers(FashionNet(), (1, 3, 28, 28))
    with pytest.raises(ValueError, match="four positive integers"):
        conv_layers(FashionNet(), (1, 28, 28))


def test_conv_layers_restores_training_mode_and_skips_dilated() -> None:
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.Conv2d(4, 4, 3, padding=1))
    m.train()
    layers = conv_layers(m, (1, 3, 9, 9))
    assert m.training
    assert [c.name for c in layers] == ["1"]
    assert layers[0].module is m[1]
