"""``pattune.measure``: measure a batch of jobs on every healthy device of one type.

The jobs are :class:`~device_farm.MeasureJob` s in a JSON Lines file; the
results are appended to another, one :class:`~device_farm.Measurement` per
line and flushed as each arrives, so a call that is stopped loses nothing and
the next call with the same files measures only what is missing. Nothing here
prints; ``pattune measure`` renders the progress and the result.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from device_farm import (
    DEFAULT_DB_URL,
    Farm,
    FarmConfig,
    LeaseStore,
    Measurement,
    ProtocolConfig,
    load_inventory,
)
from device_farm.jobs_io import ResultsFile, read_jobs
from pattune._args import in_range
from pattune_common import OutputError


@dataclass(frozen=True)
class MeasureProgress:
    """An event of a running :func:`measure`, given to its ``progress`` callback.

    It is sent once before measuring starts (``done == 0``, ``last`` and
    ``event`` None), after every result (``last`` set) and for every notice of
    the farm (``event`` set). Results arrive from the farm's worker threads,
    one call at a time.

    Attributes:
        jobs: Jobs in the jobs file.
        already_done: Of which the results file already holds a final result.
        to_measure: Jobs this call measures.
        devices: Devices of the device type.
        device_type: The device type.
        skipped_lines: Unreadable lines of the results file (cut short by a
            crash); their jobs are measured again.
        done: Jobs this call has measured so far.
        last: The result that triggered this event, or None.
        event: A one-line notice (a device unreachable or quarantined), or None.
    """

    jobs: int
    already_done: int
    to_measure: int
    devices: int
    device_type: str
    skipped_lines: int
    done: int = 0
    last: Measurement | None = None
    event: str | None = None


@dataclass(frozen=True)
class MeasureResult:
    """What one :func:`measure` call left in the results file.

    Attributes:
        out: The results file (JSON Lines).
        jobs: Jobs in the jobs file.
        already_done: Jobs that had a final result before this call.
        measured: This call's results, in the jobs' order.
        statuses: The latest result of every job of the jobs file, counted per status.
        by_device: This call's results per device (``(none)`` if no device ran it).
        wall_s: Wall time of the measuring (seconds).
        skipped_lines: Unreadable lines of the results file this call ignored.
    """

    out: Path
    jobs: int
    already_done: int
    measured: tuple[Measurement, ...]
    statuses: dict[str, int]
    by_device: dict[str, int]
    wall_s: float
    skipped_lines: int

    @property
    def jobs_per_s(self) -> float:
        """This call's measuring rate."""
        return len(self.measured) / self.wall_s if self.wall_s > 0 else 0.0


class _Reporter:
    """Appends each result to the results file, then tells the caller."""

    def __init__(self, results: ResultsFile, start: MeasureProgress,
                 progress: Callable[[MeasureProgress], None] | None) -> None:
        self.results = results
        self.start = start
        self.progress = progress
        self.done = 0
        self._lock = threading.Lock()

    def on_result(self, m: Measurement) -> None:
        self.results.append(m)  # flushed first: a crash after this loses nothing
        with self._lock:
            self.done += 1
            if self.progress is not None:
                self.progress(replace(self.start, done=self.done, last=m))

    def on_event(self, text: str) -> None:
        with self._lock:
            if self.progress is not None:
                self.progress(replace(self.start, done=self.done, event=text))


