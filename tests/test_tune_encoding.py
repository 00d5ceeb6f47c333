"""A study written before the parameter encoding changed resumes, reads back and exports.

``tests/data/study-1201580.db.gz`` was written by pattune at 1201580 (K and the rates
as categorical parameters ``k``, ``rate:LAYER``). Today's pattune resumes it in that
encoding (Optuna refuses a parameter whose distribution changes), names its metrics,
and starts new studies in the same file with encoding 2.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

from tests.tune.support import pattune, tune_args

FIXTURE = Path(__file__).with_name("data") / "study-1201580.db.gz"


def _unpack(tmp_path: Path) -> str:
    path = tmp_path / "study.db"
    with gzip.open(FIXTURE) as src, path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return f"sqlite:///{path}"


def test_a_study_of_1201580_resumes_in_its_encoding(tmp_path: Path) -> None:
    storage = _unpack(tmp_path)
    before = optuna.load_study(study_name="v1", storage=storage)
    assert [t.params for t in before.trials][0].keys() == {"k", "rate:3", "rate:5"}

    r = pattune(*tune_args(tmp_path, storage=storage, study="v1", model="tiny_bn", trials=5),
                "--json-out", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert "resumed with 3/5 trials finished" in r.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["trials_this_run"] == 2
    study = optuna.load_study(study_name="v1", storage=storage)
    assert study.user_attrs["pattune:param_encoding"] == 1
    assert study.metric_names == ["latency_ms", "accuracy"]
    for t in study.trials:
        assert t.state.name == "COMPLETE"
        assert set(t.params) == {"k", "rate:3", "rate:5"}
        assert t.distributions["rate:3"] == CategoricalDistribution(("1x", "2x"))

    st = pattune("status", "-s", storage, "--study", "v1", "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["trials"] == {"complete": 5}
    ex = pattune("export", "-s", storage, "--study", "v1", "-o", str(tmp_path / "ex"),
                 "--retrain", "none", "--json")
    assert ex.returncode == 0, ex.stderr
    assert json.loads(ex.stdout)["study"] == "v1"

    # A new study in the same file gets encoding 2.
    r = pattune(*tune_args(tmp_path, storage=storage, study="v2", model="tiny_bn", trials=1),
                "-q")
    assert r.returncode == 0, r.stderr
    new = optuna.load_study(study_name="v2", storage=storage)
    assert new.user_attrs["pattune:param_encoding"] == 2
    [t] = new.trials
    assert t.distributions["k"] == IntDistribution(2, 4, step=2)
    assert t.distributions["keep:3"] == CategoricalDistribution((0.5, 1.0))
    cand = t.user_attrs.get("pattune:k")
    assert cand in (2, 4) and t.params["k"] == cand
