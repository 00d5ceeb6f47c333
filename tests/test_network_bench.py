"""``pattune bench network`` end to end on the example model (tiny budget and rounds).

Real parts: the product's kernel search loop building and timing kernels with gcc, the
whole-network library, torch eager and frozen and ONNX Runtime in one process.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.tune.support import pattune

pytestmark = pytest.mark.xdist_group("network-bench")


def test_bench_network_times_ours_torch_and_ort_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    r = pattune("bench", "network", "--model", "example", "--budget", "1", "--rounds", "3",
                "--out-dir", str(tmp_path / "build"), "--json-out", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    sm = doc["summary"]
    assert set(doc["median_ms"]) == {"ours", "torch_eager", "torch_frozen", "ort"}
    assert sm["latency_ms"] == doc["median_ms"]["ours"] > 0
    torch_ms = min(doc["median_ms"]["torch_eager"], doc["median_ms"]["torch_frozen"])
    assert sm["speedup_vs_torch"] == pytest.approx(torch_ms / sm["latency_ms"])
    assert sm["speedup_vs_ort"] == pytest.approx(doc["median_ms"]["ort"] / sm["latency_ms"])
    assert all(e <= 1e-4 for e in doc["max_rel_err"].values()) and not doc["verify_errors"]
    assert sm["max_rel_err"] <= 1e-4 and sm["arena_bytes"] > 0 and sm["weights_bytes"] > 0
    kinds = sm["breakdown_ms"]
    assert "pattern 3x3" in kinds and "linear" in kinds
    assert math.isclose(sum(k["ms"] for k in kinds.values()), sm["latency_ms"], rel_tol=0.9)
    assert all(la["config"] is not None for la in doc["layers"])
    assert doc["config"]["connectivity"] == "3.6x" and "speedup vs torch" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--connectivity", "0.5"], "pattune: error: --connectivity is a ratio >= 1"),
    (["--model", "nope"], "pattune: error: --model/--dataset: "),
    (["--threads", "0"], "pattune: error: --threads must lie in 1.."),
])
def test_bench_network_bad_input_is_one_line(args: list[str], message: str) -> None:
    r = pattune("bench", "network", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(message), line
