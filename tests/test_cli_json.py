"""One JSON convention on every reporting command: ``--json`` prints one document on
stdout, ``--json-out PATH`` writes it; each document names its schema and version; old
flags still work with a warning; tables are plain rows in a pipe; shell completion.

Real runs: the tiny model tuned and exported on this machine, real measurements.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from pattune.cli._common import SCHEMAS
from tests.farm.programs import self_timed
from tests.tune.support import ROOT, env, pattune, tune_args

DOCS = ROOT / "docs" / "cli.md"


def _doc(text: str, schema: str) -> dict:
    doc = json.loads(text)
    assert (doc["schema"], doc["schema_version"]) == (schema, SCHEMAS[schema])
    return doc


def test_status_and_export_print_and_write_json(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    r = pattune(*tune_args(tmp_path, storage=storage, trials=2), "-q")
    assert r.returncode == 0, r.stderr
    r = pattune("status", "-s", storage, "--study", "e2e", "--json",
                "--json-out", str(tmp_path / "st.json"))
    assert r.returncode == 0, r.stderr
    doc = _doc(r.stdout, "pattune.status")
    assert doc == json.loads((tmp_path / "st.json").read_text())
    assert doc["trials"] == {"complete": 2} and doc["measurements"]["done"] > 0
    assert doc["best"] and {"number", "latency_ms", "accuracy", "patterns"} <= set(doc["best"][0])
    # Piped, the human form is plain rows: a dict is never printed, nothing is cut.
    r = pattune("status", "-s", storage, "--study", "e2e")
    assert "{" not in r.stdout and "…" not in r.stdout
    assert "trials complete 2" in r.stdout
    assert re.search(r"^trial\tlatency \(ms\)\taccuracy\tpatterns$", r.stdout, re.M)
    best = doc["best"][0]
    assert re.search(rf"^{best['number']}\t{best['latency_ms']:.4g}\t", r.stdout, re.M)

    # The kernel-level measurements behind the trials, as a documented log.
    r = pattune("measurements", "-s", storage, "--json")
    assert r.returncode == 0, r.stderr
    ms = _doc(r.stdout, "pattune.measurements")["measurements"]
    assert len(ms) == doc["measurements"]["done"] and ms
    assert {m["layer"] for m in ms} == {"0", "2", "4"}  # the tiny model's three convs
    assert all(m["status"] == "done" and m["latency_ms"] > 0 and m["config"]["format"]
               for m in ms)
    r = pattune("measurements", "-s", storage, "--status", "failed", "--json")
    assert _doc(r.stdout, "pattune.measurements")["measurements"] == []

    out = tmp_path / "export"
    r = pattune("export", "-s", storage, "--study", "e2e", "-o", str(out), "--retrain", "none",
                "--json")
    assert r.returncode == 0, r.stderr
    ex = _doc(r.stdout, "pattune.export")
    assert Path(ex["config_json"]).is_file() and ex["study"] == "e2e"
    assert ex["latency_ms"] > 0 and all(Path(w).is_file() for w in ex["weights"])


def test_measure_devices_and_prune_json(tmp_path: Path) -> None:
    art = self_timed(str(tmp_path / "prog"))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"job_id": f"j{i}", "artifact": art.to_dict(),
                                        "timeout_s": 20}) + "\n" for i in range(2)))
    r = pattune("measure", "--jobs", str(jobs), "-o", str(tmp_path / "r.jsonl"), "-s",
                f"sqlite:///{tmp_path / 'l.db'}", "--min-total-s", "0", "--json")
    assert r.returncode == 0, r.stderr
    doc = _doc(r.stdout, "pattune.measure_summary")
    assert doc["statuses"] == {"ok": 2} and doc["by_device"] == {"local": 2}
    # piped stderr: one line per job, no progress bar
    assert "measured 2/2: " in r.stderr

    r = pattune("devices", "list", "--json")
    doc = _doc(r.stdout, "pattune.devices_list")
    assert [d["name"] for d in doc["devices"]] == ["local"]

    # the old `prune --json PATH` still writes the file, and says what to use instead
    args = ["prune", "-m", "tests.tune.tiny:tiny_bn", "--input-shape", "1,1,12,12",
            "--method", "oneshot"]
    r = pattune(*args, "--json", str(tmp_path / "old.json"))
    assert r.returncode == 0, r.stderr
    assert _doc((tmp_path / "old.json").read_text(), "pattune.prune")["metrics"]
    assert r.stderr.strip().splitlines()[-1] == (
        "pattune: warning: --json PATH is deprecated; use --json-out PATH (--json alone "
        "prints the JSON on stdout)")
    r = pattune(*args, "--json")
    assert _doc(r.stdout, "pattune.prune")["metrics"]["method"] == "oneshot"
    r = pattune("-q", *args, "--json=" + str(tmp_path / "q.json"))
    assert r.returncode == 0 and r.stderr == "" and (tmp_path / "q.json").is_file()


def test_every_schema_is_documented() -> None:
    text = DOCS.read_text()
    for name, version in SCHEMAS.items():
        assert f"`{name}` (version {version})" in text, name


def test_shell_completion_completes_commands() -> None:
    def complete(words: str, cword: int) -> list[str]:
        r = subprocess.run([sys.executable, "-m", "pattune"], capture_output=True, text=True,
                           timeout=120, cwd=ROOT, check=False,
                           env={**env(), "_PATTUNE_COMPLETE": "complete_bash",
                                "COMP_WORDS": words, "COMP_CWORD": str(cword)})
        assert r.returncode == 0, r.stderr
        return r.stdout.split()

    assert complete("pattune tu", 1) == ["tune"]
    assert complete("pattune devices l", 2) == ["list"]
    assert "--json-out" in complete("pattune status --js", 2)
    r = pattune("--help")
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout


def test_flags_read_the_same_on_every_command() -> None:
    """One name and one short form per meaning (docs/cli.md lists them)."""
    helps = {}
    for cmd in (["tune"], ["status"], ["export"], ["prune"], ["record"], ["measure"],
                ["devices", "list"], ["devices", "check"], ["bench", "kernels"]):
        r = subprocess.run([sys.executable, "-m", "pattune", *cmd, "--help"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT,
                           env={**env(), "COLUMNS": "200"}, check=False)
        helps[" ".join(cmd)] = r.stdout
    pairs = {"--model": "-m", "--out": "-o", "--inventory": "-i", "--device-type": "-t",
             "--storage": "-s", "--patterns": "-k"}
    for cmd, text in helps.items():
        for long, short in pairs.items():
            if re.search(rf"{long}\s", text):
                assert re.search(rf"{long}\s+{short}\s", text), (cmd, long, short)
    for cmd in ("tune", "status", "export", "measure", "devices list", "devices check"):
        assert "--json-out" in helps[cmd] and re.search(r"--json\s", helps[cmd]), cmd
    assert os.path.exists(DOCS)
