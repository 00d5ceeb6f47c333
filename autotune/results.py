"""What a tuning trial leaves in its study: one record per tuned layer, one per trial.

The tuner builds a :class:`LayerResult` from each kernel task's
:class:`~autotune.task.TaskResult` and a :class:`TrialResult` from those. The
trial's short scalars (latency, sums, untouched time, ``refined``, the number of
layers) go into the Optuna trial's user attributes (:meth:`TrialResult.to_attrs`),
one attribute per figure as optuna-dashboard shows them; the per-layer results and
the candidate go into the records (``pt_trial_details``), and :func:`read_trial`
reads both back as records, never by dict key.

Studies written before revision 0003 kept the per-layer list as the
``pattune:layers`` attribute and the candidate as ``pattune:candidate``; the
readers take those too, so such studies still export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from autotune.task import TaskResult
from codegen import KernelConfig
from pattune_common import Record
from search_spaces.fusion import Epilogue
from search_spaces.layers import PrunedLayer
from search_spaces.space import Candidate

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from autotune.records import RecordsDB

#: Prefix of every trial attribute pattune writes.
ATTR_PREFIX = "pattune:"
#: The two attributes the outer study writes itself (the trial's values).
STUDY_ATTRS = ("pattune:latency_ms", "pattune:accuracy")


@dataclass(frozen=True)
class LayerResult(Record):
    """One pruned layer's kernel tuning, as a trial recorded it (milliseconds).

    Attributes:
        name: The conv's module name.
        key: The kernel task's key, ``device_type/signature/weights-hash``.
        weights_hash: The pruned (and epilogue-fused) layer's weights hash.
        epilogue: What its generated kernel computes besides the conv; None in
            studies written before epilogues were fused.
        config: The fastest KernelConfig found.
        latency_ms: Its median latency.
        default_config: The layer's default KernelConfig.
        default_latency_ms: Its median latency, or None if it failed.
        configs_measured: Configs with a result (measured, reused or failed).
        nonzeros: Non-zero weights of the pruned layer.
        kernels_alive: 3x3 kernels left after connectivity pruning.
        kernels_total: 3x3 kernels of the dense layer.
    """

    name: str
    key: str
    weights_hash: str
    epilogue: Epilogue | None
    config: KernelConfig
    latency_ms: float
    default_config: KernelConfig
    default_latency_ms: float | None
    configs_measured: int
    nonzeros: int
    kernels_alive: int
    kernels_total: int

    schema = "layer_result"

    @classmethod
    def from_task(
        cls, layer: PrunedLayer, result: TaskResult, epilogue: Epilogue
    ) -> LayerResult:
        """The record of one finished kernel task.

        Raises:
            RuntimeError: Every config of the task failed (the trial fails with
                this message; a failing trial is a record of the study).
        """
        if result.best is None or result.best_s is None:
            raise RuntimeError(f"layer {layer.spec.name}: every kernel config failed")
        return cls(
            name=layer.spec.name,
            key=result.key,
            weights_hash=layer.weights_hash,
            epilogue=epilogue,
            config=result.best,
            latency_ms=result.best_s * 1e3,
            default_config=result.default,
            default_latency_ms=None if result.default_s is None else result.default_s * 1e3,
            configs_measured=result.measured + result.reused + result.failed,
            nonzeros=layer.nonzeros,
            kernels_alive=layer.kernels_alive,
            kernels_total=layer.kernels_total,
        )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.epilogue is None:
            del d["epilogue"]  # as studies written before epilogues were fused stored it
        else:
            # The epilogue's JSON form leaves out the conv's name, which is ``name`` here.
            d["epilogue"] = self.epilogue.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerResult:
        d = dict(data)
        epilogue = d.pop("epilogue", None)
        d["config"] = KernelConfig.from_dict(d["config"])
        d["default_config"] = KernelConfig.from_dict(d["default_config"])
        d["epilogue"] = None if epilogue is None else Epilogue(conv=d["name"], **epilogue)
        return super().from_dict(d)


@dataclass(frozen=True)
class TrialResult(Record):
    """One completed trial of a tuning study (milliseconds).

    Attributes:
        latency_ms: Whole-model latency: ``network_ms`` when measured, else ``tuned_ms``
            plus ``untouched_ms``.
        accuracy: The candidate's accuracy estimate in [0, 1].
        layers: One record per generated layer, in model order.
        tuned_ms: Sum of the layers' tuned latencies.
        default_ms: Sum of the layers' default-config latencies (NaN if one failed).
        untouched_ms: What torch runs besides the generated kernels, or None
            where not known (remote device types).
        untouched_method: How that was timed (``torchscript`` or ``eager``), or None.
        untouched_threads: At how many torch threads, or None.
        refined: Whether the layers' tasks were topped up to the refine budget.
        network_ms: The whole network (:mod:`codegen.network`: tuned kernels and every
            other op in one library) measured end to end on the device type, or None
            when it was not (``network_error`` says why).
        network_error: Why the network was not measured, else None.
        latency_source: ``"network"`` when ``latency_ms`` is ``network_ms``, ``"sum"``
            when it is ``tuned_ms`` plus ``untouched_ms``.
    """

    latency_ms: float
    accuracy: float
    layers: tuple[LayerResult, ...]
    tuned_ms: float
    default_ms: float
    untouched_ms: float | None
    untouched_method: str | None
    untouched_threads: int | None
    refined: bool
    network_ms: float | None = None
    network_error: str | None = None
    latency_source: str = "sum"

    schema = "trial_result"

    @property
    def default_total_ms(self) -> float:
        """Whole-model latency with every layer at its default config."""
        return self.default_ms + (self.untouched_ms or 0.0)

    def layer(self, name: str) -> LayerResult | None:
        """The record of the layer called ``name``, or None."""
        return next((x for x in self.layers if x.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.latency_source == "sum" and self.network_ms is None and not self.network_error:
            # A trial without a network timing stores what studies written before
            # whole-network timing stored (the same attributes, the same JSON).
            for k in ("network_ms", "network_error", "latency_source"):
                del d[k]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        d = dict(data)
        d["layers"] = tuple(LayerResult.from_dict(x) for x in d["layers"])
        return cls(**d)

    def to_attrs(self) -> dict[str, Any]:
        """The trial user attributes that store this record's scalars, one per field
        (the layers are counted here; their records go to the records database)."""
        d = self.to_dict()
        layers = d.pop("layers")
        return {**{ATTR_PREFIX + k: v for k, v in d.items()},
                ATTR_PREFIX + "layer_count": len(layers)}

    def layers_json(self) -> list[dict[str, Any]]:
        """The per-layer records' JSON form, as the records database stores it."""
        return [x.to_dict() for x in self.layers]

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any],
                   layers: list[dict[str, Any]] | None = None) -> TrialResult:
        """Read the record back from a trial's user attributes and its layers' JSON.

        ``layers`` is what the records database holds for the trial; a study written
        before revision 0003 has them in the ``pattune:layers`` attribute instead.
        Attributes a study written by an earlier version lacks take their
        "not known" value (None, or False for ``refined``).

        Raises:
            KeyError: The trial holds no tuning result (it did not complete).
        """
        optional = {"untouched_ms": None, "untouched_method": None,
                    "untouched_threads": None, "refined": False, "network_ms": None,
                    "network_error": None, "latency_source": "sum"}  # fmt: skip
        data = {
            name: attrs.get(ATTR_PREFIX + name, optional.get(name)) if name != "layers"
            else attrs.get(ATTR_PREFIX + "layers", layers)
            for name in (f.name for f in fields(cls))
        }  # fmt: skip
        missing = [n for n, v in data.items() if v is None and n not in optional]
        if missing:
            raise KeyError(f"the trial holds no tuning result (no {', '.join(missing)})")
        return cls.from_dict(data)


def trial_candidate(records: RecordsDB, study: str, trial: FrozenTrial) -> Candidate | None:
    """The candidate a trial evaluated (records, or the attribute of older studies)."""
    old = trial.user_attrs.get(ATTR_PREFIX + "candidate")
    if old is not None:
        return Candidate.from_dict(old)
    detail = records.trial_detail(study, trial.number)
    cand = None if detail is None else detail.get("candidate")
    return None if cand is None else Candidate.from_dict(cand)


def read_trial(records: RecordsDB, study: str, trial: FrozenTrial) -> tuple[Candidate,
                                                                            TrialResult]:
    """A complete trial's candidate and result, from its attributes and the records.

    Raises:
        KeyError: The trial holds no candidate or no tuning result.
    """
    cand = trial_candidate(records, study, trial)
    if cand is None:
        raise KeyError(f"trial {trial.number} of study {study!r} holds no candidate")
    detail = records.trial_detail(study, trial.number)
    layers = None if detail is None else detail.get("layers")
    return cand, TrialResult.from_attrs(trial.user_attrs, layers)


__all__ = ["ATTR_PREFIX", "STUDY_ATTRS", "LayerResult", "TrialResult", "read_trial",
           "trial_candidate"]
