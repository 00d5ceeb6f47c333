"""``pattune bench kernels`` end to end, and its one-line errors (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pattune(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pattune", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "0"], "pattune: error: --threads must lie in 1..2; got 0"),
        (["--budget", "0"], "pattune: error: --budget must be >= 1; got 0"),
        (["--patterns", "99"], "pattune: error: --patterns must lie in 1..56; got 99"),
        (["--connectivity", "fast"], ("pattune: error: --connectivity: connectivity rate must be "
                                     "a fraction removed in [0, 1) or a ratio >= 1")),
        (["--target", "mars"], "pattune: error: unknown target 'mars'; use one of host, aarch64"),
        (["--target", "aarch64"], ("pattune: error: bench kernels times in-process next to "
                                  "torch, but target 'aarch64' cannot be loaded here")),
        (["--json-out", "/nonexistent/dir/out.json"], ("pattune: error: --json-out /nonexistent/dir/"
                                                  "out.json: directory /nonexistent/dir does "
                                                  "not exist; create it first")),
        (["--layers", "features.99", "--dataset", "cifar"],
         ("pattune: error: unknown layer 'features.99' for model 'vgg16'; its 3x3 layers are "
         "features.0, features.3, features.7")),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = _pattune("bench", "kernels", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_kernels_small_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _pattune("bench", "kernels", "--model", "vgg16", "--dataset", "cifar", "--layers",
                    "features.0,features.40", "--budget", "2", "--rounds", "3", "--json",
                    str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["layers"]] == ["features.0", "features.40"]
    first, last = doc["layers"]
    assert first["in_summary"] is False and last["in_summary"] is True
    assert doc["summary"]["layers_in_summary"] == ["features.40"]
    for row in doc["layers"]:
        assert set(row["median_s"]) == {"pattern", "unstructured", "torch", "ort", "torch_csr"}
        assert all(v <= 1e-4 for v in row["max_rel_error"].values()), row["max_rel_error"]
        assert row["verify_errors"] == {}
        assert row["tuning_pattern"]["tried"] == 2 and row["tuning_unstructured"]["tried"] == 2
        assert row["tuning_pattern"]["best_config"]["format"] == "fkw"
        assert row["tuning_unstructured"]["best_config"]["format"] == "csr"
        assert row["nonzero_bytes"] == row["nonzeros"] * 4
        assert row["fkw_bytes"] > row["nonzero_bytes"]
    s = doc["summary"]
    assert s["geomean_speedup_vs_torch"] == pytest.approx(last["speedup_vs"]["torch"])
    assert s["fkw_bytes_over_nonzero_bytes"] == pytest.approx(last["fkw_over_nonzero"])
    for key in ("geomean_speedup_vs_ort", "geomean_speedup_vs_unstructured"):
        assert s[key] > 0
    assert doc["config"]["connectivity_removed_fraction"] == pytest.approx(1 - 1 / 3.6)
    assert len(doc["config"]["pattern_set"]) == 8
    assert "geomean speedup vs torch" in proc.stdout
    # peak_fraction: the MACs each implementation must do per second over the measured peak
    peak = doc["config"]["fma_peak_gmacs"] * 1e9
    assert 1e9 < peak < 64 * 6e9
    for row in doc["layers"]:
        med, frac = row["median_s"], row["peak_fraction"]
        assert frac["pattern"] == pytest.approx(row["pruned_macs"] / med["pattern"] / peak)
        assert frac["torch"] == pytest.approx(row["dense_macs"] / med["torch"] / peak)
        assert 0 < frac["pattern"] < 1.05 and 0 < frac["torch"] < 1.05
    assert s["geomean_peak_fraction"] == pytest.approx(last["peak_fraction"]["pattern"])
    assert "peak fraction" in proc.stdout
