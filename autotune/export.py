"""Export the best-found configuration of a study: config, sources, weights, checkpoint, report.

``pattune export --study NAME --out DIR`` writes::

    DIR/config.json          pattern set, per-layer rates and KernelConfigs, per-layer tuned
                             and default-config latencies, totals, accuracy, device type, versions
    DIR/kernels/Makefile     builds every layer's kernel with the device type's compiler
    DIR/kernels/NN_name.c    generated source per pruned layer: conv + bias, with the
                             BatchNorm, ReLU and 2x2 max-pool after it fused in (each
                             layer's "epilogue")
    DIR/kernels/NN_name.fkw  its weight file (FKW format), read by pt_init / the executable
    DIR/pruned.pt            the pruned (masked, briefly fine-tuned) torch state_dict, BatchNorm
                             not folded: loaded into the model it gives the model's outputs,
                             and each kernel's output equals its epilogue's last module's
    DIR/report/report.md     summary table; pareto.png and history.png beside it

Nothing in the export holds a secret: inventory credentials are never stored in
the study, and the storage URL is written with its password redacted.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.records import redact_url
from autotune.session import TuneSession
from autotune.study import OWNER_ATTR
from codegen import KernelConfig, generate
from pattune_common import UserInputError
from search_spaces.artifacts import layer_stem
from search_spaces.fusion import Epilogue, find_epilogues
from search_spaces.masking import pruned_state_dict
from search_spaces.pruning import plan_pruning
from search_spaces.space import Candidate

OPTIONS_ATTR = "pattune:options"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("pattune", "torch", "optuna", "xgboost", "numpy", "sqlalchemy", "paramiko"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def pick_trial(study: optuna.Study, *, trial: int | None, max_drop: float) -> FrozenTrial:
    """The trial to export.

    ``trial`` picks one by number. Otherwise: for a single-objective study its
    best feasible trial; for a Pareto study the fastest trial on the front whose
    accuracy is within ``max_drop`` of the most accurate trial of the study (the
    accuracy estimates are cheap and biased low, so the reference is the best
    estimate, not the dense model).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserInputError(
            f"study {study.study_name!r} has no complete trial yet: run pattune tune first"
        )
    if trial is not None:
        for t in complete:
            if t.number == trial:
                return t
        raise UserInputError(
            f"trial {trial} of study {study.study_name!r} is not complete; complete trials are "
            f"{', '.join(str(t.number) for t in complete[:20])}"
        )
    if len(study.directions) == 1:
        feasible = [t for t in complete if t.user_attrs.get("pattune:constraint", 0.0) <= 0]
        return min(feasible or complete, key=lambda t: t.values[0])
    top = max(t.values[1] for t in complete)
    ok = [t for t in study.best_trials if top - t.values[1] <= max_drop]
    return min(ok, key=lambda t: t.values[0])


