"""The export retrains the chosen configuration with the user's own data and loop.

The user model of ``examples/user_model.py`` is tuned for real (gcc, the local
device, the records database), then exported: ADMM, hard pruning and masked
retraining through its ``--data``/``--train``/``--evaluate`` hooks, every kernel
regenerated for the retrained weights, verified and measured again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import optuna
import pytest

import pattune
from autotune.export import pick_trial
from tests.tune.support import pattune as cli
from tests.tune.support import write_space

HOOKS = ["--data", "examples.user_model:data", "--train", "examples.user_model:train",
         "--evaluate", "examples.user_model:evaluate"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("user")
    storage = f"sqlite:///{tmp / 'p.db'}"
    r = cli("tune", "--model", "examples.user_model:model", "--input-shape", "1,1,16,16",
            *HOOKS, "--trials", "2", "--space", write_space(tmp), "--storage", storage,
            "--study", "user", "--work-dir", str(tmp / "work"))
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp, storage


def _trials(storage: str) -> int:
    with sqlite3.connect(storage.removeprefix("sqlite:///")) as c:
        return int(c.execute("select count(*) from trials").fetchone()[0])


def test_export_retrains_with_the_users_hooks_and_measures_again(
        tuned: tuple[Path, str]) -> None:
    tmp, storage = tuned
    out = tmp / "export"
    r = cli("export", "--storage", storage, "--study", "user", "--out", str(out),
            "--admm-epochs", "1", "--retrain-epochs", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["schema"] == "pattune.export/2"
    rt = cfg["retrain"]
    assert rt["retrained"] and rt["method"] == "admm" and rt["resumed_at"] is None
    assert [(e["phase"], e["epoch"]) for e in rt["epochs"]] == [("admm", 0), ("retrain", 0)]
    assert cfg["accuracy"] == rt["epochs"][-1]["accuracy"]
    assert cfg["accuracy_drop_points"] == pytest.approx(
        100 * (cfg["dense_accuracy"] - cfg["accuracy"]))
    assert cfg["dense_accuracy"] > 0.9 and "accuracy_estimate" in cfg
    assert cfg["accuracy_source"].startswith("--data examples.user_model:data")
    assert cfg["latency_remeasured"] and all(d["latency_ms_exported"] > 0 for d in cfg["layers"])
    assert cfg["tuned_layers_latency_ms"] == pytest.approx(
        sum(d["latency_ms_exported"] for d in cfg["layers"]))
    # The exported latency is the retrained network (model/) timed end to end.
    assert cfg["total_latency_ms"] == cfg["network"]["end_to_end_ms"] > 0
    assert (out / "pruned.pt").is_file() and (out / "retrain" / "checkpoint.pt").is_file()
    assert f"exported trial {cfg['trial']} to {out}:" in r.stdout
    assert f"drop {cfg['accuracy_drop_points']:.2f} points" in r.stdout.replace("\n", " ")
    assert "retrain admm epoch 1: loss" in r.stderr  # progress, one line per epoch when piped


def test_a_killed_export_resumes_its_retraining(tuned: tuple[Path, str]) -> None:
    tmp, storage = tuned
    out = tmp / "killed"

    def die(rec: object, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pattune.export(out=out, storage=storage, study="user", admm_epochs=2, retrain_epochs=1,
                       progress=die)
    seen: list[tuple[str, int]] = []
    ex = pattune.export(out=out, storage=storage, study="user", admm_epochs=2, retrain_epochs=1,
                        progress=lambda rec, total: seen.append((rec.phase, rec.epoch)))
    assert seen == [("admm", 1), ("retrain", 0)]  # epoch 0 of ADMM was not run again
    cfg = json.loads(ex.config_json.read_text())
    assert cfg["retrain"]["resumed_at"] == ["admm", 1]
    assert len(cfg["retrain"]["epochs"]) == 3 and ex.retrained


@pytest.mark.parametrize(("flags", "message"), [
    (["--data", "examples.user_model:nope"],
     "pattune: error: --data 'examples.user_model:nope': module 'examples.user_model' has no "
     "attribute 'nope'"),
    (["--data", "no_such_module_xyz:data"],
     "pattune: error: cannot import 'no_such_module_xyz' for --data 'no_such_module_xyz:data': "
     "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    (["--train", "examples.user_model:evaluate"],
     "pattune: error: --train 'examples.user_model:evaluate' must take 4 positional "
     "argument(s): (model, optimizer, criterion, epoch) -> None"),
    (["--data", "tests.retrain.hooks:raising_data"],
     "pattune: error: --data 'tests.retrain.hooks:raising_data' failed: RuntimeError: the data "
     "server is down"),
    (["--data", "tests.retrain.hooks:not_a_pair"],
     "pattune: error: --data 'tests.retrain.hooks:not_a_pair' must return (train, validation); "
     "got list"),
    (["--train", "tests.retrain.hooks:raising_train"],
     "pattune: error: --train 'tests.retrain.hooks:raising_train' failed: RuntimeError: out of "
     "memory in epoch 0"),
    (["--retrain", "sgd"], "pattune: error: retrain must be one of admm, finetune, none; got 'sgd'"),
])
def test_bad_hooks_and_options_fail_in_one_line_and_lose_nothing(
        tuned: tuple[Path, str], flags: list[str], message: str) -> None:
    tmp, storage = tuned
    before = _trials(storage)
    r = cli("export", "--storage", storage, "--study", "user", "--out", str(tmp / "bad"), *flags)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in r.stderr
    assert _trials(storage) == before


def test_the_accuracy_bound_counts_from_the_dense_model() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    for lat, acc in ((1.0, 0.90), (2.0, 0.95), (3.0, 0.94)):
        study.add_trial(optuna.trial.create_trial(
            values=[lat, acc], user_attrs={"pattune:accuracy": acc}))
    assert pick_trial(study, trial=None, max_drop=0.07, dense=0.96)[0].values[0] == 1.0
    assert pick_trial(study, trial=None, max_drop=0.02, dense=0.96)[0].values[0] == 2.0
    chosen, note = pick_trial(study, trial=None, max_drop=0.001, dense=0.96)
    assert chosen.values[0] == 2.0
    assert note == ("no trial's accuracy estimate is within 0.10 points of the dense 0.9600; "
                    "exported the most accurate, trial 1 (1.00 points below before retraining)")
