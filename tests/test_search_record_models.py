"""``pattune record`` with the default benchmark space on a model that is not VGG-16.

The benchmark pins were VGG-16's (``ic_block`` 128 on a 64-channel ResNet layer was
an error on the first layer); now the preset is fitted to each layer, while a pin the
user gives stays strict. Real builds and measurements, one config per layer.
"""

from __future__ import annotations

from pathlib import Path

from autotune.measurement_set import load
from autotune.measurement_set.record import BENCH_PINS, VGG16_DEFAULT, fit_pins
from codegen import config_space, host_target
from search_spaces.layers import LayerSpec
from tests.tune.support import pattune


def test_record_resnet18_with_the_default_space(tmp_path: Path) -> None:
    out = tmp_path / "r18.json.gz"
    r = pattune("record", "-m", "resnet18", "-o", str(out), "--max-configs", "1",
                "--repeats", "1", "--min-total-s", "0", "--batch", "1",
                "--layers", "layer1.0.conv1,layer4.0.conv2", "--work-dir", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr
    mset = load(out)
    assert [x.name for x in mset.layers] == ["layer1.0.conv1", "layer4.0.conv2"]
    first, last = mset.layers
    assert first.space["pins"]["ic_block"] == [8, 32]  # 128 > 64 input channels: left out
    assert last.space["pins"]["ic_block"] == [8, 32, 128]
    for rec in mset.layers:
        assert [e.error for e in rec.entries] == [None] and rec.entries[0].median_s > 0
        spec = LayerSpec.from_dict(rec.spec)
        assert rec.space_size == len(list(config_space(
            spec, host_target(), **{k: tuple(v) for k, v in rec.space["pins"].items()}
        ).enumerate()))
    assert mset.metadata["preset"]["ic_block"] == list(BENCH_PINS["ic_block"])

    # A pin the user gives is not fitted: a value the layer cannot take is an error.
    r = pattune("record", "-m", "resnet18", "-o", str(tmp_path / "x.json.gz"), "--layers",
                "layer1.0.conv1", "--pin", "ic_block=128")
    assert r.returncode == 2 and "ic_block must be one of 4, 8, 16, 32, 64" in r.stderr


def test_fitting_keeps_vgg16_pins_and_fits_an_image_layer() -> None:
    host = host_target()
    vgg = [LayerSpec(name="c", cin=128, cout=128, h=112, w=112, padding=1),
           LayerSpec(name="d", cin=512, cout=512, h=14, w=14, padding=1)]
    for spec in vgg:  # the shipped set's layers: the preset as it always was
        full = config_space(spec, host).choices
        assert fit_pins(BENCH_PINS, full) == BENCH_PINS
    image = LayerSpec(name="img", cin=3, cout=64, h=32, w=32, padding=1)
    fitted = fit_pins(BENCH_PINS, config_space(image, host).choices)
    assert fitted["ic_block"] == (3,)
    assert VGG16_DEFAULT == ("conv2_2", "conv3_2", "conv4_2", "conv5_2")
