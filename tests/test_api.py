"""The Python API (``import pattune``): tune and export in a few lines, as the docs show it.

Everything is real: the tiny model, gcc builds, measurements on this machine,
SQLite records. The CLI tests (``test_tune_cli.py``, ``test_farm_cli.py``) drive
the same functions through ``pattune`` in a subprocess.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pattune
from autotune.records import RecordsDB
from tests.farm.programs import self_timed
from tests.tune.support import ROOT, SPACE, env


def test_tune_and_export_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the snippet's relative paths land in tmp_path
    Path("space.toml").write_text(SPACE)
    # docs/tuning.md, "From Python", shows the lines from here to the end, with the imports.
    summary = pattune.tune(
        model="tests.tune.tiny:tiny_bn", input_shape=(1, 1, 12, 12), space="space.toml",
        trials=3, storage="sqlite:///tiny.db", study="tiny", work_dir="work",
    )
    assert summary.trials_finished == 3 and not summary.interrupted
    best = pattune.export(out="out/tiny", storage="sqlite:///tiny.db", study="tiny")
    config = json.loads(best.config_json.read_text())
    assert best.trial == config["trial"] and best.accuracy == config["accuracy"]
    assert best.latency_ms == config["total_latency_ms"] == config["network"]["end_to_end_ms"]
    assert best.default_latency_ms == config["default_total_latency_ms"]
    assert all(p.exists() for p in (best.checkpoint, best.report, best.model_dir, *best.weights))


def _docs_snippet() -> list[str]:
    text = (ROOT / "docs" / "tuning.md").read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1).splitlines()  # type: ignore[union-attr]


def test_the_docs_show_the_python_test() -> None:
    snippet = _docs_snippet()
    assert len(snippet) <= 15
    body = inspect.getsource(test_tune_and_export_from_python).splitlines()
    start = next(i for i, line in enumerate(body) if "shows the lines from here" in line) + 1
    shown = [line[4:] for line in body[start:]]
    code = [line for line in snippet if line and not line.startswith("import ")]
    assert code == shown
    assert "import json" in snippet and "import pattune" in snippet


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trials": 0}, "--trials must be >= 1; got 0"),
        ({"objective": "fast"}, "--objective must be one of pareto, latency; got 'fast'"),
        ({"strategy": "rr"}, "--strategy must be one of "),
        (
            {"objective": "latency"},
            "--objective latency needs --max-accuracy-drop D (e.g. 0.01 for one point)",
        ),
        (
            {"timeout": "soon"},
            "--timeout must look like 8h, 30m, 90s, 1h30m or a number of seconds; got 'soon'",
        ),
        (
            {"device_type": "pixel"},
            "device type 'pixel' needs an inventory: pass --inventory FILE "
            "(or use --device-type local)",
        ),
    ],
)
def test_bad_arguments_raise_the_cli_messages(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(pattune.UserInputError) as info:
        pattune.tune(
            model="tests.tune.tiny:tiny", input_shape="1,1,12,12",
            storage=f"sqlite:///{tmp_path / 'b.db'}", work_dir=tmp_path / "w", **kwargs,  # type: ignore[arg-type]
        )
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError) and isinstance(info.value, pattune.PattuneError)


def test_timeout_takes_seconds_or_the_flags_text() -> None:
    from pattune._args import parse_duration

    assert parse_duration(90) == 90.0
    assert parse_duration("90") == 90.0
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration(None) is None
    with pytest.raises(pattune.UserInputError, match="--timeout must be >= 0 seconds; got -1"):
        parse_duration(-1)


def test_status_of_an_unknown_study_names_the_studies_there(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    RecordsDB(storage).dispose()  # a database, but no study in it
    with pytest.raises(pattune.UserInputError) as info:
        pattune.status(storage=storage, study="nope")
    assert str(info.value) == f"no study named 'nope' in {storage}; studies there: none"


def test_prune_from_python() -> None:
    result = pattune.prune(
        model="tests.tune.tiny:tiny_bn", input_shape=(1, 1, 12, 12), patterns=2,
        connectivity="2x", layer_rate={"5": "1x"},
    )
    assert result.method == "oneshot" and result.out is None
    assert len(result.pattern_set) == 2
    kept = {r.name: r.kernels_kept / r.kernels_total for r in result.report.layers}
    assert kept == {"0": 1.0, "3": 0.5, "5": 1.0}  # the first conv stays whole (PatDNN)
    assert result.to_dict()["metrics"]["method"] == "oneshot"
    with pytest.raises(pattune.UserInputError, match="--layer-rate must look like NAME=RATE"):
        pattune.prune(model="tests.tune.tiny:tiny_bn", input_shape="1,1,12,12",
                      layer_rate=["5:1x"])


def test_measure_from_python_then_resume(tmp_path: Path) -> None:
    art = self_timed(str(tmp_path / "prog"))
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(
        json.dumps({"job_id": f"job-{i}", "artifact": art.to_dict(), "timeout_s": 20}) + "\n"
        for i in range(3)
    ))  # fmt: skip
    args = {"jobs": jobs, "out": tmp_path / "r.jsonl", "db": f"sqlite:///{tmp_path / 'l.db'}",
            "min_total_s": 0.0, "min_repeats": 3}  # fmt: skip
    events: list[pattune.MeasureProgress] = []
    result = pattune.measure(**args, progress=events.append)  # type: ignore[arg-type]
    assert (result.jobs, result.already_done, len(result.measured)) == (3, 0, 3)
    assert result.statuses == {"ok": 3} and result.by_device == {"local": 3}
    assert [m.job_id for m in result.measured] == ["job-0", "job-1", "job-2"]
    assert events[0].to_measure == 3 and events[0].last is None
    assert sorted(e.last.job_id for e in events if e.last is not None) == [
        "job-0", "job-1", "job-2"]  # fmt: skip
    again = pattune.measure(**args)  # type: ignore[arg-type]
    assert (again.already_done, again.measured, again.statuses) == (3, (), {"ok": 3})


def test_import_pattune_is_light() -> None:
    code = "import sys, pattune; print(sorted({'torch', 'optuna'} & set(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env(), cwd=ROOT, timeout=120, check=True)  # fmt: skip
    assert r.stdout.strip() == "[]"
    assert set(pattune.__all__) <= set(dir(pattune))


def test_every_package_ships_py_typed() -> None:
    # PEP 561: the marker, and package data that puts it in the wheel (checked by hand
    # with `pip wheel`; building one here would write build/ into the source tree).
    for package in ("pattune", "autotune", "search_spaces", "device_farm", "codegen",
                    "pattune_common", "benchmarks"):  # fmt: skip
        assert (ROOT / package / "py.typed").is_file(), package
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()
