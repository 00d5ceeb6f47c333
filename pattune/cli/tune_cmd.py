"""``pattune tune``, ``pattune status`` and ``pattune export``: the product's main job."""

from __future__ import annotations

import dataclasses
import json
import re
import resource
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pattune.cli._app import app, fail
from pattune_common import DEFAULT_STORAGE

_out = Console()
_err = Console(stderr=True)

StorageOpt = Annotated[
    str, typer.Option("--storage", help="Study + records URL: sqlite:///FILE or postgresql://...")
]
StudyOpt = Annotated[str, typer.Option("--study", help="Study name; the same name resumes it.")]


def parse_duration(text: str | None) -> float | None:
    """``"8h"``, ``"30m"``, ``"90s"``, ``"1h30m"`` or plain seconds -> seconds (None stays None)."""
    if text is None:
        return None
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        fail(f"--timeout must look like 8h, 30m, 90s, 1h30m or a number of seconds; got {text!r}")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@app.command("tune")
def tune(
    model: Annotated[
        str, typer.Option(help="example, a built-in name, module:factory or a TorchScript file.")
    ] = "example",
    device_type: Annotated[
        str, typer.Option("--device-type", help="Device type to tune for.")
    ] = "local",
    inventory: Annotated[str | None, typer.Option(help="Inventory TOML of SSH devices.")] = None,
    trials: Annotated[int, typer.Option(help="Total outer trials of the study.")] = 30,
    timeout: Annotated[
        str | None, typer.Option(help="Stop after this long (8h, 30m, ...).")
    ] = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    study: StudyOpt = "pattune",
    objective: Annotated[
        str,
        typer.Option(
            help="pareto (latency and accuracy) or latency (constrained by --max-accuracy-drop)."
        ),
    ] = "pareto",
    max_accuracy_drop: Annotated[
        float | None, typer.Option(help="Allowed accuracy drop (0.01 = 1 point).")
    ] = None,
    space: Annotated[
        str | None, typer.Option(help="Search-space TOML (see examples/space.toml).")
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="Kernel search: filtered, tpe or random.")
    ] = "filtered",
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="N,C,H,W of a user model.")
    ] = None,
    evaluate: Annotated[
        str | None, typer.Option(help="module:function(model) -> accuracy.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Compile target name or TOML file.")] = None,
    estimate_samples: Annotated[
        int, typer.Option(help="Fine-tune examples per accuracy estimate.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of every sampler.")] = 0,
    work_dir: Annotated[str | None, typer.Option(help="Scratch directory.")] = None,
    summary_json: Annotated[
        Path | None,
        typer.Option("--summary-json", help="Write a run summary (timings, overhead, RSS) here."),
    ] = None,
) -> None:
    """Tune pattern set, per-layer connectivity and kernel code for a device type.

    Re-running the same command resumes the study; Ctrl-C stops cleanly.
    """
    from autotune.session import TuneOptions, TuneSession
    from autotune.strategies import strategy_names
    from autotune.study import OBJECTIVES, OuterStudy, TrialsFailing
    from autotune.tuner import Tuner, TunerStats

    if trials < 1:
        fail(f"--trials must be >= 1; got {trials}")
    if objective not in OBJECTIVES:
        fail(f"--objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if strategy not in strategy_names():
        fail(f"--strategy must be one of {', '.join(strategy_names())}; got {strategy!r}")
    if objective == "latency" and max_accuracy_drop is None:
        fail("--objective latency needs --max-accuracy-drop D (e.g. 0.01 for one point)")
    timeout_s = parse_duration(timeout)
    options = TuneOptions(
        model=model,
        input_shape=input_shape,
        evaluate=evaluate,
        device_type=device_type,
        inventory=inventory,
        target=target,
        storage=storage,
        study=study,
        space=space,
        strategy=strategy,
        estimate_samples=estimate_samples,
        seed=seed,
        work_dir=work_dir,
    )
    t_start = time.perf_counter()
    with _err.status(f"preparing {model} for device type {device_type} ..."):
        session = TuneSession(options)
        dense = session.accuracy.dense()
    outer = OuterStudy(
        storage=session.records.url,
        study_name=study,
        space=session.space,
        layers=session.rate_layers,
        select_natural=session.natural_set,
        records=session.records,
        objective=objective,
        max_accuracy_drop=max_accuracy_drop,
        dense_accuracy=dense,
        seed=seed,
    )
    stored = {k: v for k, v in dataclasses.asdict(options).items() if k != "extra"}
    outer.study.set_user_attr("pattune:options", stored)
    outer.study.set_user_attr("pattune:dense_accuracy", dense)
    session.records.start_heartbeat()
    rss_marks: dict[str, float] = {}
    started_with = outer.finished_trials()
    trial_times: list[float] = []

    def view(st: TunerStats) -> Table:
        done = outer.finished_trials()
        table = Table.grid(padding=(0, 2))
        eta = "-"
        if trial_times and done < trials:
            eta = f"{(trials - done) * sum(trial_times) / len(trial_times) / 60:.1f} min"
        table.add_row("trials", f"{done}/{trials}", "ETA", eta)
        table.add_row("configs measured", str(st.measured), "reused", str(st.reused))
        table.add_row("filtered by cost model", str(st.filtered), "failed", str(st.failed))
        best = "-" if st.best_latency_ms is None else f"{st.best_latency_ms:.3f} ms"
        acc = "-" if st.best_accuracy is None else f"{st.best_accuracy:.4f}"
        table.add_row("best latency", best, "best accuracy", f"{acc} (dense {dense:.4f})")
        return table

    live = Live(console=_err, refresh_per_second=4, transient=False)

    def progress(st: TunerStats) -> None:
        for mark in (30, 300):
            if st.measured >= mark and f"after_{mark}" not in rss_marks:
                rss_marks[f"after_{mark}"] = _rss_mib()
        live.update(view(st))

    known = [
        (t.user_attrs["pattune:latency_ms"], t.user_attrs["pattune:accuracy"])
        for t in outer.study.get_trials(deepcopy=False)
        if "pattune:latency_ms" in t.user_attrs
    ]
    tuner = Tuner(session, on_progress=progress, known=known)
    setup_s = time.perf_counter() - t_start
    last = [time.perf_counter()]

    def on_trial(_n: int, _o: object) -> None:
        now = time.perf_counter()
        trial_times.append(now - last[0])
        last[0] = now
        live.update(view(tuner.stats))

    def on_term(_sig: int, _frm: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    interrupted = False
    failing = ""
    try:
        with live:
            live.update(view(tuner.stats))
            outer.run(tuner.evaluate, n_trials=trials, timeout_s=timeout_s, on_trial=on_trial)
    except KeyboardInterrupt:
        interrupted = True
    except TrialsFailing as exc:
        failing = str(exc)
    finally:
        signal.signal(signal.SIGTERM, old)
        session.records.release_claims()
        session.records.stop_heartbeat()
    if not _err.is_terminal:
        _err.print()  # the last live frame ends without a newline when stderr is a file
    wall = time.perf_counter() - t_start
    ms = tuner.measurer.stats
    st = tuner.stats
    device_s = ms.build_s + ms.verify_s + ms.measure_s
    untouched = tuner.untouched_measured
    summary: dict[str, Any] = {
        "study": study,
        "trials_finished": outer.finished_trials(),
        "trials_this_run": outer.finished_trials() - started_with,
        "wall_s": wall,
        "setup_s": setup_s,
        "configs_measured": st.measured,
        "configs_reused": st.reused,
        "configs_filtered": st.filtered,
        "configs_failed": st.failed,
        "build_s": ms.build_s,
        "verify_s": ms.verify_s,
        "measure_s": ms.measure_s,
        "accuracy_s": st.accuracy_s,
        "cost_model_train_s": tuner.models.train_s,
        # Tuner overhead: everything in the tuning loop that is not building, verifying,
        # measuring or estimating accuracy (sampling, cost model, database writes).
        "overhead_s": wall - setup_s - device_s - st.accuracy_s,
        "overhead_fraction": (wall - setup_s - device_s - st.accuracy_s) / (wall - setup_s)
        if wall > setup_s
        else 0.0,
        "peak_rss_mib": _rss_mib(),
        "rss_mib": rss_marks,
        "best_latency_ms": st.best_latency_ms,
        # What the untouched-layer time is (autotune.untouched) and at how many torch threads.
        "untouched_ms": None if untouched is None else untouched.ms,
        "untouched_method": None if untouched is None else untouched.method,
        "untouched_torch_threads": None if untouched is None else untouched.threads,
        "best_accuracy": st.best_accuracy,
        "dense_accuracy": dense,
        "interrupted": interrupted,
    }
    if summary_json:
        summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    if interrupted:
        _err.print("pattune: stopped; nothing measured is lost. Run the same command to resume.")
        raise typer.Exit(130)
    if failing:
        _err.print(f"pattune: tuning stopped: {failing}")
        raise typer.Exit(1)
    _err.print(
        f"pattune: {summary['trials_this_run']} trials in {wall:.0f} s; "
        f"best latency {st.best_latency_ms} ms. Export with: pattune export --study "
        f"{study} --storage {storage} --out DIR"
    )


@app.command("status")
def status(storage: StorageOpt = DEFAULT_STORAGE, study: StudyOpt = "pattune") -> None:
    """Summarise a study: trials by state, best trials, measurements recorded."""
    import optuna

    from autotune.records import RecordsDB, redact_url

    records = RecordsDB(storage)
    try:
        s = optuna.load_study(study_name=study, storage=records.url)
    except KeyError:
        names = [x.study_name for x in optuna.get_all_study_summaries(records.url)]
        fail(
            f"no study named {study!r} in {redact_url(storage)}; studies there: "
            f"{', '.join(names) or 'none'}"
        )
    trials = s.get_trials(deepcopy=False)
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t.state.name.lower()] = by_state.get(t.state.name.lower(), 0) + 1
    table = Table("trial", "latency (ms)", "accuracy", "patterns", title=f"study {study}: best")
    try:
        best = s.best_trials
    except ValueError:
        best = []
    for t in sorted(best, key=lambda t: t.values[0])[:10]:
        cand = t.user_attrs.get("pattune:candidate", {})
        table.add_row(
            str(t.number),
            f"{t.values[0]:.4f}",
            f"{t.user_attrs.get('pattune:accuracy', float('nan')):.4f}",
            str(len(cand.get("pattern_set", {}).get("patterns", []))),
        )
    _out.print(f"trials: {', '.join(f'{k} {v}' for k, v in sorted(by_state.items())) or 'none'}")
    _out.print(f"measurements: {records.counts() or 'none'}")
    _out.print(table)


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the export to.")],
    storage: StorageOpt = DEFAULT_STORAGE,
    study: StudyOpt = "pattune",
    trial: Annotated[
        int | None, typer.Option(help="Export this trial instead of the best.")
    ] = None,
    max_accuracy_drop: Annotated[
        float, typer.Option(help="Pareto studies: pick the fastest trial within this drop.")
    ] = 0.01,
) -> None:
    """Write the best configuration: config.json, kernels + Makefile, weights, checkpoint, report."""
    import optuna

    from autotune.export import export_study
    from autotune.records import RecordsDB, redact_url
    from autotune.session import TuneOptions, TuneSession

    records = RecordsDB(storage)
    try:
        s = optuna.load_study(study_name=study, storage=records.url)
    except KeyError:
        fail(f"no study named {study!r} in {redact_url(storage)}: check --study and --storage")
    stored = dict(s.user_attrs.get("pattune:options", {}))
    if not stored:
        fail(f"study {study!r} was not created by pattune tune (no stored options)")
    # The export needs the model, target and records, not the search space: the space
    # file may be gone from where the tuning run read it.
    stored.update(storage=storage, study=study, space=None)
    session = TuneSession(TuneOptions(**stored))
    path = export_study(session, out=out, trial=trial, max_drop=max_accuracy_drop).config_json
    cfg = json.loads(path.read_text())
    _out.print(
        f"exported trial {cfg['trial']} to {out}: {cfg['total_latency_ms']:.4f} ms "
        f"(default configs {cfg['default_total_latency_ms']:.4f} ms), accuracy "
        f"{cfg['accuracy']:.4f}"
    )
