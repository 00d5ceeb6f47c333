"""What an unattended ``pattune tune`` writes: a line per trial in a log, a live table on a
terminal, the study's state on resume, rounded figures, and -v/-q on every command.

Real runs of the tiny model on the local device (gcc builds, real measurements).
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.tune.support import ROOT, env, pattune, tune_args

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
NUM = r"[0-9]+(?:\.[0-9]+)?"
TRIAL = re.compile(
    rf"^{STAMP} trial (\d+) complete: K \d+, rates (?:\S+\*\d+ ?)+ \| latency ({NUM}) ms, "
    rf"accuracy ({NUM}) \| study best ({NUM}) ms, ({NUM}) \| measured \d+, reused \d+, "
    rf"failed \d+ \| (\d+)/(\d+) trials, ETA (?:-|\d+ s|{NUM} min|{NUM} h)$")


def _figures(text: str) -> list[str]:
    return re.findall(r"\d+\.\d+", text)


def _digits(figure: str) -> int:
    return len(figure.replace(".", "").lstrip("0"))


pytestmark = pytest.mark.xdist_group("tune-logs")


def test_a_log_gets_a_line_per_trial_and_a_resume_states_the_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    r = pattune(*tune_args(tmp_path, storage=storage, trials=3),
                "--json-out", str(tmp_path / "s1.json"))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert re.match(rf"^{STAMP} study e2e: new, 3 trials to run", lines[0]), lines[0]
    trials = [m for line in lines if (m := TRIAL.match(line))]
    assert [int(m.group(1)) for m in trials] == [0, 1, 2], r.stderr
    assert [int(m.group(6)) for m in trials] == [1, 2, 3]
    lats = [float(m.group(2)) for m in trials]
    # the study's best after each trial is the best so far, as printed
    assert [float(m.group(4)) for m in trials] == [min(lats[: i + 1]) for i in range(3)]
    assert "[I " not in r.stderr, "Optuna's INFO lines belong to -v"
    closing = lines[-1]
    assert closing.startswith("pattune: 3 trials this run"), closing
    best = json.loads((tmp_path / "s1.json").read_text())["best_latency_ms"]
    assert f"study best latency {best:.4g} ms" in closing, closing
    assert all(_digits(f) <= 5 for f in _figures(closing.split("Export")[0])), closing

    # Resumed, with -v after the command: the study's state and best come first, the
    # closing line gives the study's best (not only this run's), Optuna's INFO shows.
    r = pattune(*tune_args(tmp_path, storage=storage, trials=4), "-v",
                "--json-out", str(tmp_path / "s2.json"))
    assert r.returncode == 0, r.stderr
    start = next(x for x in r.stderr.splitlines() if " study e2e: " in x)
    assert f"resumed with 3/4 trials finished; best latency {min(lats):.4g} ms" in start
    assert "Using an existing study" in r.stderr
    s2 = json.loads((tmp_path / "s2.json").read_text())
    assert s2["schema"] == "pattune.tune_summary" and s2["schema_version"] == 1
    # the log prints 4 significant digits; the JSON has the full figure
    assert s2["trials_this_run"] == 1 and s2["best_latency_ms"] <= min(lats) * (1 + 1e-3)
    assert r.stderr.splitlines()[-1].startswith("pattune: 1 trials this run")
    assert f"study best latency {s2['best_latency_ms']:.4g} ms" in r.stderr.splitlines()[-1]

    # -q on the group: nothing on stderr; --json: the summary alone on stdout.
    r = pattune("-q", *tune_args(tmp_path, storage=storage, trials=4), "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "pattune.tune_summary" and doc["trials_this_run"] == 0

    # The documented fallback still sets the logging level.
    r = subprocess.run([sys.executable, "-m", "pattune", *tune_args(tmp_path, storage=storage,
                        trials=4)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**env(), "PATTUNE_LOG_LEVEL": "INFO"})
    assert r.returncode == 0 and "Using an existing study" in r.stderr, r.stderr


def test_a_terminal_gets_the_live_table_not_log_lines(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    os.set_blocking(master, True)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    p = subprocess.run([sys.executable, "-m", "pattune",
                        *tune_args(tmp_path, storage=storage, trials=2)],
                       stdout=subprocess.PIPE, stderr=slave, cwd=ROOT, timeout=600,
                       env={**env(), "COLUMNS": "120", "TERM": "xterm"}, check=False)
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert p.returncode == 0, screen[-2000:]
    assert "best latency" in screen and "configs measured" in screen, screen[-2000:]
    assert not re.search(r"trial 0 complete: K", screen), "log lines are for logs"
    assert "study best latency" in screen  # the closing line


def test_quiet_and_verbose_on_every_command() -> None:
    """Each command's --help lists -v and -q; the group takes them too."""
    for cmd in (["tune"], ["status"], ["export"], ["prune"], ["patterns"], ["record"],
                ["measure"], ["devices", "list"], ["devices", "check"], ["devices", "trust"],
                ["devices", "clean"], ["bench", "accuracy"], ["bench", "kernels"],
                ["bench", "farm"], ["bench", "search"], ["dashboard"],
                ["measurements"]):
        r = pattune(*cmd, "--help", timeout=120)
        assert r.returncode == 0, (cmd, r.stderr)
        assert "--verbose" in r.stdout and "-q" in r.stdout, (cmd, r.stdout[-800:])
    r = pattune("--help")
    assert "--verbose" in r.stdout and "--version" in r.stdout
    r = pattune("--version")
    assert r.returncode == 0 and re.fullmatch(r"pattune \d+\.\d+\.\d+\n", r.stdout)