def export_study(
    session: TuneSession, *, out: str | Path, trial: int | None = None, max_drop: float = 0.01
) -> Path:
    """Write the export of ``session``'s study to ``out``; return the config.json path."""
    opts = session.options
    try:
        study = optuna.load_study(study_name=opts.study, storage=session.records.url)
    except KeyError:
        raise UserInputError(
            f"no study named {opts.study!r} in {redact_url(opts.storage)}: "
            "check --study and --storage"
        ) from None
    dense = session.accuracy.dense()
    chosen = pick_trial(study, trial=trial, max_drop=max_drop)
    cand = Candidate.from_dict(chosen.user_attrs["pattune:candidate"])
    layers_attr = {d["name"]: d for d in chosen.user_attrs["pattune:layers"]}
    out_dir = Path(out)
    kdir = out_dir / "kernels"
    kdir.mkdir(parents=True, exist_ok=True)

    # One plan: the fine-tune masks by it, and the exported kernels carry the final
    # (fine-tuned) weights with the same patterns and alive kernels as the tuned
    # one-shot layers, so the tuned KernelConfigs and latencies hold.
    plan = plan_pruning(session.model, session.input_shape, cand.pattern_set, cand.prune_config())
    accuracy, pruned_model = session.accuracy.estimate(plan)
    pruned_layers = plan.pruned_layers(pruned_model, fuse=True)
    epilogues = find_epilogues(pruned_model)
    stems = []
    for i, layer in enumerate(pruned_layers):
        info = layers_attr.get(layer.spec.name)
        epilogue = epilogues.get(layer.spec.name, Epilogue(layer.spec.name)).to_dict()
        if (
            info is None
            or info["kernels_alive"] != layer.kernels_alive
            or info.get("epilogue", epilogue) != epilogue
        ):
            raise UserInputError(
                f"layer {layer.spec.name}: the model differs from the one the study tuned; "
                "export with the same --model"
            )
        cfg = KernelConfig.from_dict(info["config"])
        kernel = generate(layer, cfg, session.target)
        stem = layer_stem(i, layer.spec.name)
        (kdir / f"{stem}.c").write_text(kernel.source)
        (kdir / f"{stem}.fkw").write_bytes(kernel.weights)
        stems.append((stem, kernel.threads > 1))
    _makefile(kdir / "Makefile", stems, session)

    import torch

    torch.save(pruned_state_dict(pruned_model), out_dir / "pruned.pt")

    per_layer = [layers_attr[layer.spec.name] for layer in pruned_layers]
    config = {
        "schema": "pattune.export/1",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "study": opts.study,
        "storage": redact_url(opts.storage),
        "trial": chosen.number,
        "model": opts.model,
        "input_shape": list(session.input_shape),
        "device_type": opts.device_type,
        "target": session.target.to_dict(),
        "pattern_set": cand.pattern_set.to_dict(),
        "pattern_set_ascii": [str(p).split("\n") for p in cand.pattern_set],
        "rates": dict(cand.rates),
        "kernels_compute": (
            "each kernel: conv2d of the masked weights + bias, with the layer's epilogue "
            "fused: its BatchNorm (eval statistics) folded into weights and bias, then its "
            "ReLU, then its 2x2/stride-2 max-pool (floor mode); the kernel's output is the "
            "output of the epilogue's last module"
        ),
        "layers": [
            {
                **d,
                "epilogue": epilogues.get(d["name"], Epilogue(d["name"])).to_dict(),
                "rate": cand.rate_of(d["name"]),
                "source": f"kernels/{s}.c",
                "weights": f"kernels/{s}.fkw",
            }
            for d, (s, _) in zip(per_layer, stems, strict=True)
        ],
        "total_latency_ms": chosen.user_attrs["pattune:latency_ms"],
        "tuned_layers_latency_ms": chosen.user_attrs["pattune:tuned_ms"],
        "default_total_latency_ms": chosen.user_attrs["pattune:default_ms"]
        + (chosen.user_attrs.get("pattune:untouched_ms") or 0.0),
        "default_layers_latency_ms": chosen.user_attrs["pattune:default_ms"],
        "untouched_latency_ms": chosen.user_attrs.get("pattune:untouched_ms"),
        "untouched_method": chosen.user_attrs.get("pattune:untouched_method"),
        "untouched_torch_threads": chosen.user_attrs.get("pattune:untouched_threads"),
        "accuracy": chosen.user_attrs["pattune:accuracy"],
        "accuracy_at_export": accuracy,
        "dense_accuracy": dense,
        "accuracy_source": session.accuracy.name,
        "versions": _versions(),
    }
    path = out_dir / "config.json"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    _report(out_dir / "report", study, chosen, config)
    return path


def _makefile(path: Path, stems: list[tuple[str, bool]], session: TuneSession) -> None:
    t = session.target
    flags = " ".join(shlex.quote(f) for f in t.compile_flags())
    ld = " ".join(shlex.quote(f) for f in (*t.ldflags, *(["-static"] if t.static else [])))
    lines = [
        f"# Kernels for device type {session.options.device_type} (target {t.name}).",
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


def _report(rdir: Path, study: optuna.Study, chosen: FrozenTrial, config: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rdir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    lat = [t.user_attrs["pattune:latency_ms"] for t in complete]
    acc = [t.user_attrs["pattune:accuracy"] for t in complete]
    front = {t.number for t in study.best_trials} if len(study.directions) > 1 else set()

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(lat, acc, s=14, c="0.6", label="trials")
    if front:
        pts = sorted(
            (t.user_attrs["pattune:latency_ms"], t.user_attrs["pattune:accuracy"])
            for t in complete
            if t.number in front
        )
        ax.plot(*zip(*pts, strict=True), "o-", c="tab:blue", label="Pareto front")
    ax.scatter(
        [config["total_latency_ms"]],
        [config["accuracy"]],
        marker="*",
        s=160,
        c="tab:red",
        label=f"exported (trial {chosen.number})",
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
        f"# pattune export: study {study.study_name}, trial {chosen.number}",
        "",
        f"- device type: {config['device_type']} (target {config['target']['name']})",
        f"- patterns: {len(config['pattern_set']['patterns'])}",
        f"- total latency: {config['total_latency_ms']:.4f} ms "
        f"(default configs at the same pruning: {config['default_total_latency_ms']:.4f} ms; "
        f"layers run by torch: {_ms(config['untouched_latency_ms'])}, "
        f"{config.get('untouched_method') or 'not timed'} at "
        f"{config.get('untouched_torch_threads') or '-'} torch thread(s))",
        f"- accuracy: {config['accuracy']:.4f} (dense {config['dense_accuracy']:.4f}, "
        f"source: {config['accuracy_source']})",
        f"- trials complete: {len(complete)}",
        "",
        *rows,
        "",
        "![Pareto front](pareto.png)",
        "![History](history.png)",
        "",
        f"Generated by `{' '.join(shlex.quote(a) for a in ['pattune', *sys.argv[1:]])}`.",
    ]
    (rdir / "report.md").write_text("\n".join(text) + "\n")


__all__ = ["OPTIONS_ATTR", "OWNER_ATTR", "export_study", "pick_trial"]