def measure(
    *,
    jobs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    inventory: str | os.PathLike[str] | None = None,
    device_type: str = "local",
    db: str | None = None,
    warmup: int = 1,
    min_repeats: int = 5,
    min_total_s: float = 0.05,
    max_cv: float = 0.05,
    remeasure: int = 2,
    cooldown_s: float = 0.0,
    thermal_limit_c: float | None = None,
    max_attempts: int = 3,
    quarantine_after: int = 3,
    lease_ttl_s: float = 60.0,
    progress: Callable[[MeasureProgress], None] | None = None,
) -> MeasureResult:
    """Measure every job of ``jobs`` on every healthy device of one type; rerun to resume.

    Args:
        jobs: JSON Lines file of MeasureJobs.
        out: JSON Lines results file (appended; jobs with a final result there are skipped).
        inventory: Inventory TOML (default: only the local device).
        device_type: The device type to measure on.
        db: Lease database URL (default ``sqlite:///pattune.db``), shared by every
            process that uses the same devices.
        warmup: Untimed runs before timing.
        min_repeats: Fewest timed repeats.
        min_total_s: Repeat until this many seconds of timed work.
        max_cv: Highest accepted spread (standard deviation over mean).
        remeasure: Extra rounds when the spread is higher.
        cooldown_s: Pause between jobs on a device (seconds).
        thermal_limit_c: Wait until the device is cooler than this (Celsius).
        max_attempts: Devices a job may fault on before it fails for good.
        quarantine_after: Consecutive faults that quarantine a device.
        lease_ttl_s: Lease expiry after a crash (seconds).
        progress: Called with a :class:`MeasureProgress` as the batch goes.

    Raises:
        UserInputError: An unreadable inventory or jobs file, an unknown device
            type, an unusable lease database, a results file that cannot be written
            (all before anything is measured).
        ValueError: Protocol or fault settings out of range.
        OutputError: Some results could not be written to ``out`` even at the end
            (a full disk); the message says how many, and ``exc.result`` is the
            :class:`MeasureResult` with every measurement of this call. A rerun
            measures exactly those jobs again.
    """
    in_range("--lease-ttl-s", lease_ttl_s, low=0, low_open=True, high=86400)
    in_range("--max-attempts", max_attempts, low=1)
    in_range("--quarantine-after", quarantine_after, low=1)
    inv = load_inventory(inventory)
    protocol = ProtocolConfig(warmup=warmup, min_repeats=min_repeats, min_total_s=min_total_s,
                              max_cv=max_cv, remeasure=remeasure, cooldown_s=cooldown_s,
                              thermal_limit_c=thermal_limit_c)  # fmt: skip
    config = FarmConfig(max_attempts=max_attempts, quarantine_after=quarantine_after)
    devices = inv.of_type(device_type, protocol)
    all_jobs = read_jobs(os.fspath(jobs))
    results = ResultsFile(os.fspath(out))
    leases = LeaseStore(db or DEFAULT_DB_URL, ttl_s=lease_ttl_s)  # last: bad input creates no db
    todo = [j for j in all_jobs if j.job_id not in results.done]
    start = MeasureProgress(
        jobs=len(all_jobs), already_done=len(all_jobs) - len(todo), to_measure=len(todo),
        devices=len(devices), device_type=device_type, skipped_lines=results.skipped_lines,
    )  # fmt: skip
    if progress is not None:
        progress(start)
    reporter = _Reporter(results, start, progress)
    started = time.monotonic()
    try:
        farm = Farm(devices, leases=leases, config=config, on_result=reporter.on_result,
                    on_event=reporter.on_event)  # fmt: skip
        measured = farm.run(todo) if todo else []
    finally:
        for d in devices:
            d.close()
        results.flush_unsaved()  # one more try for what a full disk held back (Ctrl-C too)
    latest = results.latest
    result = MeasureResult(
        out=Path(out),
        jobs=len(all_jobs),
        already_done=start.already_done,
        measured=tuple(measured),
        statuses=dict(sorted(Counter(
            latest[j.job_id].status.value for j in all_jobs if j.job_id in latest
        ).items())),  # fmt: skip
        by_device=dict(sorted(Counter(m.device or "(none)" for m in measured).items())),
        wall_s=time.monotonic() - started,
        skipped_lines=results.skipped_lines,
    )
    lost = results.flush_unsaved()
    if lost:
        raise OutputError(
            f"{len(lost)} of {len(measured)} result(s) could not be written to {out} "
            f"({results.write_error}); they are not saved: free space and rerun the same "
            "command to measure them again", result=result)
    return result


__all__ = ["MeasureProgress", "MeasureResult", "measure"]
