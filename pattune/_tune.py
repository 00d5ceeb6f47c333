"""``pattune.tune``: run (or resume) a tuning study in one call.

This is the product's main job, assembled once: resolve the model, devices,
target, records and space (:class:`~autotune.session.TuneSession`), open the
outer study (:class:`~autotune.study.OuterStudy`), evaluate candidates with the
joint :class:`~autotune.tuner.Tuner` until the study has ``trials`` finished
trials or ``timeout`` passes, and summarise. ``pattune tune`` is a rendering of
this function; nothing here prints.

Ctrl-C (and SIGTERM, while ``tune`` runs in the main thread) stops cleanly: the
running trial is failed and re-enqueued with the same parameters, unfinished
claims are released, and the call returns a summary with ``interrupted=True``;
calling ``tune`` again with the same study resumes it.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from optuna.trial import TrialState

from autotune.results import trial_candidate
from autotune.session import TuneOptions, TuneSession
from autotune.strategies import strategy_names
from autotune.study import OBJECTIVES, OuterStudy, TrialOutcome, TrialsFailing
from autotune.tuner import Tuner, TunerStats
from pattune._args import in_range, one_of, parse_duration, path_text, shape_text
from pattune._tune_types import TrialReport, TuneProgress, TuneSummary
from pattune_common import DEFAULT_STORAGE, ESTIMATE_SAMPLES, UserInputError
from search_spaces.loading import parse_input_shape

OPTIONS_ATTR = "pattune:options"
DENSE_ATTR = "pattune:dense_accuracy"
#: Kernel measurements after which the summary notes the peak RSS (memory growth).
RSS_MARKS = (30, 300)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _completed(outer: OuterStudy) -> list[tuple[float, float]]:
    """(latency ms, accuracy) of every complete trial of the study."""
    complete = outer.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [(float(t.user_attrs["pattune:latency_ms"]), float(t.user_attrs["pattune:accuracy"]))
            for t in complete]


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM stops tuning as Ctrl-C does (only the main thread owns signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class _Run:
    """One call's bookkeeping: progress snapshots, trial times, memory marks, the summary."""

    def __init__(
        self, session: TuneSession, outer: OuterStudy, *, trials: int, dense: float,
        progress: Callable[[TuneProgress], None] | None, t_start: float,
    ) -> None:
        self.session = session
        self.outer = outer
        self.trials = trials
        self.dense = dense
        self.progress = progress
        self.t_start = t_start
        self.started_with = outer.finished_trials()
        self.rss_marks: dict[str, float] = {}
        self.trial_times: list[float] = []
        self.last_trial = time.perf_counter()
        known = _completed(outer)
        self.tuner = Tuner(session, on_progress=self.on_stats, known=known)
        self.setup_s = time.perf_counter() - t_start

    def snapshot(self, event: str = "layer", trial: TrialReport | None = None) -> TuneProgress:
        """The run as the progress callback sees it now."""
        st = self.tuner.stats
        done = self.outer.finished_trials()
        eta = None
        if self.trial_times and done < self.trials:
            eta = (self.trials - done) * sum(self.trial_times) / len(self.trial_times)
        # The study's trials before this call, and each one the tuner evaluated since.
        lats = [lat for lat, _ in self.tuner.known]
        accs = [acc for _, acc in self.tuner.known]
        return TuneProgress(
            trials_finished=done, trials=self.trials, configs_measured=st.measured,
            configs_reused=st.reused, configs_filtered=st.filtered, configs_failed=st.failed,
            best_latency_ms=min(lats, default=None), best_accuracy=max(accs, default=None),
            dense_accuracy=self.dense, eta_s=eta, event=event, trial=trial,
            trials_this_run=done - self.started_with,
        )  # fmt: skip

    def on_stats(self, st: TunerStats) -> None:
        for mark in RSS_MARKS:
            if st.measured >= mark and f"after_{mark}" not in self.rss_marks:
                self.rss_marks[f"after_{mark}"] = _rss_mib()
        if self.progress is not None:
            self.progress(self.snapshot())

    def on_trial(self, number: int, outcome: TrialOutcome | None) -> None:
        now = time.perf_counter()
        self.trial_times.append(now - self.last_trial)
        self.last_trial = now
        if self.progress is not None:
            self.progress(self.snapshot("trial", self._report(number, outcome)))

    def _report(self, number: int, outcome: TrialOutcome | None) -> TrialReport:
        """The finished trial as the callback is told of it (its candidate read back)."""
        trials = self.outer.study.get_trials(deepcopy=False)
        t = next((t for t in reversed(trials) if t.number == number), None)
        attrs = {} if t is None else t.user_attrs
        c = None if t is None else trial_candidate(self.session.records,
                                                   self.session.options.study, t)
        return TrialReport(
            number=number, state="fail" if outcome is None else "complete",
            k=None if c is None else c.k, rates=() if c is None else c.rates,
            latency_ms=None if outcome is None else outcome.latency_ms,
            accuracy=None if outcome is None else outcome.accuracy,
            error=attrs.get("pattune:error") if outcome is None else None,
        )  # fmt: skip

    def summary(self, *, interrupted: bool, error: str | None) -> TuneSummary:
        """The call's figures (the study's best over every complete trial, this call's or not)."""
        wall = time.perf_counter() - self.t_start
        ms, st, tuner = self.tuner.measurer.stats, self.tuner.stats, self.tuner
        device_s = ms.build_s + ms.verify_s + ms.measure_s
        overhead = wall - self.setup_s - device_s - st.accuracy_s
        done = _completed(self.outer)
        untouched = tuner.untouched_measured
        finished = self.outer.finished_trials()
        return TuneSummary(
            study=self.session.options.study, trials_finished=finished,
            trials_this_run=finished - self.started_with, wall_s=wall, setup_s=self.setup_s,
            configs_measured=st.measured, configs_reused=st.reused,
            configs_filtered=st.filtered, configs_failed=st.failed, build_s=ms.build_s,
            verify_s=ms.verify_s, measure_s=ms.measure_s, accuracy_s=st.accuracy_s,
            cost_model_train_s=tuner.models.train_s, overhead_s=overhead,
            overhead_fraction=overhead / (wall - self.setup_s) if wall > self.setup_s else 0.0,
            peak_rss_mib=_rss_mib(), rss_mib=dict(self.rss_marks),
            best_latency_ms=min((lat for lat, _ in done), default=None),
            untouched_ms=None if untouched is None else untouched.ms,
            untouched_method=None if untouched is None else untouched.method,
            untouched_torch_threads=None if untouched is None else untouched.threads,
            best_accuracy=max((acc for _, acc in done), default=None),
            dense_accuracy=self.dense, interrupted=interrupted, error=error,
        )  # fmt: skip


