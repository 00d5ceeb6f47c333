"""The measurement-set file: round trip, determinism, and bad files through the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from autotune.measurement_set import FORMAT, VERSION, Entry, LayerRecord, MeasurementSet, load, save
from codegen import KernelConfig
from tests.search_bench_support import pattune


def _set() -> MeasurementSet:
    entries = [
        Entry(KernelConfig(oc_block=4), median_s=0.0123, cv=0.01, times_s=(0.0122, 0.0123, 0.0125)),
        Entry(KernelConfig(oc_block=8, lre=False), error="build: gcc exited 1"),
    ]
    rec = LayerRecord(
        name="conv", spec={"name": "conv", "cin": 8, "cout": 8, "h": 8, "w": 8},
        stats={"nonzeros": 100}, weights_hash="ab" * 8,
        space={"choices": {"oc_block": [4, 8]}, "pins": {}, "min_accumulators": 1},
        space_size=2, coverage="exhaustive", entries=entries,
    )  # fmt: skip
    return MeasurementSet(metadata={"device": "local", "cpu": "x"}, layers=[rec])


@pytest.mark.parametrize("name", ["set.json.gz", "set.json"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    mset = _set()
    path = save(mset, tmp_path / name)
    back = load(path)
    assert back.to_dict() == mset.to_dict()
    assert back.layers[0].entries[0].config == KernelConfig(oc_block=4)
    assert back.layers[0].best_s() == 0.0123
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    # The same set gives the same bytes (gzip without a timestamp).
    assert save(mset, tmp_path / ("again-" + name)).read_bytes() == raw


def test_entry_holds_a_value_or_an_error() -> None:
    with pytest.raises(ValueError, match="either median_s or error"):
        Entry(KernelConfig(), median_s=1.0, error="x")
    with pytest.raises(ValueError, match="either median_s or error"):
        Entry(KernelConfig())


def _bench(path: Path) -> tuple[int, list[str]]:
    proc = pattune("bench", "search", "--set", str(path), "--seeds", "1", "--budget", "2")
    return proc.returncode, proc.stderr.strip().splitlines()


def test_cli_rejects_another_version(tmp_path: Path) -> None:
    data = _set().to_dict() | {"version": VERSION + 1}
    path = tmp_path / "v2.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    assert _bench(path) == (2, [
        (f"pattune: error: measurement set {path} has measurement-set version {VERSION + 1}; "
        f"this pattune reads version {VERSION}: re-record it with this version's `pattune record`")
    ])  # fmt: skip


def test_cli_rejects_files_that_are_not_sets(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    assert _bench(other) == (2, [
        (f"pattune: error: measurement set {other} is not a pattune measurement set "
        f"(no \"format\": \"{FORMAT}\"); give a file written by `pattune record`")
    ])  # fmt: skip
    garbage = tmp_path / "garbage.json.gz"
    garbage.write_bytes(b"\x1f\x8bnot gzip at all")
    code, lines = _bench(garbage)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"pattune: error: measurement set {garbage} is not readable")
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps({"format": FORMAT, "version": VERSION, "metadata": {}}))
    code, lines = _bench(damaged)
    assert code == 2 and lines == [
        (
            f"pattune: error: measurement set {damaged} is a damaged measurement set "
            "(KeyError: 'layers'); re-record it with `pattune record`"
        )
    ]
    missing = tmp_path / "missing.json.gz"
    assert _bench(missing) == (2, [
        (f"pattune: error: measurement set {missing} does not exist; give a file from "
        "`pattune record`")
    ])  # fmt: skip
