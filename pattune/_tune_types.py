"""What :func:`pattune.tune` reports: progress snapshots, finished trials, the summary."""

from __future__ import annotations

from dataclasses import dataclass

from pattune_common import Record


@dataclass(frozen=True)
class TrialReport:
    """One finished trial, as the progress callback is told of it (``event == "trial"``).

    Attributes:
        number: The trial's number in the study.
        state: ``complete`` or ``fail``.
        k: Patterns in its pattern set, or None if no candidate was drawn.
        rates: ``(layer, rate)`` pairs of its candidate, in model order.
        latency_ms: Its whole-model latency (milliseconds), or None if it failed.
        accuracy: Its accuracy estimate, or None if it failed.
        error: Why it failed, or None.
    """

    number: int
    state: str
    k: int | None
    rates: tuple[tuple[str, str], ...]
    latency_ms: float | None
    accuracy: float | None
    error: str | None = None

    def params_summary(self) -> str:
        """``K 8, rates 2x*3 3.6x*10``: the candidate in a few words (rates counted)."""
        counts: dict[str, int] = {}
        for _, rate in self.rates:
            counts[rate] = counts.get(rate, 0) + 1
        rates = " ".join(f"{r}*{n}" for r, n in counts.items()) or "-"
        return f"K {self.k if self.k is not None else '-'}, rates {rates}"


@dataclass(frozen=True)
class TuneProgress:
    """A snapshot of a running :func:`tune`, given to its ``progress`` callback.

    It is sent when tuning starts, after every layer's kernel task and after
    every trial. Latencies are milliseconds, times seconds.

    Attributes:
        trials_finished: Finished trials of the study (complete, pruned or failed).
        trials: The study's target number of trials.
        configs_measured: Kernel configs built and measured by this call.
        configs_reused: Configs whose results came from the records.
        configs_filtered: Configs the cost model scored but did not pick.
        configs_failed: Configs that failed to build, verify or run.
        best_latency_ms: The study's fastest trial so far, or None.
        best_accuracy: The study's most accurate trial so far, or None.
        dense_accuracy: The unpruned model's accuracy.
        eta_s: Seconds left at this call's mean trial time, or None before a trial ends.
        event: ``start`` (the study as found, before the first trial), ``layer`` (a
            kernel task or batch ended) or ``trial`` (a trial ended: see ``trial``).
        trial: The trial that ended, for ``trial`` events; None otherwise.
        trials_this_run: Trials this call finished.
    """

    trials_finished: int
    trials: int
    configs_measured: int
    configs_reused: int
    configs_filtered: int
    configs_failed: int
    best_latency_ms: float | None
    best_accuracy: float | None
    dense_accuracy: float
    eta_s: float | None
    event: str = "layer"
    trial: TrialReport | None = None
    trials_this_run: int = 0


@dataclass(frozen=True)
class TuneSummary(Record):
    """What one :func:`tune` call did (seconds; latencies in milliseconds).

    Its JSON form (:meth:`to_dict`) is what ``pattune tune --summary-json`` writes.

    Attributes:
        study: The study's name.
        trials_finished: Finished trials of the study after the call.
        trials_this_run: Trials this call finished.
        wall_s: Wall time of the call.
        setup_s: Of which resolving the model, devices, records and dense accuracy.
        configs_measured: Kernel configs built and measured.
        configs_reused: Configs whose results came from the records.
        configs_filtered: Configs the cost model scored but did not pick.
        configs_failed: Configs that failed to build, verify or run.
        build_s: Time in builds.
        verify_s: Time in verification.
        measure_s: Time in measurements.
        accuracy_s: Time in accuracy estimates.
        cost_model_train_s: Time training the cost model.
        overhead_s: Tuner overhead: wall time that is none of setup, building,
            verifying, measuring or estimating accuracy (sampling, cost model, database).
        overhead_fraction: ``overhead_s`` over the wall time after setup.
        peak_rss_mib: Peak resident memory of the process.
        rss_mib: Peak RSS when ``after_30`` and ``after_300`` configs were measured.
        best_latency_ms: The study's fastest complete trial, or None.
        untouched_ms: What torch runs besides the generated kernels, or None if not timed.
        untouched_method: How it was timed (``torchscript`` or ``eager``), or None.
        untouched_torch_threads: At how many torch threads, or None.
        best_accuracy: The study's most accurate complete trial, or None.
        dense_accuracy: The unpruned model's accuracy.
        interrupted: Ctrl-C or SIGTERM stopped the call (nothing measured is lost).
        error: Why tuning stopped early (several trials in a row failed), or None.
    """

    study: str
    trials_finished: int
    trials_this_run: int
    wall_s: float
    setup_s: float
    configs_measured: int
    configs_reused: int
    configs_filtered: int
    configs_failed: int
    build_s: float
    verify_s: float
    measure_s: float
    accuracy_s: float
    cost_model_train_s: float
    overhead_s: float
    overhead_fraction: float
    peak_rss_mib: float
    rss_mib: dict[str, float]
    best_latency_ms: float | None
    untouched_ms: float | None
    untouched_method: str | None
    untouched_torch_threads: int | None
    best_accuracy: float | None
    dense_accuracy: float
    interrupted: bool
    error: str | None = None

    schema = "tune_summary"


__all__ = ["TrialReport", "TuneProgress", "TuneSummary"]
