"""Export the best-found configuration of a study: config, sources, weights, checkpoint, report.

``pattune export --study NAME --out DIR`` writes::

    DIR/config.json          pattern set, per-layer rates and KernelConfigs, per-layer tuned
                             and default-config latencies, totals, accuracy, device type, versions
    DIR/kernels/Makefile     builds every layer's kernel with the device type's compiler
    DIR/kernels/NN_name.c    generated source per pruned layer: conv + bias, with the
                             BatchNorm, ReLU and 2x2 max-pool after it fused in (each
                             layer's "epilogue")
    DIR/kernels/NN_name.fkw  its weight file (FKW format), read by pt_init / the executable
    DIR/model/               the whole network as one library: pattune_model.h, sources,
                             Makefile, static and shared library, run_model, weights.bin,
                             model.json, measure_jobs.jsonl, pattune_model.py (ctypes);
                             verified against torch before it is written
                             (:mod:`autotune.export_model`)
    DIR/pruned.pt            the pruned (masked, briefly fine-tuned) torch state_dict, BatchNorm
                             not folded: loaded into the model it gives the model's outputs,
                             and each kernel's output equals its epilogue's last module's
    DIR/report/report.md     summary table; pareto.png and history.png beside it

:func:`export_study` returns an :class:`ExportResult`: those paths and the
exported trial's figures. The trial's tuning is read back as a
:class:`~autotune.results.TrialResult`; the candidate is pruned once, and the
same plan gives the fine-tuned model and the exported layers.

Nothing in the export holds a secret: inventory credentials are never stored in
the study, and the storage URL is written with its password redacted.
"""

from __future__ import annotations

import json
import platform
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.export_files import write_makefile, write_report
from autotune.export_model import ModelExport, check_network, write_model
from autotune.finalize import FinalModel, Remeasured, final_model, remeasure
from autotune.results import LayerResult, TrialResult, read_trial
from autotune.session import TuneSession
from autotune.study import OWNER_ATTR
from codegen import generate
from pattune_common import UserInputError
from pattune_common.storage import redact_url
from search_spaces.artifacts import layer_stem
from search_spaces.fusion import Epilogue, find_epilogues
from search_spaces.layers import PrunedLayer
from search_spaces.masking import pruned_state_dict
from search_spaces.pruning import plan_pruning
from search_spaces.retrain import EpochRecord, RetrainConfig
from search_spaces.space import Candidate

OPTIONS_ATTR = "pattune:options"

KERNELS_COMPUTE = (
    "each kernel: conv2d of the masked weights + bias, with the layer's epilogue "
    "fused: its BatchNorm (eval statistics) folded into weights and bias, then its "
    "ReLU, then its 2x2/stride-2 max-pool (floor mode); the kernel's output is the "
    "output of the epilogue's last module"
)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and the figures of the model it exported.

    Attributes:
        out: The export folder.
        config_json: ``config.json``.
        kernels_dir: The ``kernels/`` folder (sources, FKW weights, Makefile).
        weights: Each exported layer's FKW weight file, in model order.
        checkpoint: ``pruned.pt``, the pruned (and retrained) torch state_dict.
        model_dir: ``model/``, the whole network as one library (C API, weights, loader).
        report: ``report/report.md`` (the plots beside it).
        study: The study's name.
        trial: The exported trial's number.
        latency_ms: The exported model's latency on the device type (milliseconds):
            ``model/``'s library timed end to end on the device type; where that failed,
            its kernels' sum (``note`` says why).
        end_to_end_default_ms: ``model/``'s network with default KernelConfigs, timed alike.
        torch_ms: torch on the same model on this machine (local device type), else None.
        latency_tuning_ms: The trial's latency as tuned (one-shot weights).
        default_latency_ms: The same pruning with default KernelConfigs (at tuning).
        accuracy: The exported model's accuracy (after retraining).
        accuracy_estimate: The trial's tuning-time accuracy estimate.
        dense_accuracy: The unpruned model's accuracy by the same evaluator as ``accuracy``.
        drop_points: ``100 * (dense_accuracy - accuracy)``.
        retrain: ``admm``, ``finetune`` or ``none``.
        retrained: Whether the model was retrained (``note`` says why not).
        note: What the export could not do as asked (no trial within the drop, no
            training data, a device that did not answer), else "".
    """

    out: Path
    config_json: Path
    kernels_dir: Path
    weights: tuple[Path, ...]
    checkpoint: Path
    model_dir: Path
    report: Path
    study: str
    trial: int
    latency_ms: float
    latency_tuning_ms: float
    default_latency_ms: float
    accuracy: float
    accuracy_estimate: float
    dense_accuracy: float
    drop_points: float
    retrain: str
    retrained: bool
    end_to_end_default_ms: float | None = None
    torch_ms: float | None = None
    note: str = ""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("pattune", "torch", "optuna", "xgboost", "numpy", "sqlalchemy", "paramiko"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def pick_trial(
    study: optuna.Study, *, trial: int | None, max_drop: float, dense: float
) -> tuple[FrozenTrial, str]:
    """The trial to export, and a note when no trial met the accuracy bound.

    ``trial`` picks one by number. Otherwise the fastest trial whose accuracy
    estimate is within ``max_drop`` of ``dense`` (the unpruned model's accuracy by
    the same estimate's evaluator: the meaning ``pattune tune --max-accuracy-drop``
    gives it), among the Pareto front of a two-objective study or all complete
    trials of a latency study. When none is, the most accurate of them is
    exported and the note says so.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserInputError(
            f"study {study.study_name!r} has no complete trial yet: run pattune tune first"
        )
    if trial is not None:
        for t in complete:
            if t.number == trial:
                return t, ""
        raise UserInputError(
            f"trial {trial} of study {study.study_name!r} is not complete; complete trials are "
            f"{', '.join(str(t.number) for t in complete[:20])}"
        )
    pool = list(study.best_trials) if len(study.directions) > 1 else complete
    ok = [t for t in pool if dense - _accuracy(t) <= max_drop + 1e-12]
    if ok:
        return min(ok, key=lambda t: t.values[0]), ""
    best = max(pool, key=_accuracy)
    note = (f"no trial's accuracy estimate is within {100 * max_drop:.2f} points of the dense "
            f"{dense:.4f}; exported the most accurate, trial {best.number} "
            f"({100 * (dense - _accuracy(best)):.2f} points below before retraining)")
    return best, note


