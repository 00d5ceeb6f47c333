"""``pattune tune``, ``pattune status`` and ``pattune export``: the product's main job.

Each command parses its flags, calls the Python API (:func:`pattune.tune`,
:func:`pattune.status`, :func:`pattune.export`) and renders what it returns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from pattune.cli._app import app
from pattune.cli._common import (
    QUIET,
    JsonOpt,
    JsonOutOpt,
    check_json_out,
    document,
    emit_json,
    err_console,
    load_optuna,
    out_console,
    print_table,
    verbosity,
)
from pattune.cli._options import (
    DeviceTypeOpt,
    InventoryOpt,
    ModelOpt,
    SeedOpt,
    StorageOpt,
    StudyOpt,
)
from pattune.cli._tune_view import TuneScreen, fmt_acc, fmt_ms
from pattune_common import DEFAULT_STORAGE, ESTIMATE_SAMPLES


@app.command("tune")
def tune(
    model: ModelOpt = "example",
    device_type: DeviceTypeOpt = "local",
    inventory: InventoryOpt = None,
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
    seed: SeedOpt = 0,
    work_dir: Annotated[str | None, typer.Option(help="Scratch directory.")] = None,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Tune pattern set, per-layer connectivity and kernel code for a device type.

    Re-running the same command resumes the study; Ctrl-C stops cleanly.
    """
    import pattune
    from pattune_common.storage import redact_url

    load_optuna()
    check_json_out(json_out)  # before the hours of tuning, not after
    err = err_console()
    with TuneScreen(err, f"preparing {model} for device type {device_type} ...", study) as screen:
        summary = pattune.tune(
            model=model, device_type=device_type, inventory=inventory, trials=trials,
            timeout=timeout, storage=storage, study=study, objective=objective,
            max_accuracy_drop=max_accuracy_drop, space=space, strategy=strategy,
            input_shape=input_shape, evaluate=evaluate, data=data, train=train, target=target,
            estimate_samples=estimate_samples, estimate_epochs=estimate_epochs, seed=seed,
            work_dir=work_dir,
            progress=screen.update,
        )  # fmt: skip
    emit_json(document("pattune.tune_summary", summary.to_dict()), to_stdout=json_,
              path=json_out, what="the run summary")
    if summary.interrupted:
        print("pattune: stopped; nothing measured is lost. Run the same command to resume.",
              file=err.file)
        raise typer.Exit(130)
    if summary.error:
        print(f"pattune: tuning stopped: {summary.error}", file=err.file)
        raise typer.Exit(1)
    if verbosity() > QUIET:
        print(f"pattune: {summary.trials_this_run} trials this run in {summary.wall_s:.0f} s "
              f"({summary.trials_finished} finished in the study); study best latency "
              f"{fmt_ms(summary.best_latency_ms)} ms, best accuracy "
              f"{fmt_acc(summary.best_accuracy)} (dense {fmt_acc(summary.dense_accuracy)}). "
              f"Export with: pattune export --study {study} --storage {redact_url(storage)} "
              "--out DIR", file=err.file)


@app.command("status")
def status(storage: StorageOpt = DEFAULT_STORAGE, study: StudyOpt = "pattune",
           json_: JsonOpt = False, json_out: JsonOutOpt = None) -> None:
    """Summarise a study: trials by state, best trials, measurements recorded."""
    import pattune

    load_optuna()
    check_json_out(json_out)
    st = pattune.status(storage=storage, study=study)
    emit_json(document("pattune.status", dataclasses.asdict(st)), to_stdout=json_,
              path=json_out)
    if json_:
        return
    out = out_console()
    counts = ", ".join(f"{k} {v}" for k, v in st.trials.items()) or "none"
    out.file.write(f"study {study}: trials {counts}\n")
    out.file.write("measurements: "
                   + (", ".join(f"{k} {v}" for k, v in st.measurements.items()) or "none")
                   + "\n")
    print_table(out, ["trial", "latency (ms)", "accuracy", "patterns"],
                [[str(t.number), fmt_ms(t.latency_ms), fmt_acc(t.accuracy), str(t.patterns)]
                 for t in st.best], title=f"study {study}: best")


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the export to.")],
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
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Retrain the best configuration and write it: kernels, weights, checkpoint, config, report.

    A killed export resumes its retraining at the last finished epoch.
    """
    import pattune

    load_optuna()
    check_json_out(json_out)
    with _RetrainScreen() as screen:
        ex = pattune.export(
            out=out, storage=storage, study=study, trial=trial,
            max_accuracy_drop=max_accuracy_drop, retrain=retrain, admm_epochs=admm_epochs,
            retrain_epochs=retrain_epochs, lr=lr, data=data, train=train, evaluate=evaluate,
            progress=screen.update,
        )  # fmt: skip
    doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(ex).items()}
    doc["weights"] = [str(w) for w in ex.weights]
    emit_json(document("pattune.export", doc), to_stdout=json_, path=json_out)
    if ex.note and verbosity() > QUIET:
        print(f"pattune: note: {ex.note}", file=err_console().file)
    if json_:
        return
    measured = "measured again" if ex.latency_ms != ex.latency_tuning_ms else "as tuned"
    print(f"exported trial {ex.trial} to {out}: {fmt_ms(ex.latency_ms)} ms ({measured}; at "
          f"tuning {fmt_ms(ex.latency_tuning_ms)} ms, default configs "
          f"{fmt_ms(ex.default_latency_ms)} ms), accuracy {fmt_acc(ex.accuracy)} (dense "
          f"{fmt_acc(ex.dense_accuracy)}, drop {ex.drop_points:.2f} points; tuning estimate "
          f"{fmt_acc(ex.accuracy_estimate)})", file=out_console().file)
    torch_text = "" if ex.torch_ms is None else f", torch here {fmt_ms(ex.torch_ms)} ms"
    default_text = ("not timed" if ex.end_to_end_default_ms is None
                    else f"{fmt_ms(ex.end_to_end_default_ms)} ms")
    print(f"whole network: {ex.model_dir} (one library, header, weights; default configs "
          f"{default_text}{torch_text})", file=out_console().file)


class _RetrainScreen:
    """A progress line per retraining epoch: phase, epoch, loss, accuracy."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.err = err_console()
        self.shown = verbosity() > QUIET
        self.progress = Progress(TextColumn("retraining"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"), console=self.err,
                                 transient=False)
        self.task: Any = None

    def update(self, rec: Any, total: int) -> None:
        if not self.shown:
            return
        if not self.err.is_terminal:  # a log: one line per epoch, no bar
            print(f"retrain {rec.phase} epoch {rec.epoch + 1}: loss {rec.loss:.4f} "
                  f"accuracy {rec.accuracy:.4f} ({rec.seconds:.0f} s)", file=self.err.file,
                  flush=True)
            return
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("", total=total)
        self.progress.update(self.task, advance=1, description=(
            f"{rec.phase} epoch {rec.epoch + 1}: loss {rec.loss:.4f} accuracy {rec.accuracy:.4f}"))

    def __enter__(self) -> _RetrainScreen:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.task is not None:
            self.progress.stop()
