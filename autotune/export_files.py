"""The export's files besides config.json: the kernels' Makefile and the report.

:func:`write_makefile` builds every exported layer with the device type's
compiler; :func:`write_report` draws the study's Pareto front and history and
writes ``report.md`` from the export's config (what ``config.json`` holds).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from codegen import Target


def write_makefile(path: Path, stems: list[tuple[str, bool]], *, target: Target,
                   device_type: str) -> None:
    """Write a Makefile for the kernels ``stems`` (name, uses OpenMP) in ``path``'s folder."""
    t = target
    flags = " ".join(shlex.quote(f) for f in t.compile_flags())
    ld = " ".join(shlex.quote(f) for f in (*t.ldflags, *(["-static"] if t.static else [])))
    lines = [
        f"# Kernels for device type {device_type} (target {t.name}).",
        "# make            -> one standalone executable per layer (usage: ./NN_name INPUT WEIGHTS "
        "WARMUP REPEATS [OUTPUT])",
        "# make libs       -> one shared library per layer (pt_init / pt_run / pt_free)",
        f"CC ?= {t.cc}",
        f"CFLAGS ?= {flags}",
        f"LDFLAGS ?= {ld}",
        "",
        "all: " + " ".join(s for s, _ in stems),
        "libs: " + " ".join(f"lib{s}.so" for s, _ in stems),
        "",
    ]
    for stem, omp in stems:
        extra = " -fopenmp" if omp else ""
        lines += [
            f"{stem}: {stem}.c",
            f"\t$(CC) $(CFLAGS){extra} -DPT_MAIN -o $@ $< $(LDFLAGS) -lm",
            f"lib{stem}.so: {stem}.c",
            f"\t$(CC) $(CFLAGS){extra} -shared -fPIC -o $@ $< -lm",
            "",
        ]
    lines += [
        "clean:",
        "\trm -f " + " ".join(s for s, _ in stems) + " *.so",
        "",
        ".PHONY: all libs clean",
        "",
    ]
    path.write_text("\n".join(lines))


def _ms(value: float | None) -> str:
    return "not known for this device type" if value is None else f"{value:.4f} ms"


