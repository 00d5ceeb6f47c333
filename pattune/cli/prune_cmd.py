"""``pattune prune``, ``pattune patterns`` and ``pattune bench accuracy``.

The commands are thin: ``prune`` calls :func:`pattune.prune` and prints what it
returns; ``patterns`` asks :mod:`search_spaces` directly. Every user error
surfaces as a ``PattuneError``/``ValueError`` that :func:`pattune.cli._app.main`
turns into one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pattune.cli._app import app, bench_app
from pattune.cli._common import (
    QUIET,
    JsonOpt,
    JsonOutOpt,
    check_json_out,
    document,
    emit_json,
    err_console,
    out_console,
    show_table,
    verbosity,
)
from pattune.cli._options import ModelOpt, PatternsOpt

if TYPE_CHECKING:
    from pattune import PruneResult

OUT_HELP = "Directory for the pruned state_dict, per-layer JSON/NPZ and the report."


def _console() -> Console:
    """stdout for results (tables print as plain rows when it is not a terminal)."""
    return out_console()


class _Status:
    """A spinner on stderr while a terminal watches; nothing in a log or with -q."""

    def __init__(self, what: str) -> None:
        err = err_console()
        self.status = err.status(what) if err.is_terminal and verbosity() > QUIET else None

    def __enter__(self) -> _Status:
        if self.status is not None:
            self.status.start()
        return self

    def update(self, msg: str) -> None:
        if self.status is not None:
            self.status.update(msg)

    def __exit__(self, *_exc: object) -> None:
        if self.status is not None:
            self.status.stop()


@app.command("prune")
def prune(
    model: ModelOpt = "example",
    out: Annotated[Path | None, typer.Option("--out", "-o", help=OUT_HELP)] = None,
    patterns: PatternsOpt = 8,
    pattern_set: Annotated[
        str | None,
        typer.Option(help="Use this set instead: a .json file or tap lists like 1,3,4,5/1,4,5,7."),
    ] = None,
    connectivity: Annotated[
        str,
        typer.Option(
            help="Kernels removed per 3x3 layer: fraction in [0,1) or ratio such as 3.6x."
        ),
    ] = "3.6x",
    layer_rate: Annotated[
        list[str] | None, typer.Option(help="Per-layer rate NAME=RATE; repeatable.")
    ] = None,
    input_layer_connectivity: Annotated[
        bool, typer.Option(help="Connectivity-prune the cin<=3 input layer too.")
    ] = False,
    depthwise_connectivity: Annotated[
        bool, typer.Option(help="Connectivity-prune depthwise 3x3 layers too.")
    ] = False,
    other_connectivity: Annotated[
        str | None,
        typer.Option(
            help="Whole-kernel rate for 1x1 and other non-3x3 convs (default: keep dense)."
        ),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="oneshot, estimate (example default) or admm (example only).")
    ] = None,
    admm: Annotated[bool, typer.Option("--admm", help="Same as --method admm.")] = False,
    admm_epochs: Annotated[float, typer.Option(help="Epochs of ADMM training (--admm).")] = 3.0,
    retrain_epochs: Annotated[
        float, typer.Option(help="Epochs of masked retraining after ADMM (--admm).")
    ] = 3.0,
    finetune_samples: Annotated[
        int, typer.Option(help="Training examples of the estimate's fine-tune.")
    ] = 6000,
    input_shape: Annotated[
        str | None, typer.Option(help="N,C,H,W for non-built-in models, e.g. 1,3,224,224.")
    ] = None,
    evaluate: Annotated[
        str | None, typer.Option(help="package.module:function, model -> accuracy.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Fashion-MNIST directory (default: Debian's).")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache of the trained example.")] = None,
    train_epochs: Annotated[
        float, typer.Option(help="Epochs of the example's dense training.")
    ] = 4.0,
    train_samples: Annotated[
        int | None, typer.Option(help="Train the example on a subset of this many examples.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads (default: all CPUs).")] = None,
    test_samples: Annotated[
        int | None,
        typer.Option(help="Evaluate the example on this many test examples (default 10000)."),
    ] = None,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Pattern- and connectivity-prune a model; print the per-layer report; write the files."""
    import pattune

    check_json_out(json_out)
    console = _console()
    with _Status("pruning") as status:
        result = pattune.prune(
            model=model, out=out, patterns=patterns, pattern_set=pattern_set,
            connectivity=connectivity, layer_rate=layer_rate,
            input_layer_connectivity=input_layer_connectivity,
            depthwise_connectivity=depthwise_connectivity,
            other_connectivity=other_connectivity, method=method, admm=admm,
            admm_epochs=admm_epochs, retrain_epochs=retrain_epochs,
            finetune_samples=finetune_samples, input_shape=input_shape, evaluate=evaluate,
            data_dir=data_dir, cache_dir=cache_dir, train_epochs=train_epochs,
            train_samples=train_samples, threads=threads, test_samples=test_samples,
            progress=lambda msg: status.update(msg),
        )  # fmt: skip
    emit_json(document("pattune.prune", result.to_dict()), to_stdout=json_, path=json_out,
              what="the prune summary")
    if not json_:
        _print_result(console, result)


