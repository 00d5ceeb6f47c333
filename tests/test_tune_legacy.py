"""A study written by the previous version (commit e171eb9) still exports.

``tests/data/records-e171eb9.db.gz`` holds study ``legacy`` (model
``tests.tune.tiny:tiny_bn``, input shape 1,1,12,12, two complete trials) with
its per-layer results stored as the plain dicts that version wrote. The trial
records read them back (:class:`~autotune.results.TrialResult`), write the same
JSON again, and the export works from Python and through ``pattune export``,
although the space file and work dir the study stored no longer exist.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import optuna
import pytest

import pattune
from autotune.results import STUDY_ATTRS, TrialResult
from tests.tune.support import ROOT
from tests.tune.support import pattune as pattune_cli

DATA = ROOT / "tests" / "data" / "records-e171eb9.db.gz"


@pytest.fixture
def legacy(tmp_path: Path) -> str:
    db = tmp_path / "legacy.db"
    with gzip.open(DATA) as src, db.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    url = f"sqlite:///{db}"
    # The study names the space file and work dir of the run that wrote it (under
    # /tmp/fixture); point them where nothing is, as on any other machine.
    study = optuna.load_study(study_name="legacy", storage=url)
    options = dict(study.user_attrs["pattune:options"])
    assert options["space"] and options["model"] == "tests.tune.tiny:tiny_bn"
    options.update(space=str(tmp_path / "gone" / "space.toml"), work_dir=str(tmp_path / "gone"))
    study.set_user_attr("pattune:options", options)
    return url


def test_legacy_trials_read_back_as_records_with_the_same_json(legacy: str) -> None:
    study = optuna.load_study(study_name="legacy", storage=legacy)
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        result = TrialResult.from_attrs(trial.user_attrs)
        assert [x.name for x in result.layers] == ["0", "3", "5"]
        assert result.latency_ms == pytest.approx(result.tuned_ms + (result.untouched_ms or 0))
        assert result.layers[0].epilogue is not None and result.layers[0].epilogue.relu == "2"
        # Today the scalars stay attributes and the layers go to the records; both in the
        # JSON form the legacy study stored.
        written = result.to_attrs()
        assert written.pop("pattune:layer_count") == 3
        stored = {k: v for k, v in trial.user_attrs.items() if k in written}
        assert written == stored and set(STUDY_ATTRS) <= set(written)
        assert result.layers_json() == trial.user_attrs["pattune:layers"]


def _check(ex: pattune.ExportResult, out: Path) -> None:
    config = json.loads((out / "config.json").read_text())
    assert (ex.trial, ex.latency_ms, ex.accuracy) == (
        config["trial"], config["total_latency_ms"], config["accuracy"])  # fmt: skip
    assert ex.default_latency_ms == config["default_total_latency_ms"]
    assert [d["name"] for d in config["layers"]] == ["0", "3", "5"]
    assert config["layers"][2]["epilogue"] == {"batchnorm": "6", "relu": None, "maxpool": "7"}
    assert all(p.exists() for p in (ex.checkpoint, ex.report, ex.kernels_dir / "Makefile"))
    assert [p.name for p in ex.weights] == ["00_0.fkw", "01_3.fkw", "02_5.fkw"]


def test_legacy_study_exports_from_python_and_the_cli(legacy: str, tmp_path: Path) -> None:
    ex = pattune.export(out=tmp_path / "py", storage=legacy, study="legacy")
    _check(ex, tmp_path / "py")
    r = pattune_cli("export", "--storage", legacy, "--study", "legacy", "--out",
                    str(tmp_path / "cli"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    line = " ".join(r.stdout.split())  # rich wraps at the pipe's 80 columns
    assert line.startswith(f"exported trial {ex.trial} to {tmp_path / 'cli'}: ")
    cli = json.loads((tmp_path / "cli" / "config.json").read_text())
    py = json.loads(ex.config_json.read_text())
    # The same export twice, but for the whole network's timings: measured afresh each time.
    fresh = ("created", "network", "total_latency_ms")
    assert {k: v for k, v in cli.items() if k not in fresh} == {
        k: v for k, v in py.items() if k not in fresh}  # fmt: skip
    st = pattune.status(storage=legacy, study="legacy")
    assert st.trials == {"complete": 2} and st.measurements == {"done": 12}
