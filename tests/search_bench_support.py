"""Helpers for the measurement-set and search-benchmark tests: the CLI and a tiny real set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "data" / "measurements" / "vgg16-imagenet-k8-c3.6x.json.gz"

# Two small layers of the example model and a space of 2 x 2 x 2 = 8 configs each.
TINY_LAYERS = "features.10,features.14"
TINY_PINS = (
    "threads=1", "thread_mapping=contiguous", "vector_width=8", "format=fkw", "fkr=true",
    "unroll=1", "oc_block=4,16", "tile_rows=1,7", "tile_vecs=1", "ic_block=32",
    "loop_order=block_group_tile", "lre=true,false", "shifted=false", "prefetch=0",
    "tap_shuffle=false", "out_prefetch=false", "shift_sums=false",
)  # fmt: skip


def pattune(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pattune ARGS`` from the worktree (so its code runs)."""
    return subprocess.run(
        [sys.executable, "-m", "pattune", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "OMP_WAIT_POLICY": "passive"},
    )  # fmt: skip


def record_tiny(out: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """Record the tiny set for real: gcc builds, torch verification, the local device."""
    pins = [a for p in TINY_PINS for a in ("--pin", p)]
    return pattune(
        "record", "--out", str(out), "--model", "example", "--dataset", "fashion-mnist",
        "--layers", TINY_LAYERS, "--patterns", "4", "--space", "none", *pins,
        "--min-total-s", "0.005", "--passes", "2", "--work-dir", str(work),
    )  # fmt: skip
