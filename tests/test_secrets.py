"""No database password in the database, a log, the terminal or a file (issue 15 item 2).

A real PostgreSQL that requires a password (scram-sha-256) holds the study; the
real CLI tunes, reports and exports with the password in its storage URL, with
debug logging on (SQL statements and their parameters included). The password
must then appear nowhere: not in the database's dump, not on stdout or stderr,
not in the summary JSON nor in any exported file, not in an error message.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from pattune_common.redaction import redact_text, redact_url
from tests.support.pg import PostgresServer, postgres_server
from tests.tune.support import ROOT, env, tune_args

PASSWORD = "Xq7-s3cr3t_pw"


@pytest.fixture(scope="module")
def locked_pg() -> Iterator[PostgresServer]:
    with postgres_server(password=PASSWORD) as server:
        yield server


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["python", "-m", "pattune", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT,
                          env={**env(), "PATTUNE_LOG_LEVEL": "DEBUG"}, check=False)


def _no_password(where: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    assert PASSWORD.encode() not in data, f"the password is in {where}"


def test_no_password_reaches_the_database_logs_terminal_or_files(locked_pg, tmp_path):
    url = locked_pg.create_database("secrets")
    assert PASSWORD in url
    summary = tmp_path / "summary.json"
    r = _cli(*tune_args(tmp_path, storage=url, trials=2), "--summary-json", str(summary))
    assert r.returncode == 0, r.stderr[-3000:]
    assert " DEBUG " in r.stderr  # debug logging was on
    assert "Export with: pattune export --study e2e --storage postgresql+psycopg://" \
           "postgres:***@127.0.0.1:" in r.stderr
    outputs = [("tune's stdout", r.stdout), ("tune's stderr", r.stderr),
               ("the summary", summary.read_bytes())]
    st = _cli("status", "--storage", url, "--study", "e2e")
    assert st.returncode == 0, st.stderr[-2000:]
    out = tmp_path / "export"
    ex = _cli("export", "--storage", url, "--study", "e2e", "--out", str(out))
    assert ex.returncode == 0, ex.stderr[-2000:]
    outputs += [("status", st.stdout + st.stderr), ("export", ex.stdout + ex.stderr)]
    outputs += [(str(p), p.read_bytes()) for p in out.rglob("*") if p.is_file()]
    assert len(outputs) > 10  # config, kernels, weights, checkpoint, report, plots
    bad = _cli("status", "--storage", url, "--study", "nope")
    assert bad.returncode == 2 and "no study named 'nope' in" in bad.stderr
    wrong = url.replace(PASSWORD, PASSWORD + "-wrong")
    denied = _cli("status", "--storage", wrong, "--study", "e2e")
    assert denied.returncode == 2 and "password authentication failed" in denied.stderr
    outputs += [("an error", bad.stderr), ("a refused login", denied.stderr.replace(
        PASSWORD + "-wrong", "WRONG"))]
    assert (PASSWORD + "-wrong") not in denied.stderr
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-p", str(locked_pg.port), "-U", "postgres", "secrets"],
        capture_output=True, check=True, env={**os.environ, "PGPASSWORD": PASSWORD})
    assert b"study_user_attributes" in dump.stdout and b"pt_measurements" in dump.stdout
    outputs.append(("the database", dump.stdout))
    for where, text in outputs:
        _no_password(where, text)


def test_an_older_study_that_stored_the_url_is_scrubbed_on_resume(locked_pg, tmp_path):
    import optuna

    url = locked_pg.create_database("older")
    r = _cli(*tune_args(tmp_path, storage=url, trials=1))
    assert r.returncode == 0, r.stderr[-2000:]
    from autotune.records import RecordsDB

    storage = RecordsDB(url).url
    study = optuna.load_study(study_name="e2e", storage=storage)
    opts = dict(study.user_attrs["pattune:options"])
    study.set_user_attr("pattune:options", {**opts, "storage": url})  # as before the fix
    r = _cli(*tune_args(tmp_path, storage=url, trials=2))
    assert r.returncode == 0, r.stderr[-2000:]
    stored = optuna.load_study(study_name="e2e", storage=storage).user_attrs["pattune:options"]
    assert "storage" not in stored
    _no_password("the resumed study's attributes", repr(stored))


@pytest.mark.parametrize(("url", "secret"), [
    ("postgresql://u:pw1@h/db", "pw1"),
    ("postgresql+psycopg://u:p@ss2@h:5432/db", "ss2"),  # an unescaped '@' in the password
    ("postgresql://u:pw3/with/slash@h/db", "pw3"),
    ("postgresql://u@h/db?password=pw4&sslmode=off", "pw4"),  # libpq reads it here too
    ("u:pw5@h/db", "pw5"),
    ("junk://u:pw6@h", "pw6"),
])
def test_redaction_hides_the_password_however_the_url_is_written(url, secret):
    assert secret not in redact_url(url)
    if "://" in url:  # free text is searched for URLs by their scheme
        assert secret not in redact_text(f"cannot open {url}: refused")
