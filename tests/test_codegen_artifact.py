"""Artifacts run from their own directory with their own command line, on both targets."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from codegen import (
    LocalBuilder,
    aarch64_target,
    config_space,
    host_target,
    random_input,
    reference_output,
)
from codegen.artifact import Artifact, make_artifacts
from tests.codegen_support import pool_layers, required_layers

LAYERS = required_layers()


@pytest.mark.parametrize("target", [host_target(), aarch64_target()], ids=["host", "aarch64"])
def test_artifact_runs_and_verifies(tmp_path, target) -> None:
    layer = LAYERS["stride2"]
    cfg = config_space(layer.spec, target).default().replace(threads=2)
    bad = dataclasses.replace(target, cflags=(*target.cflags, "-mno-such-flag"))
    [art] = make_artifacts([(layer, cfg)], target, builder=LocalBuilder(cache_dir=tmp_path / "c"),
                           out_dir=tmp_path / "a")
    assert art.error == "" and art.files == ("kernel", "weights.bin", "input.bin")
    proc = subprocess.run([*target.run_prefix, *art.command(warmup=1, repeats=3)],
                          cwd=art.directory, capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    assert len(report["times_s"]) == 3
    out = (tmp_path / "a" / art.directory / "output.bin").read_bytes()
    assert art.check_output(out).ok
    wrong = bytearray(out)
    wrong[:4] = b"\x00\x00\x80\x7f"  # +inf in the first value
    assert art.check_output(bytes(wrong)).error == "verify: output has NaN or inf"
    assert art.check_output(out[:-4]).error.startswith("verify: output has ")
    assert Artifact.from_json(art.to_json()) == art
    [failed] = make_artifacts([(layer, cfg)], bad, builder=LocalBuilder(cache_dir=tmp_path / "c"),
                              out_dir=tmp_path / "a")
    assert failed.error.startswith("build: ") and failed.files == ()


@pytest.mark.parametrize("target", [host_target(), aarch64_target()], ids=["host", "aarch64"])
def test_pooled_artifact_reports_and_dumps_the_pooled_output(tmp_path, target) -> None:
    layer = pool_layers()["pool_wide"]  # 11x37 -> 5x18
    cfg = config_space(layer.spec, target).default().replace(threads=2)
    [art] = make_artifacts([(layer, cfg)], target, builder=LocalBuilder(cache_dir=tmp_path / "c"),
                           out_dir=tmp_path / "a")
    assert art.error == "" and art.output_shape == (1, 5, 5, 18) == layer.output_shape
    proc = subprocess.run([*target.run_prefix, *art.command(warmup=0, repeats=1)],
                          cwd=art.directory, capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    assert report["out_elems"] == 5 * 5 * 18
    ref = reference_output(layer, random_input(layer, seed=0))
    assert report["checksum"] == pytest.approx(float(ref.astype("float64").sum()), abs=1e-3)
    out = (tmp_path / "a" / art.directory / "output.bin").read_bytes()
    assert len(out) == 4 * 5 * 5 * 18 and art.check_output(out).ok
