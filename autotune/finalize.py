"""What the export ships: the chosen configuration retrained, its kernels verified and re-timed.

:func:`final_model` retrains the trial's configuration with the session's
workload (the example's Fashion-MNIST, or the user's ``--data``/``--train``/
``--evaluate`` hooks; :mod:`search_spaces.retrain`), checkpointing every epoch
under the export folder so a killed export resumes there. Without a workload,
or with ``method="none"``, it falls back to the tuning-time estimate's short
fine-tune and says so. The dense model is judged by the same evaluator, so the
drop is measured like for like.

:func:`remeasure` builds every exported layer's kernel with its tuned
KernelConfig for the retrained weights, verifies it against torch, and measures
it on the device type through the farm (:class:`~autotune.measurers.FarmMeasurer`,
recorded like every tuning measurement). A kernel that fails verification stops
the export; a device that fails leaves the latency unknown, with the reason.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from autotune.measurers import FarmMeasurer
from autotune.session import TuneSession
from codegen import KernelConfig
from pattune_common import PattuneError
from search_spaces.layers import PrunedLayer
from search_spaces.pruning import PruningPlan
from search_spaces.retrain import EpochRecord, RetrainConfig, retrain
from search_spaces.space import Candidate

CHECKPOINT = "retrain/checkpoint.pt"


@dataclass
class FinalModel:
    """The model the export writes.

    Attributes:
        model: Pruned (masks attached), retrained when ``retrained``.
        plan: Its pruning.
        accuracy: Its accuracy by the session's final evaluator.
        dense_accuracy: The dense model's accuracy by the same evaluator.
        method: ``admm``, ``finetune`` or ``none``.
        retrained: Whether it was retrained (False: no workload, or ``none``).
        note: Why it was not retrained, when it was not.
        history: Every retraining epoch.
        seconds: Wall time of the retraining.
        resumed_at: ``(phase, epoch)`` it resumed from a checkpoint, or None.
    """

    model: nn.Module
    plan: PruningPlan
    accuracy: float
    dense_accuracy: float
    method: str
    retrained: bool
    note: str = ""
    history: list[EpochRecord] = field(default_factory=list)
    seconds: float = 0.0
    resumed_at: tuple[str, int] | None = None


def final_model(
    session: TuneSession, cand: Candidate, plan: PruningPlan, config: RetrainConfig, *,
    out: Path, progress: Callable[[EpochRecord, int], None] | None = None,
) -> FinalModel:
    """Retrain the candidate (see the module docstring); ``plan`` is its one-shot pruning."""
    workload = session.workload
    if workload is None or config.method == "none":
        note = ("--retrain none" if config.method == "none" else
                "no training data: pass --data (and --train/--evaluate) to retrain a user model")
        accuracy, pruned = session.accuracy.estimate(plan)
        return FinalModel(pruned, plan, accuracy, session.accuracy.dense(), config.method,
                          retrained=False, note=note)
    t0 = time.perf_counter()
    dense = float(workload.evaluator(session.model))
    res = retrain(
        copy.deepcopy(session.model), session.input_shape, cand.pattern_set,
        cand.prune_config(), workload, config, plan=plan, checkpoint=out / CHECKPOINT,
        progress=progress,
    )
    return FinalModel(res.model, res.plan, res.accuracy, dense, config.method, retrained=True,
                      history=res.history, seconds=time.perf_counter() - t0,
                      resumed_at=res.resumed_at)


@dataclass(frozen=True)
class Remeasured:
    """Per-layer latencies of the exported kernels (milliseconds), or why they are unknown."""

    layer_ms: tuple[float | None, ...]
    error: str | None = None

    @property
    def total_ms(self) -> float | None:
        """Their sum, when every layer was measured."""
        if self.error is not None or any(v is None for v in self.layer_ms):
            return None
        return float(sum(v for v in self.layer_ms if v is not None))


def remeasure(session: TuneSession, layers: Sequence[PrunedLayer],
              configs: Sequence[KernelConfig]) -> Remeasured:
    """Verify and measure each layer's kernel with its tuned config on the device type.

    Raises:
        PattuneError: A kernel does not build or its output differs from torch's
            (an export never ships a wrong kernel).
    """
    measurer = FarmMeasurer(
        records=session.records, device_type=session.options.device_type,
        target=session.target, builder=session.builder(), runner=session.farm(),
        work_dir=session.work_dir / "inputs",
    )
    out: list[float | None] = []
    problems: list[str] = []
    for layer, cfg in zip(layers, configs, strict=True):
        [res] = measurer.measure(layer, [cfg])
        if res.error is not None and res.error.startswith(("build:", "verify:")):
            raise PattuneError(f"export: layer {layer.spec.name}: {res.error}")
        if res.latency_s is None:
            problems.append(f"{layer.spec.name}: {res.error or 'measured by another process'}")
            out.append(None)
        else:
            out.append(res.latency_s * 1e3)
    return Remeasured(tuple(out), "; ".join(problems) or None)
