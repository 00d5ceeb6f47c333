"""``pattune bench network``: the whole tuned network against torch and ONNX Runtime.

Thin: flags become a :class:`benchmarks.network.run.NetworkBenchOptions`, the run happens
in :func:`benchmarks.network.run.run_network_bench`, the result is a JSON document
(``--json``, ``--json-out``) and a table. Bad input raises ``PattuneError``/``ValueError``: one line, exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pattune.cli._app import bench_app
from pattune.cli._common import (
    QUIET,
    JsonOpt,
    JsonOutOpt,
    check_json_out,
    document,
    emit_json,
    out_console,
    show_table,
    verbosity,
)
from pattune.cli._options import PatternsOpt, SeedOpt


def _table(doc: dict[str, Any]) -> Table:
    c, sm = doc["config"], doc["summary"]
    t = Table(title=f"pattune bench network: {c['model']} {tuple(c['input_shape'])}, "
                    f"{c['patterns']} patterns, {c['connectivity']}, {c['threads']} thread(s)")
    for col in ("implementation", "median ms", "ours faster by", "max rel err"):
        t.add_column(col, justify="right")
    for name, ms in doc["median_ms"].items():
        t.add_row(name, f"{ms:.3f}", f"{ms / sm['latency_ms']:.2f}x",
                  f"{doc['max_rel_err'][name]:.1e}")
    kinds = ", ".join(f"{k} {v['ms']:.2f} ms ({v['ops']})" for k, v in sm["breakdown_ms"].items())
    t.caption = (f"speedup vs torch ({sm['torch_kind']}) {sm['speedup_vs_torch']:.2f}, vs ORT "
                 f"{sm['speedup_vs_ort']:.2f}; arena {sm['arena_bytes']} B, weights "
                 f"{sm['weights_bytes']} B; ours by op kind: {kinds}")
    return t


@bench_app.command("network")
def bench_network(
    model: Annotated[str, typer.Option(help="Built-in model (resnet18, vgg16, ...).")] = "resnet18",
    dataset: Annotated[str | None, typer.Option(help="imagenet or cifar (model default).")] = None,
    patterns: PatternsOpt = 8,
    connectivity: Annotated[
        str, typer.Option(help="Connectivity ratio (3.6 keeps 1/3.6 of kernels; 1 = none).")
    ] = "3.6",
    threads: Annotated[int, typer.Option(help="Threads for every implementation.")] = 1,
    budget: Annotated[int, typer.Option(help="KernelConfigs tried per pattern layer.")] = 8,
    rounds: Annotated[int, typer.Option(help="Interleaved timing rounds (medians).")] = 15,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path | None, typer.Option(help="Build folder (default: temporary).")] = None,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Tune each pattern layer, build the whole network, time it against torch and ORT."""
    from benchmarks.network.run import NetworkBenchOptions, run_network_bench
    from codegen.target import host_target

    check_json_out(json_out)
    opts = NetworkBenchOptions(model=model, dataset=dataset, patterns=patterns,
                               connectivity=connectivity, threads=threads, budget=budget,
                               rounds=rounds, seed=seed,
                               out_dir=None if out_dir is None else str(out_dir))
    shown = verbosity() > QUIET
    doc = run_network_bench(opts, host_target(),
                            progress=lambda m: print(m, file=sys.stderr, flush=True) if shown
                            else None)
    emit_json(document("pattune.bench_network", doc), to_stdout=json_, path=json_out,
              what="the benchmark result")
    if not json_:
        show_table(out_console(), _table(doc))