def _print_result(console: Console, result: PruneResult) -> None:
    """The per-layer table, the pattern set, one summary line."""
    show_table(console, result.report.rich_table())
    m = result.metrics
    accs = ", ".join(
        f"{k} {m[k]:.4f}" for k in ("dense_acc", "oneshot_acc", "pruned_acc") if k in m
    )
    console.print(f"patterns:\n{result.pattern_set}", highlight=False)
    console.print(
        f"{result.conv_compression:.2f}x fewer conv weights; "
        f"{accs or 'no evaluator given'}; method {result.method}, {m['seconds']} s"
    )
    if result.out is not None:
        console.print(f"wrote {result.out}/ (manifest.json, state_dict.pt, layers/, report.json)")


@app.command("patterns")
def patterns_cmd(
    model: Annotated[
        str | None, typer.Option(
            "--model", "-m", help="Rank patterns by natural-pattern frequency in this model.")
    ] = None,
    top: Annotated[
        int, typer.Option("--top", "-k", help="How many to show when ranking a model.")
    ] = 8,
    n: Annotated[int, typer.Option(help="Non-zeros per 3x3 kernel.")] = 4,
    keep_centre: Annotated[bool, typer.Option(help="Only patterns that keep the centre.")] = True,
    input_shape: Annotated[
        str | None, typer.Option(help="N,C,H,W for non-built-in models.")
    ] = None,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """List the candidate patterns, or a model's most frequent natural patterns."""
    from pattune_common import UserInputError
    from search_spaces.patterns import PatternSet, all_patterns

    if top < 1:
        raise UserInputError(f"--top must be >= 1; got {top}")
    if not 1 <= n <= 9:
        raise UserInputError(f"--n must lie in 1..9 (non-zeros of a 3x3 kernel); got {n}")
    if model is not None and n != 4:
        raise UserInputError(f"--n {n} lists candidate patterns; a model's natural patterns "
                             "have 4 non-zeros, so drop --n or --model")
    check_json_out(json_out)
    console = _console()
    if model is None:
        pats = all_patterns(3, n, keep_centre=keep_centre)
        counts: list[int] | None = None
    else:
        pats, counts = _ranked(model, top, input_shape)
    rows = [{"id": i, "taps": list(p.taps)} | ({} if counts is None else {"count": counts[i]})
            for i, p in enumerate(pats)]  # fmt: skip
    emit_json(document("pattune.patterns", {"model": model, "n": n, "patterns": rows}),
              to_stdout=json_, path=json_out)
    if json_:
        return
    what = (
        f"top {len(pats)} natural patterns of {model}"
        if model
        else f"{len(pats)} candidate patterns"
    )
    console.print(what + (" (centre kept)" if keep_centre or model else ""))
    for start in range(0, len(pats), 8):
        chunk = pats[start : start + 8]
        console.print("   ".join(f"{start + i:<5}" for i in range(len(chunk))))
        if counts is not None:
            console.print("   ".join(f"{c:<5}" for c in counts[start : start + 8]))
        console.print(str(PatternSet(tuple(chunk))), highlight=False)
        console.print()


def _ranked(model: str, top: int, input_shape: str | None) -> tuple[tuple, list[int]]:  # type: ignore[type-arg]
    from torch import nn

    from pattune_common import UserInputError
    from search_spaces.example import EXAMPLE_INPUT_SHAPE, trained_example
    from search_spaces.loading import load_model, parse_input_shape
    from search_spaces.models import conv_layers
    from search_spaces.selection import NoPatternLayersError, count_natural_patterns, top_k_patterns

    net: nn.Module
    if model.strip().lower() == "example":
        net, shape = trained_example().model, EXAMPLE_INPUT_SHAPE
    else:
        loaded = load_model(model)
        net = loaded.model
        shape = parse_input_shape(input_shape) if input_shape else loaded.input_shape  # type: ignore[assignment]
        if shape is None:
            raise UserInputError(
                f"model {model!r} needs --input-shape N,C,H,W (such as 1,3,224,224)"
            )
    layers = [c for c in conv_layers(net, shape) if c.is_3x3]
    if not layers:
        raise NoPatternLayersError(
            f"model {model!r} has no 3x3 conv layer, so it has no natural patterns"
        )
    counts = count_natural_patterns(c.module.weight.detach().numpy() for c in layers)
    ps = top_k_patterns(counts, top)
    return ps.patterns, [counts.get(p, 0) for p in ps]


@bench_app.command("accuracy")
def bench_accuracy(
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
    quick: Annotated[
        bool, typer.Option(help="10k training subset, <= 4 min (targets 0.85 / 2.0 points).")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Fashion-MNIST directory (default: Debian's).")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache of the trained example.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads (default: all CPUs).")] = None,
    ranking: Annotated[
        bool, typer.Option(help="Rank configurations by the estimate and by retraining.")
    ] = False,
    configurations: Annotated[
        int, typer.Option(help="--ranking: configurations to compare (>= 2).")
    ] = 8,
) -> None:
    """Dense vs one-shot vs retrained example accuracy (8 patterns, 3.6x) on the 10k test set.

    With --ranking: how well the tuning-time estimate ranks configurations against
    the accuracy after the export's retraining (Spearman, mean gap).
    """
    from benchmarks.accuracy import AccuracyBenchConfig, run_accuracy_bench, run_ranking_bench
    from pattune_common import UserInputError

    check_json_out(json_out)
    config = AccuracyBenchConfig.quick() if quick else AccuracyBenchConfig.full()
    console = _console()
    if ranking:
        if configurations < 2:
            raise UserInputError(f"--configurations must be >= 2; got {configurations}")
        with _Status("ranking benchmark") as status:
            doc = run_ranking_bench(config, configurations=configurations, cache_dir=cache_dir,
                                    data_dir=data_dir, threads=threads, progress=status.update)
        emit_json(document("pattune.bench_accuracy", doc), to_stdout=json_, path=json_out,
                  what="the benchmark result")
        if not json_:
            console.print(f"estimate_spearman={doc['estimate_spearman']} estimate_gap_points="
                          f"{doc['estimate_gap_points']} total {doc['seconds']} s")
        return
    with _Status("accuracy benchmark") as status:
        result = run_accuracy_bench(
            config, cache_dir=cache_dir, data_dir=data_dir, threads=threads, progress=status.update
        )
    emit_json(document("pattune.bench_accuracy", result), to_stdout=json_, path=json_out,
              what="the benchmark result")
    if json_:
        return
    keys = (
        "dense_acc",
        "oneshot_acc",
        "estimate_acc",
        "pruned_acc",
        "drop_points",
        "conv_compression",
        "targets_met",
    )
    console.print(
        " ".join(f"{k}={result[k]}" for k in keys) + f" total {result['seconds']['total']} s"
    )
