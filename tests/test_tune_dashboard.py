"""A study as optuna-dashboard shows it, checked through the dashboard's own HTTP API.

A real tune of the tiny model, then ``pattune dashboard`` (a real optuna-dashboard
server) on its storage: the objectives carry their metric names, K is an integer
parameter and the rates are keep fractions (numbers), and the trial attributes are
short scalars.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.harness.sshd import free_port
from tests.tune.support import ROOT, env, pattune, tune_args

#: The longest trial attribute value the dashboard's trial page should have to show.
MAX_ATTR_CHARS = 200


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 (loopback)
        return json.loads(r.read())


def _serve(storage: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pattune", "dashboard", "-s", storage,
                             "--port", str(port)], cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(proc: subprocess.Popen[bytes], url: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        try:
            return _get(url)
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the dashboard did not answer"
            time.sleep(0.5)


def test_the_dashboard_shows_metric_names_and_numeric_parameters(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    r = pattune(*tune_args(tmp_path, storage=storage, model="tiny_bn", trials=2), "-q")
    assert r.returncode == 0, r.stderr
    port = free_port()
    proc = _serve(storage, port)
    try:
        base = f"http://127.0.0.1:{port}/api"
        [summary] = _wait(proc, f"{base}/studies")["study_summaries"]
        assert summary["study_name"] == "e2e"
        study = _get(f"{base}/studies/{summary['study_id']}?after=0")
        assert study["objective_names"] == ["latency_ms", "accuracy"]
        space = {p["name"]: p["distribution"] for p in study["union_search_space"]}
        # K choices [2, 4] are evenly spaced: an integer parameter with step 2
        assert space["k"] == {"type": "IntDistribution", "low": 2, "high": 4, "step": 2,
                              "log": False}
        assert set(space) == {"k", "keep:3", "keep:5"}, set(space)
        for name in ("keep:3", "keep:5"):
            choices = space[name]["choices"]
            assert [float(c["value"]) for c in choices] == [0.5, 1.0]
            assert all(c["pytype"] == "<class 'float'>" for c in choices)
        assert len(study["trials"]) == 2
        for t in study["trials"]:
            assert t["state"] == "Complete"
            long = {a["key"]: len(a["value"]) for a in t["user_attrs"]
                    if len(a["value"]) > MAX_ATTR_CHARS}
            assert not long, f"trial attributes too long for the trial page: {long}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_without_a_database_is_one_line(tmp_path: Path) -> None:
    r = pattune("dashboard", "-s", f"sqlite:///{tmp_path / 'none.db'}", "--port", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("pattune: error: ")
    assert os.path.exists(tmp_path) and not (tmp_path / "none.db").exists()
