"""The joint tuner: one outer trial = prune, tune every layer's kernel, estimate accuracy.

For a :class:`~search_spaces.space.Candidate` the tuner plans the pruning once
(pattern set, per-layer rates), builds the one-shot :class:`PrunedLayer` of each
3x3 conv (with the BatchNorm, ReLU and 2x2 max-pool that follow it fused in, as
the generated kernel computes them: :mod:`search_spaces.fusion`), runs one
:class:`~autotune.task.KernelTask` per layer on the device
type (results shared through the records database by every trial, study and
process that meets the same key), sums the tuned per-layer medians plus the
untouched layers, and asks the accuracy source for the candidate's accuracy
(of the same plan). What a trial found is a :class:`~autotune.results.TrialResult`
of :class:`~autotune.results.LayerResult` s, stored in the trial's attributes.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotune.cost_model.manager import CostModelManager
from autotune.measurers import FarmMeasurer
from autotune.network_latency import NetworkLatency, NetworkTimer, pruned_copy
from autotune.results import STUDY_ATTRS, LayerResult, TrialResult
from autotune.session import TuneSession
from autotune.strategies import TaskContext
from autotune.study import TrialOutcome
from autotune.task import KernelTask, TaskResult
from autotune.untouched import UntouchedTime, rest_time_ms
from codegen import config_space
from search_spaces.fusion import Epilogue, find_epilogues
from search_spaces.layers import PrunedLayer
from search_spaces.pruning import PruningPlan, plan_pruning
from search_spaces.space import Candidate

log = logging.getLogger(__name__)


@dataclass
class TunerStats:
    """Counters for the progress display and the overhead report (seconds)."""

    trials: int = 0
    measured: int = 0
    reused: int = 0
    filtered: int = 0
    failed: int = 0
    accuracy_s: float = 0.0
    task_s: float = 0.0
    best_latency_ms: float | None = None
    best_accuracy: float | None = None
    last_error: str = ""
    per_layer_tasks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Tuner:
    """Evaluates candidates for an :class:`~autotune.study.OuterStudy`.

    Args:
        session: The resolved model, devices, target, records and space.
        on_progress: Called after every kernel batch and trial with the stats.
        known: (latency ms, accuracy) of trials already in the study.
        refine_after: Trials before refinement starts (the first trials are the
            sampler's random start-up; the front means little until then).
    """

    def __init__(
        self,
        session: TuneSession,
        *,
        on_progress: Callable[[TunerStats], None] | None = None,
        known: list[tuple[float, float]] | None = None,
        refine_after: int = 5,
    ) -> None:
        self.session = session
        self.refine_after = refine_after
        self.known: list[tuple[float, float]] = list(known or [])
        self.stats = TunerStats()
        self.on_progress = on_progress or (lambda s: None)
        o = session.options
        self.models = CostModelManager(
            records=session.records, device_type=o.device_type, seed=o.seed
        )
        self.measurer = FarmMeasurer(
            records=session.records,
            device_type=o.device_type,
            target=session.target,
            builder=session.builder(),
            runner=session.farm(),
            work_dir=session.work_dir / "inputs",
        )
        self._untouched: UntouchedTime | None = None
        self._epilogues: dict[str, Epilogue] | None = None
        self.network = NetworkTimer(target=session.target, runner=session.farm(),
                                    work_dir=session.work_dir / "networks",
                                    threads=self.untouched_threads)

    # -- pieces -------------------------------------------------------------

    def tune_layer(self, layer: PrunedLayer, *, seed: int, budget: int | None = None) -> TaskResult:
        """Run the layer's kernel-tuning task within ``budget`` (default: the space's).

        A depthwise layer gets its default config only: the whole network runs it as the
        network runtime's depthwise op (docs/network.md), so searching its kernel's
        configs would buy nothing the end-to-end latency sees.
        """
        s = self.session
        k = s.space.kernel
        if layer.spec.is_depthwise:
            budget = 1
        space = config_space(layer.spec, s.target, **k.fixed_for(layer.spec.name))
        task = KernelTask(
            layer=layer,
            context=TaskContext.of(layer),
            space=space,
            measurer=self.measurer,
            models=self.models,
            strategy=s.options.strategy,
            budget=budget or k.budget,
            batch=8,
            candidates_per_measure=k.candidates_per_measure,
            seed=seed,
        )
        return task.run()

    @property
    def epilogues(self) -> dict[str, Epilogue]:
        """Per conv name, the BatchNorm / ReLU / max-pool its generated kernel computes."""
        if self._epilogues is None:
            self._epilogues = find_epilogues(self.session.model)
        return self._epilogues

    def _on_front(self, latency_ms: float, accuracy: float) -> bool:
        """Whether no known trial is at least as fast and as accurate (and better in one)."""
        return not any(
            lat <= latency_ms and acc >= accuracy and (lat < latency_ms or acc > accuracy)
            for lat, acc in self.known
        )

    @property
    def untouched_threads(self) -> int:
        """torch threads for the untouched layers: the device's ``threads`` setting, else 1."""
        return self.session.devices[0].threads or 1

    def untouched(self) -> UntouchedTime | None:
        """Latency of the layers pattune does not generate (local device type only).

        Measured once with torch on this machine: the model's graph without the
        generated kernels, frozen by TorchScript (eager with stubs for models
        ``torch.fx`` cannot trace; :mod:`autotune.untouched`), at
        :attr:`untouched_threads` threads; None for remote device types, where
        it is not known.
        """
        if self.session.options.device_type != "local":
            return None
        if self._untouched is None:
            self._untouched = rest_time_ms(
                self.session.model,
                self.session.input_shape,
                skip={c.name for c in self.session.layers},
                epilogues=self.epilogues,
                threads=self.untouched_threads,
            )
        return self._untouched

    @property
    def untouched_measured(self) -> UntouchedTime | None:
        """The untouched-layer timing if a trial has measured it, else None (measures nothing)."""
        return self._untouched

    def untouched_ms(self) -> float | None:
        """:meth:`untouched`'s milliseconds, or None."""
        u = self.untouched()
        return None if u is None else u.ms

    def network_latency(self, plan: PruningPlan, layers: list[PrunedLayer],
                        per_layer: list[LayerResult], trial_number: int) -> NetworkLatency:
        """The trial's whole network (tuned configs) built, verified and timed on the type.

        The build folder is removed afterwards (its objects stay in the compiler's cache).
        """
        s = self.session
        model = pruned_copy(s.model, plan)
        tuned = {r.name: r.config for r in per_layer}
        pattern = {layer.spec.name: (layer, tuned[layer.spec.name]) for layer in layers}
        name = f"trial-{trial_number}-{s.options.seed}"
        try:
            return self.network.measure(model, s.input_shape, pattern, name)
        finally:
            shutil.rmtree(self.network.work_dir / name, ignore_errors=True)

    # -- one trial ----------------------------------------------------------

    def _tune_all(
        self, layers: list[PrunedLayer], budget: int | None
    ) -> tuple[list[LayerResult], float, float]:
        """Tune every layer; return its records, the tuned and the default sums (ms)."""
        st = self.stats
        per_layer = []
        for i, layer in enumerate(layers):
            res = self.tune_layer(layer, seed=self.session.options.seed + i, budget=budget)
            st.measured += res.measured
            st.reused += res.reused
            st.filtered += res.filtered
            st.failed += res.failed
            st.per_layer_tasks += 1
            self.on_progress(st)
            epilogue = self.epilogues.get(layer.spec.name, Epilogue(layer.spec.name))
            per_layer.append(LayerResult.from_task(layer, res, epilogue))
        tuned_ms = sum(r.latency_ms for r in per_layer)
        default_ms = sum(
            np.nan if r.default_latency_ms is None else r.default_latency_ms for r in per_layer
        )
        return per_layer, tuned_ms, default_ms

    def evaluate(self, cand: Candidate, trial_number: int) -> TrialOutcome:
        """Latency (ms) and accuracy of one candidate.

        The candidate's pruning is planned once: the same plan gives the
        accuracy estimate its pruned model and the kernel tasks their one-shot
        pruned layers. Each layer's task gets the space's ``budget``; when the
        candidate lands on the Pareto front of (latency, accuracy) of the trials
        so far, its tasks are topped up to ``refine_budget``: the export comes
        from the front, so that is where tuning effort pays.
        """
        st = self.stats
        s = self.session
        t1 = time.perf_counter()
        plan = plan_pruning(s.model, s.input_shape, cand.pattern_set, cand.prune_config())
        accuracy, _ = s.accuracy.estimate(plan)
        st.accuracy_s += time.perf_counter() - t1
        t0 = time.perf_counter()
        layers = plan.pruned_layers(s.model, fuse=True)
        per_layer, tuned_ms, default_ms = self._tune_all(layers, None)
        untouched = self.untouched_ms()
        latency_ms = tuned_ms + (untouched or 0.0)
        refined = False
        if len(self.known) >= self.refine_after and self._on_front(latency_ms, accuracy):
            kernel = s.space.kernel
            if kernel.refine_budget > kernel.budget:
                per_layer, tuned_ms, default_ms = self._tune_all(layers, kernel.refine_budget)
                latency_ms = tuned_ms + (untouched or 0.0)
                refined = True
        # What the trial tells Optuna is the whole network timed on the device type; the
        # per-layer sum only where the network could not be built or run (recorded).
        net = self.network_latency(plan, layers, per_layer, trial_number)
        if net.ms is not None:
            latency_ms = net.ms
        else:
            log.warning("trial %d: whole network not measured (%s); latency is the sum of "
                        "the layers%s", trial_number, net.error,
                        "" if untouched is not None else " without the untouched ones")
            st.last_error = net.error
        self.known.append((latency_ms, accuracy))
        st.task_s += time.perf_counter() - t0
        st.trials += 1
        if st.best_latency_ms is None or latency_ms < st.best_latency_ms:
            st.best_latency_ms = latency_ms
        if st.best_accuracy is None or accuracy > st.best_accuracy:
            st.best_accuracy = accuracy
        self.on_progress(st)
        u = self._untouched
        result = TrialResult(
            latency_ms=latency_ms,
            accuracy=accuracy,
            layers=tuple(per_layer),
            tuned_ms=tuned_ms,
            default_ms=default_ms,
            untouched_ms=untouched,
            untouched_method=None if u is None else u.method,
            untouched_threads=None if u is None else u.threads,
            refined=refined,
            network_ms=net.ms,
            network_error=net.error or None,
            latency_source="network" if net.ms is not None else "sum",
        )
        # The per-layer detail goes to the records; the study records the two values itself.
        s.records.save_trial_detail(study=s.options.study, trial_number=trial_number,
                                    layers=result.layers_json())
        attrs = {k: v for k, v in result.to_attrs().items() if k not in STUDY_ATTRS}
        return TrialOutcome(latency_ms=latency_ms, accuracy=accuracy, attrs=attrs)