def _accuracy(t: FrozenTrial) -> float:
    return float(t.user_attrs.get("pattune:accuracy", t.values[-1]))


def _matching(layer: PrunedLayer, tuned: LayerResult | None, epilogue: Epilogue) -> LayerResult:
    """The trial's record of ``layer``, checked to describe the same pruned layer."""
    if (
        tuned is None
        or tuned.kernels_alive != layer.kernels_alive
        or (tuned.epilogue is not None and tuned.epilogue.to_dict() != epilogue.to_dict())
    ):
        raise UserInputError(
            f"layer {layer.spec.name}: the model differs from the one the study tuned; "
            "export with the same --model"
        )
    return tuned


def _write_kernels(
    kdir: Path, layers: list[PrunedLayer], result: TrialResult,
    epilogues: dict[str, Epilogue], session: TuneSession,
) -> list[tuple[LayerResult, str, bool]]:
    """Generate every layer's source and FKW weights; return (record, stem, uses OpenMP)."""
    kdir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, layer in enumerate(layers):
        epilogue = epilogues.get(layer.spec.name, Epilogue(layer.spec.name))
        tuned = _matching(layer, result.layer(layer.spec.name), epilogue)
        kernel = generate(layer, tuned.config, session.target)
        stem = layer_stem(i, layer.spec.name)
        (kdir / f"{stem}.c").write_text(kernel.source)
        (kdir / f"{stem}.fkw").write_bytes(kernel.weights)
        written.append((tuned, stem, kernel.threads > 1))
    stems = [(stem, omp) for _, stem, omp in written]
    write_makefile(kdir / "Makefile", stems, target=session.target,
                   device_type=session.options.device_type)
    return written


def _config(
    session: TuneSession, chosen: FrozenTrial, cand: Candidate, result: TrialResult,
    written: list[tuple[LayerResult, str, bool]], epilogues: dict[str, Epilogue],
    final: FinalModel, latency: Remeasured, retrain_config: RetrainConfig, note: str,
    network: ModelExport,
) -> dict[str, Any]:
    """The content of config.json (schema ``pattune.export/2``)."""
    opts = session.options
    total = latency.total_ms
    exported_ms = result.latency_ms if total is None else total + (result.untouched_ms or 0.0)
    if network.tuned.ms is not None:
        exported_ms = network.tuned.ms
    return {
        "schema": "pattune.export/2",
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
        "kernels_compute": KERNELS_COMPUTE,
        "layers": [
            {
                **tuned.to_dict(),
                "latency_ms_exported": ms,
                "epilogue": epilogues.get(tuned.name, Epilogue(tuned.name)).to_dict(),
                "rate": cand.rate_of(tuned.name),
                "source": f"kernels/{stem}.c",
                "weights": f"kernels/{stem}.fkw",
            }
            for (tuned, stem, _), ms in zip(written, latency.layer_ms, strict=True)
        ],
        "total_latency_ms": exported_ms,
        "latency_source": "network" if network.tuned.ms is not None else "sum",
        "network": network.to_config(),
        "total_latency_ms_tuning": result.latency_ms,
        "latency_source_tuning": result.latency_source,
        "latency_remeasured": total is not None,
        "latency_note": latency.error or "",
        "tuned_layers_latency_ms": result.tuned_ms if total is None else total,
        "default_total_latency_ms": result.default_total_ms,
        "default_layers_latency_ms": result.default_ms,
        "untouched_latency_ms": result.untouched_ms,
        "untouched_method": result.untouched_method,
        "untouched_torch_threads": result.untouched_threads,
        "accuracy": final.accuracy,
        "accuracy_estimate": result.accuracy,
        "dense_accuracy": final.dense_accuracy,
        "accuracy_drop_points": 100 * (final.dense_accuracy - final.accuracy),
        "accuracy_source": session.workload.name if final.retrained and session.workload
        else session.accuracy.name,
        "retrain": {
            "method": final.method, "retrained": final.retrained, "note": final.note,
            "config": retrain_config.to_dict(), "seconds": round(final.seconds, 1),
            "resumed_at": list(final.resumed_at) if final.resumed_at else None,
            "epochs": [r.to_dict() for r in final.history],
        },
        "note": note,
        "versions": _versions(),
    }


