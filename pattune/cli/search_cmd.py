"""``pattune record`` and ``pattune bench search``: recorded measurement sets and the search benchmark."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pattune.cli._app import app, bench_app, fail
from pattune.cli._common import (
    QUIET,
    JsonOpt,
    JsonOutOpt,
    check_json_out,
    document,
    emit_json,
    verbosity,
)
from pattune.cli._options import DeviceTypeOpt, InventoryOpt, ModelOpt, PatternsOpt, SeedOpt

DEFAULT_SET = "data/measurements/vgg16-imagenet-k8-c3.6x.json.gz"
_FIELDS = {f.name: f for f in dataclasses.fields(__import__("codegen").KernelConfig)}


def parse_pins(pins: list[str], preset: str) -> tuple[dict[str, tuple[Any, ...]],
                                                      dict[str, tuple[Any, ...]]]:
    """``["threads=1", "oc_block=2,8"]`` and a preset name (``bench`` or ``none``) ->
    (the preset's pins, fitted to each layer later; the user's pins, strict)."""
    from autotune.measurement_set.record import BENCH_PINS

    if preset not in ("bench", "none"):
        fail(f"--space must be one of bench, none; got {preset!r}")
    chosen: dict[str, tuple[Any, ...]] = dict(BENCH_PINS) if preset == "bench" else {}
    out: dict[str, tuple[Any, ...]] = {}
    for text in pins:
        key, sep, values = text.partition("=")
        key = key.strip()
        if not sep or key not in _FIELDS or not values.strip():
            fail(
                f"--pin must look like FIELD=V1,V2 with FIELD one of {', '.join(_FIELDS)}; "
                f"got {text!r}"
            )
        kind = type(_FIELDS[key].default)
        parsed: list[Any] = []
        for v in values.split(","):
            v = v.strip()
            if kind is bool:
                if v.lower() not in ("true", "false"):
                    fail(f"--pin {key} takes true or false; got {v!r}")
                parsed.append(v.lower() == "true")
            elif kind is int:
                if not v.lstrip("-").isdigit():
                    fail(f"--pin {key} takes integers; got {v!r}")
                parsed.append(int(v))
            else:
                parsed.append(v)
        out[key] = tuple(parsed)
    return chosen, out


@app.command("record")
def record_cmd(
    out: Annotated[str, typer.Option(
        "--out", "-o", help="Measurement-set file to write (.json.gz).")],
    model: ModelOpt = "vgg16",
    dataset: Annotated[str, typer.Option(help="Dataset variant of the model.")] = "imagenet",
    layers: Annotated[
        str | None, typer.Option(help=(
            "Comma-separated 3x3 convs (features.7, or conv2_2 for VGG-16). Default: "
            "conv2_2,conv3_2,conv4_2,conv5_2 of VGG-16; of other models, the first 3x3 "
            "conv of each distinct shape."))
    ] = None,
    patterns: PatternsOpt = 8,
    connectivity: Annotated[str, typer.Option(help="Connectivity rate (3.6x or 0.72).")] = "3.6x",
    space: Annotated[
        str, typer.Option(help=(
            "bench (the documented benchmark-sized pins, fitted to each layer) or none."))
    ] = "bench",
    pin: Annotated[
        list[str] | None, typer.Option(help="FIELD=V1,V2 narrows a KernelConfig field.")
    ] = None,
    max_configs: Annotated[
        int | None, typer.Option(help="Random sample of at most N configs per layer.")
    ] = None,
    target: Annotated[str, typer.Option(help="Compile target: host, aarch64, or a file.")] = "host",
    inventory: InventoryOpt = None,
    device_type: DeviceTypeOpt = "local",
    min_total_s: Annotated[float, typer.Option(help="Timed seconds per config, at least.")] = 0.03,
    repeats: Annotated[int, typer.Option(help="Fewest timed repeats per config.")] = 3,
    batch: Annotated[int, typer.Option(help="Configs per layer per build batch.")] = 4,
    passes: Annotated[
        int, typer.Option(help="Measure every config this many times afresh; times are pooled.")
    ] = 1,
    seed: SeedOpt = 0,
    work_dir: Annotated[str | None, typer.Option(help="Scratch directory.")] = None,
) -> None:
    """Measure every config of a benchmark-sized space (or a random sample) and save a set."""
    from autotune.measurement_set.record import RecordPlan, model_layers, record
    from codegen import get_target
    from device_farm import ProtocolConfig, load_inventory

    if not out.endswith((".json", ".json.gz")):
        fail(f"--out must end in .json.gz or .json; got {out!r}")
    if min(batch, repeats, passes, 1 if max_configs is None else max_configs) < 1:
        fail("--batch, --repeats, --passes and --max-configs must be >= 1")
    preset, pins = parse_pins(pin or [], space)
    protocol = ProtocolConfig(
        warmup=1, min_repeats=repeats, max_repeats=max(20, repeats), min_total_s=min_total_s,
        remeasure=0, max_cv=0.5,
    )  # fmt: skip
    tgt = get_target(target)
    devices = load_inventory(inventory).of_type(device_type, protocol) if inventory else None
    names = [n.strip() for n in (layers or "").split(",") if n.strip()]
    pruned, meta = model_layers(
        model, dataset, names, k=patterns, connectivity=connectivity, seed=seed
    )
    plan = RecordPlan(
        layers=pruned, target=tgt, pins=pins, preset=preset, max_configs=max_configs, protocol=protocol,
        batch=batch, seed=seed, pruning=meta, device_type=device_type, passes=passes,
    )  # fmt: skip

    shown = verbosity() > QUIET

    def progress(mset: Any) -> None:
        if shown:
            done = ", ".join(f"{r.name} {len(r.entries)}/{r.space_size}" for r in mset.layers)
            print(f"record: {done}", file=sys.stderr, flush=True)

    mset = record(plan, out, work_dir=work_dir, devices=devices, on_batch=progress)
    if shown:
        print(f"record: wrote {out} ({sum(len(r.entries) for r in mset.layers)} configs, "
              f"{sum(len(r.measured()) for r in mset.layers)} measured)", file=sys.stderr)


@bench_app.command("search")
def bench_search(
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
    measurements: Annotated[
        str, typer.Option("--set", help="Measurement set from `pattune record`.")
    ] = DEFAULT_SET,
    plot: Annotated[str | None, typer.Option(help="PNG plot (default: next to --json-out).")] = None,
    strategies: Annotated[
        str, typer.Option(help="Comma-separated: random, tpe, filtered, filtered-warm.")
    ] = "random,tpe,filtered,filtered-warm",
    seeds: Annotated[int, typer.Option(help="Seeds per strategy and layer.")] = 10,
    budget: Annotated[int, typer.Option(help="Device measurements per run.")] = 96,
    batch: Annotated[int, typer.Option(help="Configs measured per round.")] = 8,
    candidates_per_measure: Annotated[
        int, typer.Option(help="Configs the filter scores per measured config.")
    ] = 16,
    within: Annotated[float, typer.Option(help="Distance to the set's best that counts.")] = 0.05,
    statistic: Annotated[
        str, typer.Option(help="Latency of a recorded config: min or median of its repeats.")
    ] = "min",
    quality: Annotated[bool, typer.Option(help="Also judge the cost model.")] = True,
    workers: Annotated[int, typer.Option(help="Processes replaying runs in parallel.")] = 2,
) -> None:
    """Replay random, TPE and TPE + cost-model filter over a recorded set; report efficiency."""
    from autotune.measurement_set import load
    from benchmarks.search import SearchConfig, run_benchmark

    if workers < 1:
        fail(f"--workers must be >= 1; got {workers}")
    check_json_out(json_out)
    mset = load(measurements)
    for rec in mset.layers:
        if not rec.measured():
            fail(f"layer {rec.name} of {measurements} has no measured config; re-record it")
    cfg = SearchConfig(
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        seeds=seeds, budget=budget, batch=batch,
        candidates_per_measure=candidates_per_measure, within=within, statistic=statistic,
    )  # fmt: skip
    if plot is None and json_out is not None:
        plot = str(Path(json_out).with_suffix(".png"))

    shown = verbosity() > QUIET

    def progress(done: int, total: int) -> None:
        if shown and (done == total or done % 10 == 0):
            print(f"bench search: {done}/{total} runs", file=sys.stderr, flush=True)

    doc = run_benchmark(
        mset,
        cfg,
        source=measurements,
        plot_path=plot,
        with_quality=quality,
        progress=progress,
        workers=workers,
    )
    emit_json(document("pattune.bench_search", doc), to_stdout=json_, path=json_out,
              what="the benchmark report")
    if json_:
        return
    print(json.dumps({
        "summary": doc["summary"],
        "strategies": {k: v["median_measurements_to_within"]
                       for k, v in doc["strategies"].items()},
    }, indent=2))
