"""Helpers for the tuner's end-to-end tests: run the real CLI, read the records."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SPACE = """
[patterns]
k = [2, 4]
[connectivity]
rates = ["1x", "2x"]
[kernel]
budget = 3
refine_budget = 5
candidates_per_measure = 4
fixed = { threads = 1 }
"""


def write_space(tmp: Path) -> str:
    path = tmp / "space.toml"
    path.write_text(SPACE)
    return str(path)


def tune_args(
    tmp: Path, *, storage: str, study: str = "e2e", trials: int = 3, model: str = "tiny"
) -> list[str]:
    return [
        "tune",
        "--model",
        f"tests.tune.tiny:{model}",
        "--input-shape",
        "1,1,12,12",
        "--trials",
        str(trials),
        "--space",
        write_space(tmp),
        "--storage",
        storage,
        "--study",
        study,
        "--work-dir",
        str(tmp / "work"),
    ]


def pattune(*args: str, timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pattune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env(),
    )


def _default_sigint() -> None:
    # A test run started in the background inherits SIGINT ignored (as shells do for
    # background jobs), and Python then installs no KeyboardInterrupt handler; the
    # tuner under test must see Ctrl-C as a terminal user would send it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen(*args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pattune", *args],
        cwd=ROOT,
        env=env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=_default_sigint,  # noqa: PLW1509 (only resets one signal disposition)
    )


def env() -> dict[str, str]:
    import os

    e = dict(os.environ)
    e["OMP_WAIT_POLICY"] = "passive"
    e["PYTHONPATH"] = str(ROOT)
    return e
