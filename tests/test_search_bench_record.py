"""``pattune record`` for real on two small layers, and ``pattune bench search`` on the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotune.measurement_set import load
from codegen import config_space, host_target
from search_spaces.layers import LayerSpec
from tests.search_bench_support import pattune, record_tiny


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-set")
    out = root / "tiny.json.gz"
    proc = record_tiny(out, root / "work")
    assert proc.returncode == 0, proc.stderr
    return out


def test_record_measures_every_config_of_the_space(tiny_set: Path) -> None:
    mset = load(tiny_set)
    assert [r.name for r in mset.layers] == ["features.10", "features.14"]
    md = mset.metadata
    assert md["device"] == "local" and md["complete"] is True
    assert md["compiler"].startswith("gcc") and "-O3" in md["flags"]
    assert md["pruning"]["patterns"] == 4 and md["pruning"]["connectivity"] == "3.6x"
    assert md["protocol"]["min_total_s"] == 0.005 and md["cpu"]
    for rec in mset.layers:
        spec = LayerSpec.from_dict(rec.spec)
        pins = {k: tuple(v) for k, v in rec.space["pins"].items()}
        expected = {c.to_json() for c in config_space(spec, host_target(), **pins).enumerate()}
        assert rec.space_size == len(expected) == 8
        assert {e.config.to_json() for e in rec.entries} == expected
        assert rec.coverage == "exhaustive"
        # Verified against torch before timing, so every config has a time, none an error.
        assert all(e.median_s is not None and e.median_s > 0 and e.error is None
                   for e in rec.entries)  # fmt: skip
        # Two passes, each of at least 3 timed repeats, pooled.
        assert all(e.passes == 2 and len(e.times_s) >= 6 for e in rec.entries)
        assert all(e.latency("min") == min(e.times_s) <= e.median_s for e in rec.entries)


def test_record_resumes_without_measuring_again(tiny_set: Path, tmp_path: Path) -> None:
    before = tiny_set.read_bytes()
    copy = tmp_path / "again.json.gz"
    copy.write_bytes(before)
    proc = record_tiny(copy, tmp_path / "work")
    assert proc.returncode == 0, proc.stderr
    a, b = load(tiny_set), load(copy)
    assert [[e.to_dict() for e in r.entries] for r in a.layers] == [
        [e.to_dict() for e in r.entries] for r in b.layers
    ]


def test_bench_search_on_the_tiny_set_reports_every_field(tiny_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    proc = pattune(
        "bench", "search", "--set", str(tiny_set), "--json", str(out), "--seeds", "2",
        "--budget", "6", "--batch", "2", "--workers", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(  # the old flag still works
        "pattune: warning: --json PATH is deprecated; use --json-out PATH")
    doc = json.loads(out.read_text())
    s = doc["summary"]
    assert (doc["schema"], doc["schema_version"]) == ("pattune.bench_search", 1)
    for key in ("tpe_over_filtered", "within_10pct"):
        assert isinstance(s[key], float), key
    # A rank correlation of 8 configs may be undefined (NaN), which JSON writes as null.
    for key in ("spearman_within_layer", "spearman_cross_layer"):
        assert s[key] is None or isinstance(s[key], float), key
    assert set(doc["strategies"]) == {"random", "tpe", "filtered", "filtered-warm"}
    for st in doc["strategies"].values():
        # 8 configs, budget 6: a run reaches 5% of the best within 1..6, or counts as 7.
        assert 1 <= st["median_measurements_to_within"] <= 7
    assert s["tpe_over_filtered"] == pytest.approx(
        doc["strategies"]["tpe"]["median_measurements_to_within"]
        / doc["strategies"]["filtered"]["median_measurements_to_within"]
    )
    png = Path(doc["plot"])
    assert png == out.with_suffix(".png") and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_record_rejects_a_bad_pin_in_one_line(tmp_path: Path) -> None:
    proc = pattune("record", "--out", str(tmp_path / "x.json.gz"), "--pin", "tiles=3")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (
            "pattune: error: --pin must look like FIELD=V1,V2 with FIELD one of oc_block, "
            "tile_rows, tile_vecs, ic_block, unroll, loop_order, threads, thread_mapping, "
            "vector_width, fkr, lre, format, shifted, prefetch, tap_shuffle, out_prefetch, "
            "shift_sums, pack_rows; "
            "got 'tiles=3'"
        )
    ]
    assert not (tmp_path / "x.json.gz").exists()
