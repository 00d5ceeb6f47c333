"""Every subcommand against bad input: one line, non-zero exit, no traceback, no password.

The cases (tests/cli_cases.py, well over 150) cover numbers (NaN, infinity,
negatives), files that are missing, folders, devices (``/dev/zero``), garbage or
not writable, bad inventories and jobs files, storage URLs that cannot be used
(each holding a password), and names and choices that do not exist. They run
in-process through the CLI's ``main`` (the same entry point as the console
script, one import of torch for all) with a time limit each: a case that starts
real work on bad input fails the test. A few run as real processes as well, to
see what a terminal sees.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pattune.cli._app import main
from tests.cli_cases import PASSWORD, cases, expand, make_files

ROOT = Path(__file__).resolve().parents[1]
CASES = cases()
#: Seconds a bad-input case may take: enough to import a model, far from doing work.
LIMIT_S = 60


class _TooSlow(BaseException):
    """Raised by the alarm: the CLI's boundary catches Exception, not this."""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad-inputs")
    make_files(d)
    return d


@contextlib.contextmanager
def _limit(seconds: int) -> Iterator[None]:
    def ring(_sig: int, _frame: object) -> None:
        raise _TooSlow

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    """``pattune *argv`` through the console script's ``main``: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # so main's logging writes to this case's stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _limit(LIMIT_S):
            code = main(argv)
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:] = saved
    return code, out.getvalue(), err.getvalue()


def check(code: int, stdout: str, stderr: str, fragment: str, scratch: Path) -> str:
    """The rules of every case; returns the error line."""
    everything = stdout + stderr
    assert code != 0, f"exit 0 on bad input; stdout: {stdout[-500:]}"
    assert "Traceback" not in everything, everything[-3000:]
    assert PASSWORD not in everything, "a password was shown"
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr[-2000:]}"
    line = lines[0]
    assert line.startswith("pattune: error: "), line
    assert "internal error" not in line, line
    want = fragment.replace("{d}", str(scratch))
    # a flag may be named as the API's keyword (--max-cv is max_cv=), as the docs promise
    keyword = want.lstrip("-").replace("-", "_") if want.startswith("--") else want
    assert want in line or keyword in line, (fragment, line)
    return line


@pytest.mark.parametrize(("argv", "fragment"), [(a, f) for _, a, f in CASES],
                         ids=[i for i, _, _ in CASES])
def test_bad_input(argv: list[str], fragment: str, scratch: Path) -> None:
    t0 = time.monotonic()
    try:
        code, stdout, stderr = run_in_process(expand(argv, scratch))
    except _TooSlow:
        pytest.fail(f"still running after {LIMIT_S} s: bad input started real work")
    made = (scratch / "t.db").exists()
    (scratch / "t.db").unlink(missing_ok=True)
    check(code, stdout, stderr, fragment, scratch)
    assert time.monotonic() - t0 < LIMIT_S
    assert not made, "bad input created a database"
    assert not Path("/tmp/pattune-pwned").exists()


def test_the_table_is_large_and_covers_every_subcommand() -> None:
    assert len(CASES) >= 150
    ids = {i for i, _, _ in CASES}
    assert len(ids) == len(CASES), "case ids must be unique"
    commands = {" ".join(a[:2]) if a[0] in ("devices", "bench") else a[0] for _, a, _ in CASES}
    assert commands >= {
        "prune", "patterns", "record", "tune", "status", "export", "measure",
        "devices list", "devices check", "devices trust", "devices clean",
        "bench accuracy", "bench kernels", "bench farm", "bench search", "dashboard", "measurements",
    }


@pytest.mark.parametrize("case", ["measure-jobs-timeout_1e999", "status-pg_down",
                                  "devices-list-inv-device_string", "tune-space-dir"])
def test_as_a_real_process(case: str, scratch: Path) -> None:
    [(argv, fragment)] = [(a, f) for i, a, f in CASES if i == case]
    r = subprocess.run([sys.executable, "-m", "pattune", *expand(argv, scratch)],
                       capture_output=True, text=True, timeout=180, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    check(r.returncode, r.stdout, r.stderr, fragment, scratch)


if __name__ == "__main__":  # discovery: python -m tests.test_cli_bad_inputs [filter]
    import tempfile

    d = Path(tempfile.mkdtemp())
    make_files(d)
    want = sys.argv[1] if len(sys.argv) > 1 else ""
    bad = 0
    for cid, argv, fragment in CASES:
        if want not in cid:
            continue
        t0 = time.monotonic()
        try:
            code, so, se = run_in_process(expand(argv, d))
            check(code, so, se, fragment, d)
            (d / "t.db").unlink(missing_ok=True)
        except (AssertionError, _TooSlow) as exc:
            bad += 1
            print(f"FAIL {cid} ({time.monotonic() - t0:.1f}s): {str(exc)[:400]}")
    print(f"{bad} failing of {len(CASES)}")