def _command(session: TuneSession, out: Path, trial: int | None, max_drop: float) -> str:
    """The ``pattune export`` command line that writes this export again (password redacted)."""
    o = session.options
    args = ["pattune", "export", "--study", o.study, "--storage", redact_url(o.storage),
            "--out", str(out)]  # fmt: skip
    if trial is not None:
        args += ["--trial", str(trial)]
    args += ["--max-accuracy-drop", str(max_drop)]
    return " ".join(shlex.quote(a) for a in args)


def export_study(
    session: TuneSession, *, out: str | Path, trial: int | None = None, max_drop: float = 0.01,
    retrain: RetrainConfig | None = None,
    progress: Callable[[EpochRecord, int], None] | None = None,
) -> ExportResult:
    """Write the export of ``session``'s study to ``out``.

    Args:
        session: The study's model, target and storage, resolved from its stored options.
        out: The export folder (created).
        trial: Export this trial instead of the best.
        max_drop: Pick the fastest trial whose accuracy estimate is within this of
            the dense model's (as ``pattune tune --max-accuracy-drop`` counts).
        retrain: How to retrain the chosen configuration (default: ADMM,
            :class:`~search_spaces.retrain.RetrainConfig`).
        progress: Called after every retraining epoch with the record and the total.

    Raises:
        UserInputError: No such study, no complete trial, no such trial, or a
            model other than the one the study tuned.
        PattuneError: An exported kernel does not match torch.
    """
    opts = session.options
    retrain = retrain or RetrainConfig()
    try:
        study = optuna.load_study(study_name=opts.study, storage=session.records.url)
    except KeyError:
        raise UserInputError(
            f"no study named {opts.study!r} in {redact_url(opts.storage)}: "
            "check --study and --storage"
        ) from None
    check_network(session)  # an op the runtime cannot run: refused before any work
    chosen, note = pick_trial(study, trial=trial, max_drop=max_drop,
                              dense=session.accuracy.dense())
    cand, result = read_trial(session.records, opts.study, chosen)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    # The one-shot plan the trial was tuned at; ADMM re-plans from its trained weights
    # (same rates, so the same number of kernels per layer and the tuned configs hold).
    plan = plan_pruning(session.model, session.input_shape, cand.pattern_set, cand.prune_config())
    final = final_model(session, cand, plan, retrain, out=out_dir, progress=progress)
    epilogues = find_epilogues(final.model)
    layers = final.plan.pruned_layers(final.model, fuse=True)
    written = _write_kernels(out_dir / "kernels", layers, result, epilogues, session)
    latency = remeasure(session, layers, [tuned.config for tuned, _, _ in written])
    network = write_model(session, final.model, {
        layer.spec.name: (layer, tuned.config) for layer, (tuned, _, _) in zip(
            layers, written, strict=True)}, out_dir)

    import torch

    torch.save(pruned_state_dict(final.model), out_dir / "pruned.pt")
    notes = [n for n in (note, final.note, latency.error and f"latency not measured again: "
                         f"{latency.error}", network.tuned.error and "whole network not timed: "
                         f"{network.tuned.error}") if n]
    config = _config(session, chosen, cand, result, written, epilogues, final, latency,
                     retrain, "; ".join(notes), network)
    path = out_dir / "config.json"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    report = write_report(out_dir / "report", study, chosen.number, config,
                          command=_command(session, out_dir, trial, max_drop))
    return ExportResult(
        out=out_dir,
        config_json=path,
        kernels_dir=out_dir / "kernels",
        weights=tuple(out_dir / "kernels" / f"{stem}.fkw" for _, stem, _ in written),
        checkpoint=out_dir / "pruned.pt",
        model_dir=network.folder,
        report=report,
        study=opts.study,
        trial=chosen.number,
        latency_ms=config["total_latency_ms"],
        latency_tuning_ms=result.latency_ms,
        default_latency_ms=result.default_total_ms,
        accuracy=final.accuracy,
        accuracy_estimate=result.accuracy,
        dense_accuracy=final.dense_accuracy,
        drop_points=config["accuracy_drop_points"],
        retrain=final.method,
        retrained=final.retrained,
        end_to_end_default_ms=network.default.ms,
        torch_ms=None if network.torch is None else network.torch.ms,
        note="; ".join(notes),
    )


__all__ = ["OPTIONS_ATTR", "OWNER_ATTR", "ExportResult", "export_study", "pick_trial"]