def _plots(rdir: Path, study: optuna.Study, chosen: int, config: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    lat = [float(t.user_attrs["pattune:latency_ms"]) for t in complete]
    acc = [float(t.user_attrs["pattune:accuracy"]) for t in complete]
    front = {t.number for t in study.best_trials} if len(study.directions) > 1 else set()

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(lat, acc, s=14, c="0.6", label="trials")
    if front:
        pts = sorted(
            (la, ac)
            for t, la, ac in zip(complete, lat, acc, strict=True)
            if t.number in front
        )
        ax.plot(*zip(*pts, strict=True), "o-", c="tab:blue", label="Pareto front")
    ax.scatter(
        [config["total_latency_ms"]],
        [config["accuracy"]],
        marker="*",
        s=160,
        c="tab:red",
        label=f"exported (trial {chosen})",
    )
    ax.set_xlabel(f"latency on {config['device_type']} (ms)")
    ax.set_ylabel(f"accuracy ({config['accuracy_source']})")
    ax.set_title(f"study {study.study_name}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(rdir / "pareto.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    nums = [t.number for t in complete]
    ax.plot(nums, lat, ".", c="0.6", label="trial latency")
    best, run = [], float("inf")
    for v in lat:
        run = min(run, v)
        best.append(run)
    ax.plot(nums, best, "-", c="tab:blue", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("latency (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(rdir / "history.png", dpi=110)
    plt.close(fig)


def write_report(
    rdir: Path, study: optuna.Study, chosen: int, config: dict[str, Any], *, command: str
) -> Path:
    """Write ``report.md``, ``pareto.png`` and ``history.png`` into ``rdir``; return report.md.

    Args:
        rdir: The report folder (created).
        study: The exported study.
        chosen: The exported trial's number.
        config: What the export's config.json holds.
        command: The command line that writes this export again (no secrets in it).
    """
    rdir.mkdir(parents=True, exist_ok=True)
    _plots(rdir, study, chosen, config)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows = [
        "| layer | fused | rate | kernels alive | tuned (ms) | default config (ms) | speedup |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in config["layers"]:
        dflt = d["default_latency_ms"]
        sp = f"{dflt / d['latency_ms']:.2f}x" if dflt else "n/a"
        ep = d["epilogue"]
        fused = "+".join(k for k in ("batchnorm", "relu", "maxpool") if ep.get(k)) or "-"
        rows.append(
            f"| {d['name']} | {fused} | {d['rate']} | {d['kernels_alive']}/{d['kernels_total']} | "
            f"{d['latency_ms']:.4f} | {dflt if dflt is None else f'{dflt:.4f}'} | {sp} |"
        )
    text = [
        f"# pattune export: study {study.study_name}, trial {chosen}",
        "",
        f"- device type: {config['device_type']} (target {config['target']['name']})",
        f"- patterns: {len(config['pattern_set']['patterns'])}",
        f"- total latency: {config['total_latency_ms']:.4f} ms "
        f"({'measured again for the exported weights' if config.get('latency_remeasured') else 'as tuned'}; "
        f"at tuning {config.get('total_latency_ms_tuning', config['total_latency_ms']):.4f} ms; "
        f"default configs at the same pruning: {config['default_total_latency_ms']:.4f} ms; "
        f"layers run by torch: {_ms(config['untouched_latency_ms'])}, "
        f"{config.get('untouched_method') or 'not timed'} at "
        f"{config.get('untouched_torch_threads') or '-'} torch thread(s))",
        *_network_lines(config.get("network")),
        f"- accuracy: {config['accuracy']:.4f} (dense {config['dense_accuracy']:.4f}, "
        f"drop {config.get('accuracy_drop_points', 0.0):.2f} points, source: "
        f"{config['accuracy_source']}; retraining: {_retrain(config)}; tuning-time estimate "
        f"{config.get('accuracy_estimate', config['accuracy']):.4f})",
        *([f"- note: {config['note']}"] if config.get("note") else []),
        f"- trials complete: {len(complete)}",
        "",
        *rows,
        "",
        "![Pareto front](pareto.png)",
        "![History](history.png)",
        "",
        f"Generated by `{command}`.",
    ]
    path = rdir / "report.md"
    path.write_text("\n".join(text) + "\n")
    return path


def _network_lines(net: dict[str, Any] | None) -> list[str]:
    """The whole network's end-to-end figures (``model/``), when the export has them."""
    if not net:
        return []
    tuned, dflt, torch_ms = net["end_to_end_ms"], net["end_to_end_default_ms"], net["torch_ms"]
    if torch_ms is None:
        torch_text = "torch: not timed (the device type is not this machine)"
    else:
        torch_text = f"torch on this machine {_ms(torch_ms)} ({net['torch_method']})"
        if tuned:
            torch_text += f", {torch_ms / tuned:.2f}x slower than ours"
    err = net["max_rel_err"]
    return [
        f"- whole network end to end (`model/`, one library, {net['threads']} thread(s)): "
        f"tuned configs {_ms(tuned)}, default configs at the same pruning {_ms(dflt)}; "
        f"{torch_text}; arena {net['arena_bytes']} bytes, weights {net['weights_bytes']} "
        f"bytes, max rel. error vs torch {'-' if err is None else f'{err:.1e}'}"
        + (f"; not timed: {net['error']}" if net.get("error") else ""),
    ]


def _retrain(config: dict[str, Any]) -> str:
    r = config.get("retrain") or {}
    if not r.get("retrained"):
        return f"none ({r.get('note') or 'not asked'})"
    epochs = r.get("epochs") or []
    return f"{r['method']}, {len(epochs)} epochs, {r.get('seconds', 0):.0f} s"


__all__ = ["write_makefile", "write_report"]