def _check(
    *, trials: int, objective: str, strategy: str, max_accuracy_drop: float | None,
    timeout: float | str | None, input_shape: str | None, estimate_samples: int, seed: int,
) -> float | None:
    """Check the arguments before any work starts; return the timeout in seconds."""
    if trials < 1:
        raise UserInputError(f"--trials must be >= 1; got {trials}")
    in_range("--estimate-samples", estimate_samples, low=1)
    in_range("--max-accuracy-drop", max_accuracy_drop, low=0, high=1)
    in_range("--seed", seed, low=0, high=2**32 - 1)  # numpy's and Optuna's seed range
    if input_shape is not None and parse_input_shape(input_shape)[0] != 1:
        raise UserInputError(
            "--input-shape must have batch N = 1 (the generated kernels compute one image at "
            f"a time); got {input_shape}"
        )
    one_of("--objective", objective, OBJECTIVES)
    one_of("--strategy", strategy, strategy_names())
    if objective == "latency" and max_accuracy_drop is None:
        raise UserInputError(
            "--objective latency needs --max-accuracy-drop D (e.g. 0.01 for one point)"
        )
    return parse_duration(timeout)


def _open_study(
    session: TuneSession, *, objective: str, max_accuracy_drop: float | None, dense: float
) -> OuterStudy:
    o = session.options
    outer = OuterStudy(
        storage=session.records.url, study_name=o.study, space=session.space,
        layers=session.rate_layers, select_natural=session.natural_set,
        records=session.records, objective=objective, max_accuracy_drop=max_accuracy_drop,
        dense_accuracy=dense, seed=o.seed,
    )  # fmt: skip
    # What export needs to rebuild the session; never a secret (the inventory is a path).
    # Not the storage URL: it may hold the database password, and export is given the
    # URL anyway. Overwriting the attribute also scrubs what an older pattune stored.
    stored = {k: v for k, v in dataclasses.asdict(o).items() if k not in ("extra", "storage")}
    outer.study.set_user_attr(OPTIONS_ATTR, stored)
    outer.study.set_user_attr(DENSE_ATTR, dense)
    return outer


