"""``pattune prune``, ``pattune patterns`` and bad input through the real CLI (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from search_spaces.artifacts import load_pruned_layers, read_manifest
from tests.search.factories import tiny

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OMP_WAIT_POLICY": "passive", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pattune", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env, check=False,
    )  # fmt: skip


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("pattune: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "tests.search.factories:no_3x3", "--input-shape", "1,3,16,16"],
         "the model has no 3x3 conv layer, so pattern pruning has nothing to prune"),
        (["--model", "resnet18-cifar", "--patterns", "60"],
         "--patterns (K) must lie in 1..56 (the 3x3 patterns with 4 non-zeros that keep the centre); got 60"),
        (["--model", "resnet18-cifar", "--patterns", "0"], "--patterns (K) must lie in 1..56"),
        (["--model", "resnet18-cifar", "--connectivity", "0.5x"],
         "connectivity rate must be a fraction removed in [0, 1) or a ratio >= 1 such as '3.6x'; got '0.5x'"),
        (["--model", "resnet18-cifar", "--connectivity", "-0.1"], "got '-0.1'"),
        (["--model", "resnet18-cifar", "--layer-rate", "conv1=abc"], "layer 'conv1': connectivity rate must be"),
        (["--model", "resnet18-cifar", "--layer-rate", "nolayer=0.5"], "per-layer rates name unknown layers ['nolayer']"),
        (["--model", "resnet18-cifar", "--layer-rate", "conv1"], "--layer-rate must look like NAME=RATE"),
        (["--model", "nosuchpkg.mod:make"], "cannot import 'nosuchpkg.mod' for --model 'nosuchpkg.mod:make'"),
        (["--model", "alexnet"], "cannot load model 'alexnet': it is not a built-in name (vgg16, resnet18"),
        (["--model", "vgg16-fashion-mnist"], "cannot load model 'vgg16-fashion-mnist'"),
        (["--model", "tests.search.factories:missing"], "module 'tests.search.factories' has no attribute 'missing'"),
        (["--model", "tests.search.factories:not_a_module", "--input-shape", "1,3,8,8"],
         "returned int, not a torch nn.Module"),
        (["--model", "tests.search.factories:broken"], "failed: RuntimeError: weights file went missing"),
        (["--model", "tests.search.factories:tiny"], "needs --input-shape N,C,H,W (such as 1,3,224,224)"),
        (["--model", "tests.search.factories:tiny", "--input-shape", "1,3,9"],
         "--input-shape must be four positive integers"),
        (["--model", "tests.search.factories:tiny", "--input-shape", "1,4,9,9"],
         "the model rejects input shape 1,4,9,9"),
        (["--model", "resnet18-cifar", "--evaluate", "tests.search.factories:nope"],
         "--evaluate 'tests.search.factories:nope': module 'tests.search.factories' has no attribute 'nope'"),
        (["--model", "resnet18-cifar", "--method", "admm"], "--method admm trains and needs data"),
        (["--model", "resnet18-cifar", "--method", "magic"], "method must be one of oneshot, estimate, admm"),
        (["--model", "resnet18-cifar", "--pattern-set", "1,2,3,9"], "patterns must be a .json pattern-set file"),
        (["--train-epochs", "0"], "--train-epochs must be > 0"),
        (["--model", "resnet18-cifar", "--threads", "0"], "threads must be >= 1; got 0"),
        (["--admm", "--admm-epochs", "0"], "epochs must be > 0; got 0.0"),
        (["--model", "resnet18-cifar", "--admm", "--method", "oneshot"], "--admm contradicts --method oneshot"),
    ],
)  # fmt: skip
def test_prune_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    assert message in one_line_error(run("prune", *args))


def test_unloadable_torchscript_file(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"definitely not a zip archive")
    assert f"cannot load TorchScript file {bad}" in one_line_error(
        run("prune", "--model", str(bad))
    )


def test_missing_dataset_names_the_apt_package(empty_dir: Path) -> None:
    want = (
        f"Fashion-MNIST file train-images-idx3-ubyte.gz not found in {empty_dir}; install it with "
        "'apt-get install dataset-fashion-mnist' or set PATTUNE_FASHION_MNIST_DIR"
    )
    assert want in one_line_error(run("prune", "--data-dir", str(empty_dir)))
    env = {"PATTUNE_FASHION_MNIST_DIR": str(empty_dir)}
    assert want in one_line_error(run("bench", "accuracy", "--quick", env=env))


def test_prune_builtin_oneshot_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run("prune", "--model", "resnet18-cifar", "--out", str(out), "--json", str(tmp_path / "s.json"),
            "--evaluate", "tests.search.factories:accuracy_half")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "layer4.1.conv2" in r.stdout and "total" in r.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["metrics"]["dense_acc"] == 0.5 and summary["metrics"]["method"] == "oneshot"
    layers = load_pruned_layers(out)
    assert len(layers) == 17  # the 3x3 convs; 1x1 downsamples stay dense and have no layer file
    assert read_manifest(out)["input_shape"] == [1, 3, 32, 32]
    sd = torch.load(out / "state_dict.pt", weights_only=True)
    by_name = {pl.spec.name: pl for pl in layers}
    np.testing.assert_array_equal(
        sd["layer3.0.conv2.weight"].numpy(), by_name["layer3.0.conv2"].weights
    )


def test_prune_torchscript_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(tiny()), str(path))
    out = tmp_path / "out"
    r = run("prune", "--model", str(path), "--input-shape", "1,3,9,9", "--connectivity", "0.5",
            "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [pl.spec.name for pl in load_pruned_layers(out)] == ["0", "2", "3", "5"]
    assert [int(pl.alive.sum()) for pl in load_pruned_layers(out)] == [12, 16, 8, 1]


def test_prune_example_end_to_end_small_budget(tmp_path: Path) -> None:
    out = tmp_path / "example"
    args = (
        "prune", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
        "--train-samples", "3000", "--train-epochs", "2", "--finetune-samples", "600",
        "--test-samples", "1000", "--threads", "1", "--json", str(tmp_path / "s.json"),
    )  # fmt: skip
    r = run(*args)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "s.json").read_text())["metrics"]
    assert m["method"] == "estimate" and not m["dense_cached"]
    assert m["dense_acc"] > 0.5 and m["pruned_acc"] > 0.3
    assert "features.3" in r.stdout
    layers = load_pruned_layers(out)
    assert len(layers) == 6 and layers[0].kernels_alive == layers[0].kernels_total
    assert layers[1].kernels_alive == round(layers[1].kernels_total / 3.6)
    again = run(*args)
    assert again.returncode == 0
    assert json.loads((tmp_path / "s.json").read_text())["metrics"]["dense_cached"] is True


def test_prune_example_with_admm(tmp_path: Path) -> None:
    r = run(
        "prune", "--admm", "--admm-epochs", "0.05", "--retrain-epochs", "0.05",
        "--cache-dir", str(tmp_path / "cache"), "--train-samples", "3000", "--train-epochs", "2",
        "--test-samples", "1000", "--threads", "1", "--out", str(tmp_path / "o"),
        "--json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "s.json").read_text())["metrics"]
    assert m["method"] == "admm" and m["pruned_acc"] > 0.3
    assert len(m["admm_residuals"]) == 1  # 23 steps: fewer than one update every 100
    layers = load_pruned_layers(tmp_path / "o")
    assert layers[2].kernels_alive == round(layers[2].kernels_total / 3.6)


def test_patterns_command() -> None:
    r = run("patterns", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["schema"], doc["schema_version"]) == ("pattune.patterns", 1)
    rows = doc["patterns"]
    assert len(rows) == 56 and rows[0] == {"id": 0, "taps": [0, 1, 2, 4]}
    assert len(json.loads(run("patterns", "--json", "--no-keep-centre").stdout)["patterns"]) == 126
    art = run("patterns").stdout
    assert "56 candidate patterns" in art and "X X X" in art
    ranked = json.loads(run("patterns", "--model", "vgg16-cifar", "--top", "4",
                            "--json").stdout)["patterns"]
    assert [r["id"] for r in ranked] == [0, 1, 2, 3]
    counts = [r["count"] for r in ranked]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    err = one_line_error(run("patterns", "--model", "vgg16-cifar", "--top", "99"))
    assert "pattern count K must lie in 1..56" in err
