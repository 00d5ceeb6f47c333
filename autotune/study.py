"""The outer study: Optuna over (pattern set, per-layer rates), ask/tell, resumable.

The study lives in the storage URL (``sqlite:///pattune.db`` by default, or
PostgreSQL shared by several hosts) next to the records. Each trial is asked,
turned into a :class:`~search_spaces.space.Candidate`, evaluated by the caller
(prune, tune every layer's kernel, estimate accuracy), and told. Two modes:

* ``pareto``: minimise latency and maximise accuracy (a Pareto front);
* ``latency``: minimise latency subject to ``accuracy drop <= max_accuracy_drop``,
  passed to Optuna as a constraint (infeasible trials stay in the study but
  are never "best").

Optuna's heartbeats only cover ``study.optimize``, so ask/tell workers record
their owner on each trial and beat in the records database; a trial left
RUNNING by a dead worker is failed and re-enqueued with the same parameters.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.records import RecordsDB
from search_spaces.encoding import ENCODINGS, PARAM_ENCODING
from search_spaces.patterns import PatternSet
from search_spaces.space import Candidate, JointSpace

log = logging.getLogger(__name__)
OBJECTIVES = ("pareto", "latency")
OWNER_ATTR = "pattune:owner"
CONSTRAINT_ATTR = "pattune:constraint"
ENCODING_ATTR = "pattune:param_encoding"
#: The objectives' names, as optuna-dashboard and ``study.metric_names`` show them.
METRIC_NAMES = {"pareto": ["latency_ms", "accuracy"], "latency": ["latency_ms"]}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class TrialOutcome:
    """What evaluating one candidate gave.

    Attributes:
        latency_ms: Summed latency of the model on the device type (milliseconds).
        accuracy: Estimated accuracy in [0, 1].
        attrs: Extra JSON values stored on the trial (per-layer latencies, ...).
    """

    latency_ms: float
    accuracy: float
    attrs: dict[str, Any] = field(default_factory=dict)


class TrialsFailing(RuntimeError):
    """Several trials in a row failed: something is wrong beyond one candidate."""


def _constraints(trial: FrozenTrial) -> Sequence[float]:
    return (float(trial.user_attrs.get(CONSTRAINT_ATTR, 0.0)),)


class OuterStudy:
    """One named study over a :class:`JointSpace`.

    Args:
        storage: Optuna/SQLAlchemy URL shared with the records database.
        study_name: Study name; re-using it resumes the study.
        space: The joint search space.
        layers: Names of the layers that take patterns, in model order.
        select_natural: K -> the model's natural top-K pattern set.
        records: The records database (for worker liveness).
        objective: ``"pareto"`` or ``"latency"``.
        max_accuracy_drop: For ``"latency"``: allowed drop from ``dense_accuracy``.
        dense_accuracy: The unpruned model's accuracy estimate.
        seed: Sampler seed.
    """

    def __init__(
        self,
        *,
        storage: str,
        study_name: str,
        space: JointSpace,
        layers: Sequence[str],
        select_natural: Callable[[int], PatternSet],
        records: RecordsDB,
        objective: str = "pareto",
        max_accuracy_drop: float | None = None,
        dense_accuracy: float | None = None,
        seed: int = 0,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
        if objective == "latency" and max_accuracy_drop is not None and max_accuracy_drop < 0:
            raise ValueError(f"max accuracy drop must be >= 0; got {max_accuracy_drop}")
        self.space = space
        self.layers = list(layers)
        self.select_natural = select_natural
        self.records = records
        self.objective = objective
        self.max_accuracy_drop = max_accuracy_drop
        self.dense_accuracy = dense_accuracy
        self.max_consecutive_failures = 3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Constraints reach TPE through Trial.set_constraint (Optuna >= 5).
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)
        directions = (
            [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
            if objective == "pareto"
            else [optuna.study.StudyDirection.MINIMIZE]
        )
        self.study = optuna.create_study(
            storage=records.optuna_storage() if storage == records.url else storage,
            study_name=study_name,
            sampler=sampler,
            directions=directions,
            load_if_exists=True,
        )
        stored = self.study.user_attrs.get("pattune:objective")
        if stored is None:
            self.study.set_user_attr("pattune:objective", objective)
        elif stored != objective:
            raise ValueError(
                f"study {study_name!r} was created with objective {stored!r}; "
                f"use --objective {stored} or a new --study name"
            )
        if self.study.metric_names != METRIC_NAMES[objective]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(METRIC_NAMES[objective])
        self.param_encoding = self._encoding(study_name)

    def _encoding(self, study_name: str) -> int:
        """The study's parameter encoding: as stored, 1 for a study an older pattune began
        (it has trials but no record of one), the newest for a new study."""
        stored = self.study.user_attrs.get(ENCODING_ATTR)
        if stored is None:
            stored = 1 if self.study.get_trials(deepcopy=False) else PARAM_ENCODING
            self.study.set_user_attr(ENCODING_ATTR, stored)
        if stored not in ENCODINGS:
            raise ValueError(
                f"study {study_name!r} encodes its parameters as version {stored}, newer than "
                f"this pattune reads ({', '.join(map(str, ENCODINGS))}); upgrade pattune"
            )
        return int(stored)

    # -- bookkeeping --------------------------------------------------------

    def finished_trials(self) -> int:
        """Trials that ended (complete, pruned or failed)."""
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def requeue_dead(self) -> list[int]:
        """Fail trials left RUNNING by dead workers and enqueue their parameters again.

        Returns:
            Numbers of the trials that were failed and re-enqueued.
        """
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get(OWNER_ATTR)
            if owner is None or owner == self.records.owner or self.records.is_alive(owner):
                continue
            try:
                self.study.tell(t.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):
                continue  # another worker got there first
            if t.params:
                self.study.enqueue_trial(t.params, user_attrs={"pattune:requeued_from": t.number})
            log.warning("trial %d of dead worker %s failed and re-enqueued", t.number, owner)
            out.append(t.number)
        return out

    # -- the loop -----------------------------------------------------------

    def run(
        self,
        evaluate: Callable[[Candidate, int], TrialOutcome],
        *,
        n_trials: int,
        timeout_s: float | None = None,
        on_trial: Callable[[int, TrialOutcome | None], None] | None = None,
    ) -> int:
        """Ask, evaluate and tell until the study has ``n_trials`` finished trials.

        A KeyboardInterrupt fails the running trial, re-enqueues its parameters
        (so a rerun evaluates it first, reusing its measurements) and re-raises.

        Returns:
            Trials this call finished.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        done = 0
        failures: list[str] = []
        while self.finished_trials() < n_trials:
            if deadline is not None and time.monotonic() >= deadline:
                break
            self.requeue_dead()
            trial = self.study.ask()
            trial.set_user_attr(OWNER_ATTR, self.records.owner)
            try:
                cand = self.space.suggest(trial, self.layers, self.select_natural,
                                          encoding=self.param_encoding)
                # A short scalar on the trial; the candidate itself goes to the records.
                trial.set_user_attr("pattune:k", cand.k)
                self.records.save_trial_detail(study=self.study.study_name,
                                               trial_number=trial.number,
                                               candidate=cand.to_dict())
                outcome = evaluate(cand, trial.number)
            except KeyboardInterrupt:
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(
                    trial.params, user_attrs={"pattune:requeued_from": trial.number}
                )
                raise
            except Exception as exc:  # noqa: BLE001 - a failing candidate is a record
                log.warning("trial %d failed: %s", trial.number, exc)
                trial.set_user_attr("pattune:error", str(exc)[:500])
                self.study.tell(trial, state=TrialState.FAIL)
                if on_trial:
                    on_trial(trial.number, None)
                done += 1
                failures.append(f"{type(exc).__name__}: {exc}")
                if len(failures) >= self.max_consecutive_failures:
                    raise TrialsFailing(
                        f"{len(failures)} trials in a row failed; the last: {failures[-1]}"
                    ) from exc
                continue
            failures.clear()
            for k, v in outcome.attrs.items():
                trial.set_user_attr(k, v)
            trial.set_user_attr("pattune:accuracy", outcome.accuracy)
            trial.set_user_attr("pattune:latency_ms", outcome.latency_ms)
            if self.objective == "pareto":
                self.study.tell(trial, [outcome.latency_ms, outcome.accuracy])
            else:
                if self.max_accuracy_drop is not None and self.dense_accuracy is not None:
                    drop = self.dense_accuracy - outcome.accuracy
                    trial.set_user_attr(CONSTRAINT_ATTR, drop - self.max_accuracy_drop)
                    trial.set_constraint("accuracy_drop", drop - self.max_accuracy_drop)
                self.study.tell(trial, outcome.latency_ms)
            if on_trial:
                on_trial(trial.number, outcome)
            done += 1
        return done

    # -- results ------------------------------------------------------------

    def best_trials(self) -> list[FrozenTrial]:
        """Pareto front (pareto) or the single best feasible trial (latency)."""
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            return []
        if self.objective == "pareto":
            return list(self.study.best_trials)
        feasible = [t for t in complete if _constraints(t)[0] <= 0]
        return [min(feasible, key=lambda t: t.values[0])] if feasible else []
