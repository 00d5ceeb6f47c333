"""``pattune tune``, ``pattune status`` and ``pattune export``: the product's main job.

Each command parses its flags, calls the Python API (:func:`pattune.tune`,
:func:`pattune.status`, :func:`pattune.export`) and renders what it returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pattune.cli._app import app
from pattune_common import DEFAULT_STORAGE, ESTIMATE_SAMPLES

if TYPE_CHECKING:
    from pattune import TuneProgress

_out = Console()
_err = Console(stderr=True)

StorageOpt = Annotated[
    str, typer.Option("--storage", help="Study + records URL: sqlite:///FILE or postgresql://...")
]
StudyOpt = Annotated[str, typer.Option("--study", help="Study name; the same name resumes it.")]


def _view(p: TuneProgress) -> Table:
    """The live table of a running tune."""
    table = Table.grid(padding=(0, 2))
    eta = "-" if p.eta_s is None else f"{p.eta_s / 60:.1f} min"
    table.add_row("trials", f"{p.trials_finished}/{p.trials}", "ETA", eta)
    table.add_row("configs measured", str(p.configs_measured), "reused", str(p.configs_reused))
    table.add_row(
        "filtered by cost model", str(p.configs_filtered), "failed", str(p.configs_failed)
    )
    best = "-" if p.best_latency_ms is None else f"{p.best_latency_ms:.3f} ms"
    acc = "-" if p.best_accuracy is None else f"{p.best_accuracy:.4f}"
    table.add_row("best latency", best, "best accuracy", f"{acc} (dense {p.dense_accuracy:.4f})")
    return table


class _Screen:
    """A spinner while the run prepares, then the live table (stderr)."""

    def __init__(self, what: str) -> None:
        self.status = _err.status(what)
        self.live: Live | None = None

    def __enter__(self) -> _Screen:
        self.status.start()
        return self

    def update(self, p: TuneProgress) -> None:
        if self.live is None:  # the first snapshot: preparing is over
            self.status.stop()
            self.live = Live(console=_err, refresh_per_second=4, transient=False)
            self.live.start()
        self.live.update(_view(p))

    def __exit__(self, *_exc: object) -> None:
        self.status.stop()
        if self.live is not None:
            self.live.stop()
            if not _err.is_terminal:
                _err.print()  # the last live frame ends without a newline when stderr is a file


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
        str, typer.Option(help="Kernel search: filtered, tpe, random or hillclimb.")
    ] = "filtered",
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="N,C,H,W of a user model.")
    ] = None,
    evaluate: Annotated[
        str | None, typer.Option(help="module:function(model) -> accuracy.")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="module:function() -> (train, validation) of your model.")
    ] = None,
    train: Annotated[
        str | None,
        typer.Option(help="module:function(model, optimizer, criterion, epoch): one epoch."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Compile target name or TOML file.")] = None,
    estimate_samples: Annotated[
        int, typer.Option(help="Fine-tune examples per accuracy estimate (the example).")
    ] = ESTIMATE_SAMPLES,
    estimate_epochs: Annotated[
        int, typer.Option(help="Epochs of your --train/--data training per estimate.")
    ] = 1,
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
    import pattune
    from pattune_common.files import check_output_file, json_safe, write_text
    from pattune_common.storage import redact_url

    if summary_json is not None:  # before the hours of tuning, not after
        check_output_file(summary_json, "--summary-json")
    with _Screen(f"preparing {model} for device type {device_type} ...") as screen:
        summary = pattune.tune(
            model=model, device_type=device_type, inventory=inventory, trials=trials,
            timeout=timeout, storage=storage, study=study, objective=objective,
            max_accuracy_drop=max_accuracy_drop, space=space, strategy=strategy,
            input_shape=input_shape, evaluate=evaluate, data=data, train=train, target=target,
            estimate_samples=estimate_samples, estimate_epochs=estimate_epochs, seed=seed,
            work_dir=work_dir,
            progress=screen.update,
        )  # fmt: skip
    if summary_json:
        doc = json.dumps(json_safe(summary.to_dict()), indent=2, allow_nan=False)
        write_text(summary_json, doc + "\n", what="the run summary")
    if summary.interrupted:
        _err.print("pattune: stopped; nothing measured is lost. Run the same command to resume.")
        raise typer.Exit(130)
    if summary.error:
        _err.print(f"pattune: tuning stopped: {summary.error}")
        raise typer.Exit(1)
    _err.print(
        f"pattune: {summary.trials_this_run} trials in {summary.wall_s:.0f} s; "
        f"best latency {summary.best_latency_ms} ms. Export with: pattune export --study "
        f"{study} --storage {redact_url(storage)} --out DIR",
        soft_wrap=True, highlight=False,  # one line, to copy as it is
    )


@app.command("status")
def status(storage: StorageOpt = DEFAULT_STORAGE, study: StudyOpt = "pattune") -> None:
    """Summarise a study: trials by state, best trials, measurements recorded."""
    import pattune

    st = pattune.status(storage=storage, study=study)
    table = Table("trial", "latency (ms)", "accuracy", "patterns", title=f"study {study}: best")
    for t in st.best:
        table.add_row(str(t.number), f"{t.latency_ms:.4f}", f"{t.accuracy:.4f}", str(t.patterns))
    _out.print(f"trials: {', '.join(f'{k} {v}' for k, v in st.trials.items()) or 'none'}")
    _out.print(f"measurements: {st.measurements or 'none'}")
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
        float,
        typer.Option(help="Pick the fastest trial within this drop from the dense accuracy."),
    ] = 0.01,
    retrain: Annotated[
        str, typer.Option(help="admm (ADMM + masked retraining), finetune or none.")
    ] = "admm",
    admm_epochs: Annotated[int, typer.Option(help="Epochs of ADMM training.")] = 4,
    retrain_epochs: Annotated[int, typer.Option(help="Epochs of masked retraining.")] = 6,
    lr: Annotated[float, typer.Option(help="Learning rate of the retraining.")] = 0.01,
    data: Annotated[
        str | None, typer.Option(help="module:function() -> (train, validation) of your model.")
    ] = None,
    train: Annotated[
        str | None,
        typer.Option(help="module:function(model, optimizer, criterion, epoch): one epoch."),
    ] = None,
    evaluate: Annotated[
        str | None, typer.Option(help="module:function(model) -> accuracy.")
    ] = None,
) -> None:
    """Retrain the best configuration and write it: kernels, weights, checkpoint, config, report.

    A killed export resumes its retraining at the last finished epoch.
    """
    import pattune

    with _RetrainScreen() as screen:
        ex = pattune.export(
            out=out, storage=storage, study=study, trial=trial,
            max_accuracy_drop=max_accuracy_drop, retrain=retrain, admm_epochs=admm_epochs,
            retrain_epochs=retrain_epochs, lr=lr, data=data, train=train, evaluate=evaluate,
            progress=screen.update,
        )  # fmt: skip
    measured = "measured again" if ex.latency_ms != ex.latency_tuning_ms else "as tuned"
    _out.print(
        f"exported trial {ex.trial} to {out}: {ex.latency_ms:.4f} ms ({measured}; at tuning "
        f"{ex.latency_tuning_ms:.4f} ms, default configs {ex.default_latency_ms:.4f} ms), "
        f"accuracy {ex.accuracy:.4f} (dense {ex.dense_accuracy:.4f}, drop "
        f"{ex.drop_points:.2f} points; tuning estimate {ex.accuracy_estimate:.4f})"
    )
    torch_text = "" if ex.torch_ms is None else f", torch here {ex.torch_ms:.4f} ms"
    default_text = ("not timed" if ex.end_to_end_default_ms is None
                    else f"{ex.end_to_end_default_ms:.4f} ms")
    _out.print(f"whole network: {ex.model_dir} (one library, header, weights; default configs "
               f"{default_text}{torch_text})")
    if ex.note:
        _err.print(f"pattune: note: {ex.note}")


class _RetrainScreen:
    """A progress line per retraining epoch: phase, epoch, loss, accuracy."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("retraining"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), console=_err,
                                 transient=False)
        self.task: Any = None

    def update(self, rec: Any, total: int) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("", total=total)
        self.progress.update(self.task, advance=1, description=(
            f"{rec.phase} epoch {rec.epoch + 1}: loss {rec.loss:.4f} accuracy {rec.accuracy:.4f}"))
        if not _err.is_terminal:
            _err.print(f"retrain {rec.phase} epoch {rec.epoch + 1}: loss {rec.loss:.4f} "
                       f"accuracy {rec.accuracy:.4f} ({rec.seconds:.0f} s)")

    def __enter__(self) -> _RetrainScreen:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.task is not None:
            self.progress.stop()
