"""``pattune tune``, ``status`` and ``export`` end to end on the real local device.

A tiny three-conv model keeps each run to seconds; everything else is real: gcc
builds, verification against torch, measurements, the records database, the
exported Makefile built again with gcc and its kernels (conv with the BatchNorm and
ReLU after it fused in) checked against the torch model loaded from the export.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
import torch

from tests.tune.support import pattune, popen, tune_args


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_tune_status_export(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    args = tune_args(tmp_path, storage=storage, model="tiny_bn")
    r = pattune(*args, "--summary-json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["trials_finished"] == 3 and summary["configs_measured"] > 0
    st = pattune("status", "--storage", storage, "--study", "e2e")
    assert st.returncode == 0 and "complete 3" in st.stdout

    out = tmp_path / "export"
    ex = pattune("export", "--storage", storage, "--study", "e2e", "--out", str(out))
    assert ex.returncode == 0, ex.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["device_type"] == "local" and len(cfg["layers"]) == 3
    for key in (
        "total_latency_ms",
        "default_total_latency_ms",
        "accuracy",
        "pattern_set",
        "versions",
    ):
        assert key in cfg
    assert cfg["tuned_layers_latency_ms"] == pytest.approx(
        sum(d["latency_ms"] for d in cfg["layers"])
    )
    # The whole model is the network library timed end to end; the per-layer sum plus
    # torch's time for the rest is still reported beside it.
    assert cfg["untouched_latency_ms"] > 0 and cfg["latency_source"] == "network"
    assert cfg["total_latency_ms"] == cfg["network"]["end_to_end_ms"] > 0
    assert cfg["default_total_latency_ms"] == pytest.approx(
        sum(d["default_latency_ms"] for d in cfg["layers"]) + cfg["untouched_latency_ms"]
    )
    assert all(d["latency_ms"] <= d["default_latency_ms"] for d in cfg["layers"])
    assert [d["epilogue"] for d in cfg["layers"]] == [
        {"batchnorm": "1", "relu": "2", "maxpool": None},
        {"batchnorm": None, "relu": "4", "maxpool": None},
        {"batchnorm": "6", "relu": None, "maxpool": "7"},
    ]
    assert cfg["untouched_method"] == "torchscript" and cfg["untouched_torch_threads"] == 1
    assert (out / "report" / "pareto.png").stat().st_size > 1000
    assert (out / "report" / "history.png").stat().st_size > 1000

    # The exported sources build with the Makefile; loaded into the model, the exported
    # checkpoint gives each layer's input, and each kernel computes its conv with the
    # epilogue (BatchNorm folded, ReLU, 2x2 max-pool) exactly as torch's modules do after
    # it: the last layer's kernel outputs the pooled shape.
    subprocess.run(["make", "-C", str(out / "kernels")], check=True, capture_output=True)
    from tests.tune.tiny import tiny_bn

    model = tiny_bn()
    model.load_state_dict(torch.load(out / "pruned.pt", weights_only=True))
    model.eval()
    ins: dict[str, np.ndarray] = {}
    outs: dict[str, np.ndarray] = {}
    for d in cfg["layers"]:
        ep = d["epilogue"]
        last = ep["maxpool"] or ep["relu"] or ep["batchnorm"] or d["name"]
        model.get_submodule(d["name"]).register_forward_pre_hook(
            lambda _m, a, n=d["name"]: ins.__setitem__(n, a[0].detach().clone().numpy())
        )
        model.get_submodule(last).register_forward_hook(
            lambda _m, _a, o, n=d["name"]: outs.__setitem__(n, o.detach().clone().numpy())
        )
    with torch.no_grad():
        model(torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, 12, 12))).float())
    for d in cfg["layers"]:
        x, ref = ins[d["name"]], outs[d["name"]]
        w = model.get_submodule(d["name"]).weight
        assert int((w.abs().sum(dim=(2, 3)) > 0).sum()) <= d["kernels_alive"]
        x.tofile(tmp_path / "in.bin")
        subprocess.run(
            [
                str(out / "kernels" / Path(d["source"]).stem),
                str(tmp_path / "in.bin"),
                str(out / d["weights"]),
                "0",
                "1",
                str(tmp_path / "out.bin"),
            ],
            check=True,
            capture_output=True,
        )
        got = np.fromfile(tmp_path / "out.bin", dtype=np.float32)
        assert got.size == ref.size, d["name"]
        got = got.reshape(ref.shape)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), d["name"]


def _done_rows(db: Path) -> dict[int, str]:
    eng = sa.create_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT id, finished FROM pt_measurements WHERE status IN ('done', 'failed')"
                )
            ).all()
    except sa.exc.OperationalError:  # the tuner has not created its tables yet
        rows = []
    finally:
        eng.dispose()
    return {int(i): str(f) for i, f in rows}


def _start_and_wait(args: list[str], db: Path, log: Path, rows: int) -> subprocess.Popen[bytes]:
    """Start a tuner and return once ``rows`` measurements are recorded (or 300 s passed)."""
    proc = popen(*args, log=log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if db.exists() and len(_done_rows(db)) >= rows:
            break
    return proc


def test_sigkill_then_resume_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    storage = f"sqlite:///{db}"
    args = tune_args(tmp_path, storage=storage, study="kill", trials=6)
    proc = _start_and_wait(args, db, tmp_path / "first.log", 3)
    assert proc.poll() is None, "the tuner finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _done_rows(db)
    assert len(before) >= 3

    r = pattune(*args, "--summary-json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    after = _done_rows(db)
    # Every result recorded before the kill is still there, untouched ...
    assert {i: after[i] for i in before} == before
    # ... and the rerun measured only what was missing.
    summary = json.loads((tmp_path / "s.json").read_text())
    assert len(after) == len(before) + summary["configs_measured"] + summary["configs_failed"]
    study = optuna.load_study(study_name="kill", storage=storage)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 6 - sum(t.state == optuna.trial.TrialState.FAIL for t in trials)
    lost = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    for t in lost:  # the trial the kill interrupted was re-run with the same parameters
        redo = [u for u in complete if u.user_attrs.get("pattune:requeued_from") == t.number]
        assert redo and redo[0].params == t.params


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--device-type", "pixel"],
            "pattune: error: device type 'pixel' needs an inventory: pass --inventory FILE "
            "(or use --device-type local)",
        ),
        (
            ["--storage", "postgresql://u:secret@127.0.0.1:1/db"],
            "pattune: error: cannot open storage postgresql+psycopg://u:***@127.0.0.1:1/db: ",
        ),
        (
            ["--objective", "latency"],
            "pattune: error: --objective latency needs --max-accuracy-drop D (e.g. 0.01 for one "
            "point)",
        ),
        (
            ["--timeout", "soon"],
            "pattune: error: --timeout must look like 8h, 30m, 90s, 1h30m or a number of seconds; "
            "got 'soon'",
        ),
        (
            ["--model", "tests.tune.tiny:no_conv3"],
            "pattune: error: --model 'tests.tune.tiny:no_conv3' has no 3x3 conv layer",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    args = tune_args(tmp_path, storage=f"sqlite:///{tmp_path / 'b.db'}") + extra
    assert one_line(pattune(*args)).startswith(message)


def test_corrupt_space_file_and_empty_inventory(tmp_path: Path) -> None:
    base = tune_args(tmp_path, storage=f"sqlite:///{tmp_path / 'b.db'}")
    bad = tmp_path / "bad.toml"
    bad.write_text("[kernel\nbudget=")
    args = [*base, "--space", str(bad)]
    assert one_line(pattune(*args)).startswith(
        f"pattune: error: space file {bad} is not valid TOML"
    )
    empty = tmp_path / "inv.toml"
    empty.write_text("")
    args = [*base, "--device-type", "phone", "--inventory", str(empty)]
    assert one_line(pattune(*args)).startswith(
        f"pattune: error: inventory {empty} lists no devices"
    )


def test_export_of_unknown_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'n.db'}"
    # Read-only commands on a database that is not there: one line, and no file made.
    for cmd in (["export", "--out", str(tmp_path / "o")], ["status"]):
        msg = one_line(pattune(*cmd, "--storage", storage, "--study", "nope"))
        assert msg == (
            f"pattune: error: --storage {storage}: the database file {tmp_path / 'n.db'} does "
            "not exist; check the URL (this command only reads a study)"
        )
    assert not (tmp_path / "n.db").exists() and not (tmp_path / "o").exists()
    from autotune.records import RecordsDB

    RecordsDB(storage).dispose()
    msg = one_line(
        pattune("export", "--storage", storage, "--study", "nope", "--out", str(tmp_path / "o"))
    )
    assert msg == (
        f"pattune: error: no study named 'nope' in {storage}: check --study and --storage"
    )
    assert not (tmp_path / "o").exists()


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    storage = f"sqlite:///{db}"
    # 8 trials: enough left after the 2nd measurement that the run is still going
    # when the interrupt lands, even on a loaded machine.
    args = tune_args(tmp_path, storage=storage, study="ctrlc", trials=8)
    proc = _start_and_wait(args, db, tmp_path / "first.log", 2)
    assert proc.poll() is None, "the tuner finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    log = (tmp_path / "first.log").read_text()
    assert "stopped; nothing measured is lost. Run the same command to resume." in log
    eng = sa.create_engine(storage)
    with eng.connect() as c:
        claimed = c.execute(
            sa.text("SELECT count(*) FROM pt_measurements WHERE status = 'claimed'")
        ).scalar()
    eng.dispose()
    assert claimed == 0  # its unfinished claims were released
    before = _done_rows(db)
    assert pattune(*args).returncode == 0
    after = _done_rows(db)
    assert {i: after[i] for i in before} == before
    study = optuna.load_study(study_name="ctrlc", storage=storage)
    states = [t.state for t in study.get_trials()]
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 8 - states.count(
        optuna.trial.TrialState.FAIL
    )
    assert optuna.trial.TrialState.RUNNING not in states
