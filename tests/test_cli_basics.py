"""The CLI's error boundary: user errors are one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pattune", *args], capture_output=True, text=True, timeout=120
    )


def test_unknown_command_is_one_line_exit_2() -> None:
    r = run("no-such-command")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["pattune: error: No such command 'no-such-command'."]


def test_help_exits_0() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert "bench" in r.stdout
