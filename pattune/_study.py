"""``pattune.status`` and ``pattune.export``: read a tuning study back.

:func:`status` summarises a study (trials by state, the best trials, the
measurements recorded); :func:`export` writes its best (or a chosen) trial as
what a user ships and returns an :class:`~autotune.export.ExportResult`.
Nothing here prints; ``pattune status`` and ``pattune export`` render these.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from autotune.export import OPTIONS_ATTR, ExportResult, export_study
from autotune.records import RecordsDB
from autotune.session import TuneOptions, TuneSession
from pattune._args import in_range
from pattune_common import DEFAULT_STORAGE, UserInputError
from pattune_common.files import check_output_dir
from pattune_common.storage import redact_url, require_existing
from search_spaces.retrain import EpochRecord, RetrainConfig
from search_spaces.space import Candidate

_OPTION_NAMES = {f.name for f in dataclasses.fields(TuneOptions)}
#: Rows of :attr:`StudyStatus.best`, as ``pattune status`` shows them.
BEST_SHOWN = 10


@dataclass(frozen=True)
class BestTrial:
    """One trial of a study's best (its Pareto front, or its best feasible trial).

    Attributes:
        number: The trial's number.
        latency_ms: Its whole-model latency (milliseconds).
        accuracy: Its accuracy estimate, or NaN if the trial did not record one.
        patterns: Patterns in its pattern set (0 if it recorded no candidate).
    """

    number: int
    latency_ms: float
    accuracy: float
    patterns: int


@dataclass(frozen=True)
class StudyStatus:
    """Where a tuning study stands.

    Attributes:
        study: The study's name.
        storage: Its storage URL, password redacted.
        trials: Trials per state (``complete``, ``fail``, ``running``, ...).
        measurements: Kernel measurements in the records, per status.
        best: Up to ten best trials, fastest first.
    """

    study: str
    storage: str
    trials: dict[str, int]
    measurements: dict[str, int]
    best: tuple[BestTrial, ...]


def _load(records: RecordsDB, storage: str, study: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study, storage=records.url)
    except KeyError:
        names = [x.study_name for x in optuna.get_all_study_summaries(records.url)]
        raise UserInputError(
            f"no study named {study!r} in {redact_url(storage)}; studies there: "
            f"{', '.join(names) or 'none'}"
        ) from None


def _best_row(t: FrozenTrial) -> BestTrial:
    k = t.user_attrs.get("pattune:k")
    cand = t.user_attrs.get("pattune:candidate")  # studies before records revision 0003
    if k is None and cand is not None:
        k = Candidate.from_dict(cand).k
    return BestTrial(
        number=t.number,
        latency_ms=float(t.values[0]),
        accuracy=float(t.user_attrs.get("pattune:accuracy", float("nan"))),
        patterns=int(k or 0),
    )


def status(*, storage: str = DEFAULT_STORAGE, study: str = "pattune") -> StudyStatus:
    """Summarise a study: trials by state, best trials, measurements recorded.

    Raises:
        UserInputError: No study of that name in ``storage`` (the message lists
            the studies there), or an unusable storage URL.
    """
    require_existing(storage)
    records = RecordsDB(storage)
    s = _load(records, storage, study)
    by_state: dict[str, int] = {}
    for t in s.get_trials(deepcopy=False):
        name = t.state.name.lower()
        by_state[name] = by_state.get(name, 0) + 1
    try:
        best = s.best_trials
    except ValueError:  # a single-objective study with no complete trial
        best = []
    rows = sorted(best, key=lambda t: t.values[0])[:BEST_SHOWN]
    return StudyStatus(
        study=study,
        storage=redact_url(storage),
        trials=dict(sorted(by_state.items())),
        measurements=records.counts(),
        best=tuple(_best_row(t) for t in rows),
    )


def _options_of(storage: str, study: str, **override: str | None) -> TuneOptions:
    """The options a study was tuned with, as it stored them (quick: no model loaded).

    ``override`` replaces stored options that are given (not None): the export's
    ``--data``, ``--train`` and ``--evaluate``.
    """
    require_existing(storage)
    records = RecordsDB(storage)
    try:
        s = optuna.load_study(study_name=study, storage=records.url)
    except KeyError:
        raise UserInputError(
            f"no study named {study!r} in {redact_url(storage)}: check --study and --storage"
        ) from None
    stored: dict[str, Any] = dict(s.user_attrs.get(OPTIONS_ATTR, {}))
    if not stored:
        raise UserInputError(f"study {study!r} was not created by pattune tune (no stored options)")
    # The export needs the model, target and records, not the search space: the space
    # file may be gone from where the tuning run read it.
    stored.update(storage=storage, study=study, space=None)
    stored.update({k: v for k, v in override.items() if v is not None})
    stored = {k: v for k, v in stored.items() if k in _OPTION_NAMES}
    return TuneOptions(**stored)


def export(
    *,
    out: str | os.PathLike[str],
    storage: str = DEFAULT_STORAGE,
    study: str = "pattune",
    trial: int | None = None,
    max_accuracy_drop: float = 0.01,
    retrain: str = "admm",
    admm_epochs: int = 4,
    retrain_epochs: int = 6,
    lr: float = 0.01,
    data: str | None = None,
    train: str | None = None,
    evaluate: str | None = None,
    progress: Callable[[EpochRecord, int], None] | None = None,
) -> ExportResult:
    """Retrain a study's best configuration and write what a user ships.

    The chosen trial's configuration is retrained (``retrain``: ``admm``, ADMM then
    hard pruning then masked retraining; ``finetune``, masked retraining of the
    one-shot pruning; ``none``), with a checkpoint after every epoch under
    ``out/retrain/`` so a killed export resumes there; then every kernel is
    regenerated for the retrained weights with its tuned KernelConfig, verified
    against torch and measured again on the device type.

    Args:
        out: Directory to write the export to (created).
        storage: The study's storage URL.
        study: The study's name.
        trial: Export this trial instead of the best.
        max_accuracy_drop: Pick the fastest trial whose accuracy estimate is within
            this of the dense model's (0.01 = 1 point), as ``tune`` counts it.
        retrain: ``admm`` (default), ``finetune`` or ``none``.
        admm_epochs: Epochs of ADMM training.
        retrain_epochs: Epochs of masked retraining.
        lr: Learning rate of both phases.
        data: ``package.module:function() -> (train, validation)`` for a user model
            (default: what the study was tuned with).
        train: ``package.module:function(model, optimizer, criterion, epoch)``.
        evaluate: ``package.module:function(model) -> accuracy``.
        progress: Called after every retraining epoch with the record and the total.

    Returns:
        The export's paths and the exported model's figures.

    Raises:
        UserInputError: No such study or trial, a study not made by ``tune``, no
            complete trial yet, a model other than the one tuned, a bad hook or option.
    """
    in_range("--max-accuracy-drop", max_accuracy_drop, low=0, high=1)
    try:
        config = RetrainConfig(method=retrain, admm_epochs=admm_epochs,
                               retrain_epochs=retrain_epochs, lr=lr)
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    options = _options_of(storage, study, data=data, train=train, evaluate=evaluate)
    check_output_dir(out, "--out")  # before loading, regenerating and retraining, not after
    session = TuneSession(options)
    return export_study(session, out=Path(out), trial=trial, max_drop=max_accuracy_drop,
                        retrain=config, progress=progress)


__all__ = ["BestTrial", "ExportResult", "StudyStatus", "export", "status"]