def tune(
    *,
    model: str = "example",
    device_type: str = "local",
    inventory: str | os.PathLike[str] | None = None,
    trials: int = 30,
    timeout: float | str | None = None,
    storage: str = DEFAULT_STORAGE,
    study: str = "pattune",
    objective: str = "pareto",
    max_accuracy_drop: float | None = None,
    space: str | os.PathLike[str] | None = None,
    strategy: str = "filtered",
    input_shape: str | Sequence[int] | None = None,
    evaluate: str | None = None,
    data: str | None = None,
    train: str | None = None,
    target: str | None = None,
    estimate_samples: int = ESTIMATE_SAMPLES,
    estimate_epochs: int = 1,
    seed: int = 0,
    work_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[TuneProgress], None] | None = None,
) -> TuneSummary:
    """Tune pattern set, per-layer connectivity and kernel code for a device type.

    Calling it again with the same ``storage`` and ``study`` resumes the study:
    ``trials`` is the study's total, and every recorded measurement is reused.

    Args:
        model: ``example``, a built-in name, ``package.module:factory`` or a TorchScript file.
        device_type: Device type to tune for (``local``: this machine).
        inventory: Inventory TOML of SSH devices.
        trials: Total outer trials of the study (>= 1).
        timeout: Stop starting trials after this long: seconds, or ``"8h"``, ``"30m"``, ...
        storage: Study and records URL: ``sqlite:///FILE`` or ``postgresql://...``.
        study: Study name; the same name resumes it.
        objective: ``pareto`` (latency and accuracy) or ``latency`` (constrained
            by ``max_accuracy_drop``).
        max_accuracy_drop: Allowed accuracy drop (0.01 = 1 point); needed by ``latency``.
        space: Search-space TOML (see ``examples/space.toml``), or None for the default.
        strategy: Kernel search: ``filtered``, ``tpe``, ``random`` or ``hillclimb``.
        input_shape: N,C,H,W of a user model, as ``"1,3,224,224"`` or a sequence.
        evaluate: ``package.module:function(model) -> accuracy``.
        data: ``package.module:function() -> (train, validation)`` torch datasets or
            loaders of a user model (:mod:`search_spaces.workload`).
        train: ``package.module:function(model, optimizer, criterion, epoch)``, one
            epoch of the user's own training (NNI's trainer convention).
        target: Compile target name or TOML file (default: from the device type's arch).
        estimate_samples: Fine-tune examples per accuracy estimate (the example).
        estimate_epochs: Epochs of the user's training per estimate (``data``/``train``).
        seed: Seed of every sampler.
        work_dir: Scratch directory (default: a new temporary one).
        progress: Called with a :class:`TuneProgress` as tuning goes.

    Returns:
        The call's :class:`TuneSummary`; ``interrupted`` is True after Ctrl-C or
        SIGTERM and ``error`` says why tuning stopped if trials kept failing.

    Raises:
        UserInputError: A bad argument, model, space file, inventory or storage URL.
        ValueError: The study exists with another objective.
    """
    timeout_s = _check(trials=trials, objective=objective, strategy=strategy,
                       max_accuracy_drop=max_accuracy_drop, timeout=timeout,
                       input_shape=shape_text(input_shape),
                       estimate_samples=estimate_samples, seed=seed)  # fmt: skip
    options = TuneOptions(
        model=model, input_shape=shape_text(input_shape), evaluate=evaluate, data=data,
        train=train, estimate_epochs=estimate_epochs, device_type=device_type, inventory=path_text(inventory), target=target,
        storage=storage, study=study, space=path_text(space), strategy=strategy,
        estimate_samples=estimate_samples, seed=seed, work_dir=path_text(work_dir),
    )  # fmt: skip
    t_start = time.perf_counter()
    session = TuneSession(options)
    dense = session.accuracy.dense()
    outer = _open_study(session, objective=objective, max_accuracy_drop=max_accuracy_drop,
                        dense=dense)  # fmt: skip
    run = _Run(session, outer, trials=trials, dense=dense, progress=progress, t_start=t_start)
    session.records.start_heartbeat()
    interrupted, error = False, None
    try:
        with _sigterm_interrupts():
            if progress is not None:
                progress(run.snapshot("start"))
            outer.run(run.tuner.evaluate, n_trials=trials, timeout_s=timeout_s,
                      on_trial=run.on_trial)  # fmt: skip
    except KeyboardInterrupt:
        interrupted = True
    except TrialsFailing as exc:
        error = str(exc)
    finally:
        session.records.release_claims()
        session.records.stop_heartbeat()
    return run.summary(interrupted=interrupted, error=error)


__all__ = ["TrialReport", "TuneProgress", "TuneSummary", "tune"]
