"""``pattune bench kernels``: tuned pattern kernels against dense and sparse baselines.

Thin: flags become a :class:`benchmarks.kernels.run.BenchOptions`, the run happens in
:func:`benchmarks.kernels.run.run_bench`, and the result is a JSON file plus a table.
User errors raise ``PattuneError``/``ValueError``, which the CLI prints as one
line with exit code 2.
"""

from __future__ import annotations

import math
import sys
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
    t = Table(title=f"pattune bench kernels: {doc['config']['model']}, "
                    f"{doc['config']['patterns']} patterns, connectivity "
                    f"{doc['config']['connectivity']}, {doc['config']['threads']} thread(s)")
    for col in ("layer", "pattern ms", "unstr ms", "torch ms", "ort ms", "csr ms", "vs torch",
                "vs ort", "vs unstr", "GFLOP/s eff", "peak frac", "max err", "FKW/nz"):
        t.add_column(col, justify="right")
    for r in doc["layers"]:
        m, s = r["median_s"], r["speedup_vs"]

        def ms(k: str, m: dict[str, float] = m) -> str:
            return f"{m[k] * 1e3:.2f}" if k in m else "-"

        def x(k: str, s: dict[str, float] = s) -> str:
            return f"{s[k]:.2f}" if k in s else "-"

        t.add_row(r["name"] + ("" if r["in_summary"] else " *"), ms("pattern"),
                  ms("unstructured"), ms("torch"), ms("ort"), ms("torch_csr"), x("torch"),
                  x("ort"), x("unstructured"),
                  f"{r['gflops_effective'].get('pattern', math.nan):.0f}",
                  f"{r.get('peak_fraction', {}).get('pattern', math.nan):.2f}",
                  f"{r['max_rel_error'].get('pattern', math.nan):.1e}",
                  f"{r['fkw_over_nonzero']:.3f}")
    sm = doc["summary"]
    t.caption = (f"geomean speedup vs torch {sm['geomean_speedup_vs_torch']:.2f}, vs ort "
                 f"{sm['geomean_speedup_vs_ort']:.2f}, vs unstructured "
                 f"{sm['geomean_speedup_vs_unstructured']:.2f}; peak fraction "
                 f"{sm.get('geomean_peak_fraction', math.nan):.2f} (torch "
                 f"{sm.get('geomean_peak_fraction_torch', math.nan):.2f}) of "
                 f"{doc['config'].get('fma_peak_gmacs', math.nan):.1f} GMAC/s; "
                 f"FKW bytes / non-zero bytes "
                 f"{sm['fkw_bytes_over_nonzero_bytes']:.3f}  (* = left out of the summary)")
    return t


@bench_app.command("kernels")
def bench_kernels(
    model: Annotated[str, typer.Option(
        "--model", "-m", help="Built-in model (vgg16, resnet18, ...).")] = "vgg16",
    dataset: Annotated[str | None, typer.Option(help="imagenet or cifar (model default).")] = None,
    patterns: PatternsOpt = 8,
    connectivity: Annotated[
        str, typer.Option(help="Connectivity ratio (3.6 keeps 1/3.6 of kernels; 1 = none).")
    ] = "3.6",
    threads: Annotated[int, typer.Option(help="Threads for every implementation.")] = 1,
    budget: Annotated[int, typer.Option(help="KernelConfigs tried per layer and kind.")] = 30,
    rounds: Annotated[int, typer.Option(help="Interleaved timing rounds (medians).")] = 9,
    layers: Annotated[
        str | None, typer.Option(help="Comma-separated layer names (default: all 3x3).")
    ] = None,
    target: Annotated[str, typer.Option(help="host, or a .toml/.json target file.")] = "host",
    seed: SeedOpt = 0,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """Tune and time pattern kernels per 3x3 layer against torch, ORT and sparse baselines."""
    from benchmarks.kernels.run import BenchOptions, run_bench
    from codegen.target import get_target

    check_json_out(json_out)
    if patterns < 1 or patterns > 56:
        raise ValueError(f"--patterns must lie in 1..56; got {patterns}")
    opts = BenchOptions(
        model=model, dataset=dataset, patterns=patterns, connectivity=connectivity,
        threads=threads, budget=budget, rounds=rounds, seed=seed,
        layers=tuple(n.strip() for n in layers.split(",") if n.strip()) if layers else (),
    )
    shown = verbosity() > QUIET
    doc = run_bench(opts, get_target(target),
                    progress=lambda m: print(m, file=sys.stderr, flush=True) if shown else None)
    emit_json(document("pattune.bench_kernels", doc), to_stdout=json_, path=json_out,
              what="the benchmark result")
    if not json_:
        show_table(out_console(), _table(doc))
