"""The measurement protocol every Device shares.

Warmup runs, repeats until a minimum total time, median and spread; when the
coefficient of variation stays above a limit after ``remeasure`` extra rounds,
the result is recorded as noisy. Every run's output is verified before its time
counts. On Linux devices the command may be pinned with ``taskset`` and the
protocol may wait until ``/sys/class/thermal`` reads below a limit.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from device_farm._checks import check_number, device_int, is_real
from device_farm._errors import DeviceFault, StagedFilesLost
from device_farm._records import Artifact, MeasureJob, Measurement, MeasureStatus, RunResult, Verify


class Device(Protocol):
    """What the protocol needs of a device (:class:`device_farm.Device` provides it)."""

    name: str
    device_type: str
    env: dict[str, str]
    threads: int
    cpu_affinity: tuple[int, ...]

    @property
    def label(self) -> str:
        """The component name failures start with."""

    def stage(self, artifact: Artifact) -> str:
        """Place the artifact's files on the device; return their directory."""

    def execute(
        self, argv: Sequence[str], *, timeout_s: float, cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run one command until it exits or times out."""

__all__ = ["ProtocolConfig", "measure_job", "parse_report", "verify_report"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProtocolConfig:
    """How a job is measured. Times are seconds.

    Attributes:
        warmup: Untimed runs before the timed ones (passed as ``{warmup}`` to a
            self-timed program, run separately otherwise).
        min_repeats: Fewest timed repeats per round.
        max_repeats: Most timed repeats per round.
        min_total_s: Repeat until the timed repeats add up to this.
        max_cv: Highest coefficient of variation (std / mean) accepted as stable.
        remeasure: Extra rounds when the spread is too high, before recording noisy.
        cooldown_s: Pause between jobs on one device.
        pin: Run under ``taskset -c`` with the device's CPU affinity (Linux only).
        thermal_limit_c: Wait before each job until the hottest zone reads below this.
        thermal_timeout_s: Longest thermal wait; the job then runs anyway.
        thermal_glob: Files holding zone temperatures in millidegrees Celsius.
    """

    warmup: int = 1
    min_repeats: int = 5
    max_repeats: int = 1000
    min_total_s: float = 0.05
    max_cv: float = 0.05
    remeasure: int = 2
    cooldown_s: float = 0.0
    pin: bool = True
    thermal_limit_c: float | None = None
    thermal_timeout_s: float = 120.0
    thermal_glob: str = "/sys/class/thermal/thermal_zone*/temp"
    thermal_poll_s: float = 1.0

    def __post_init__(self) -> None:
        # Every limit finite: NaN compares false with everything, so a NaN max_cv would
        # accept any spread and a NaN thermal limit would wait out every timeout.
        for name in ("warmup", "remeasure"):
            check_number(name, getattr(self, name), low=0, high=1000, integer=True)
        check_number("min_repeats", self.min_repeats, low=1, integer=True)
        check_number("max_repeats", self.max_repeats, low=1, high=1_000_000, integer=True)
        if self.min_repeats > self.max_repeats:
            raise ValueError(
                f"repeats must satisfy 1 <= min_repeats <= max_repeats; got "
                f"{self.min_repeats}, {self.max_repeats}"
            )
        check_number("min_total_s", self.min_total_s, low=0, high=3600)
        check_number("cooldown_s", self.cooldown_s, low=0, high=3600)
        check_number("max_cv", self.max_cv, low=0, low_open=True)
        if self.thermal_limit_c is not None:
            check_number("thermal_limit_c", self.thermal_limit_c, low=-50, high=200)
        check_number("thermal_timeout_s", self.thermal_timeout_s, low=0, high=86400)
        check_number("thermal_poll_s", self.thermal_poll_s, low=0, low_open=True, high=3600)


def parse_report(stdout: str) -> dict[str, Any] | None:
    """Return the last stdout line that parses as a JSON object, or None.

    ``NaN`` and ``Infinity`` (which Python's json reads, although JSON has neither)
    parse as floats here so that the checks after name them; nothing non-finite
    gets past :func:`verify_report` or :func:`report_times`.
    """
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    return None


def verify_report(report: dict[str, Any] | None, verify: Verify) -> str | None:
    """Return None when the report passes ``verify``, else the ``verify: ...`` reason."""
    if verify.checksum is None:
        return None
    got = report.get("checksum") if report is not None else None
    if report is not None and "nonfinite" in report and not is_real(got):
        # The codegen harness says how many outputs were NaN or infinite instead of
        # printing a checksum JSON cannot hold.
        return f"verify: the output holds {report['nonfinite']!r:.20} NaN or infinite value(s)"
    if not isinstance(got, int | float) or isinstance(got, bool):
        return 'verify: no JSON report with a numeric "checksum" on stdout'
    try:
        value = float(got)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        return f"verify: checksum {value} is not finite"
    tol = verify.atol + verify.rtol * abs(verify.checksum)
    if abs(value - verify.checksum) > tol:
        return (
            f"verify: checksum {value:.9g} differs from expected {verify.checksum:.9g} "
            f"by {abs(value - verify.checksum):.3g} > tolerance {tol:.3g}"
        )
    return None


def report_times(times: Any, timeout_s: float) -> list[float] | str:
    """The repeat times a program reported, or the ``verify: ...`` reason they are impossible.

    Each time must be a finite number above zero, and together they must fit in
    the run's ``timeout_s``: one run was killed at that limit, so longer repeats
    cannot have happened (and 1e308 s would overflow the statistics).
    """
    if not isinstance(times, list) or not times or not all(is_real(t) for t in times):
        return f'verify: "times_s" must be a non-empty list of numbers; got {times!r:.80}'
    try:
        values = [float(t) for t in times]
    except OverflowError:
        values = [math.inf]
    bad = [t for t in values if not (math.isfinite(t) and 0 < t <= timeout_s)]
    if bad:
        return (f"verify: impossible repeat time {bad[0]!r} s in times_s (each must be a "
                f"finite number of seconds > 0 and <= the run's limit timeout_s {timeout_s:g} s)")
    total = math.fsum(values)
    if total > timeout_s:
        return (f"verify: impossible times_s: {len(values)} repeats add up to {total:.3g} s, "
                f"more than the run's limit timeout_s {timeout_s:g} s")
    return values


def _cut_note(r: RunResult) -> str:
    if not r.stdout_cut:
        return ""
    # what was kept, less the newline put between the head and the tail, plus what was cut
    total = r.stdout_cut + len(r.stdout.encode("utf-8", "surrogateescape")) - 1
    return (f" (stdout was {total:,} bytes; only its first "
            "and last part were kept, so print less)")


class _JobFailed(Exception):
    def __init__(self, status: MeasureStatus, error: str, stderr: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.stderr = status, error, stderr


class _Runner:
    """Runs one job's executions on one device and turns each into times or a failure."""

    def __init__(self, device: Device, job: MeasureJob, cfg: ProtocolConfig, directory: str):
        self.device, self.job, self.cfg, self.directory = device, job, cfg, directory
        self.env = dict(device.env)
        if device.threads:
            self.env.setdefault("OMP_NUM_THREADS", str(device.threads))
        self.env.update(dict(job.artifact.env))
        self.command: tuple[str, ...] = ()

    def argv(self, *, repeats: int, warmup: int) -> list[str]:
        argv = self.job.artifact.render_argv(
            directory=self.directory, repeats=repeats, warmup=warmup
        )
        if self.cfg.pin and self.device.cpu_affinity:
            cpus = ",".join(str(c) for c in self.device.cpu_affinity)
            argv = ["taskset", "-c", cpus, *argv]
        return argv

    def run(self, *, repeats: int, warmup: int) -> list[float]:
        """One execution; returns its repeat times or raises _JobFailed."""
        argv = self.argv(repeats=repeats, warmup=warmup)
        self.command = tuple(argv)
        r: RunResult = self.device.execute(
            argv, timeout_s=self.job.timeout_s, cwd=self.directory, env=self.env
        )
        tail = r.stderr[-4000:]
        if r.timed_out:
            raise _JobFailed(
                MeasureStatus.TIMEOUT,
                f"{self.device.label}: timeout after {self.job.timeout_s:g} s", tail,
            )
        if r.exit_code != 0:
            last = tail.strip().splitlines()[-1][:300] if tail.strip() else "no stderr"
            raise _JobFailed(
                MeasureStatus.CRASH,
                f"{self.device.label}: exit code {r.exit_code}: {last}", tail,
            )
        report = parse_report(r.stdout)
        reason = verify_report(report, self.job.artifact.verify)
        if reason:
            raise _JobFailed(MeasureStatus.WRONG_OUTPUT, reason + _cut_note(r), tail)
        if report is not None and "times_s" in report:
            times = report_times(report["times_s"], self.job.timeout_s)
            if isinstance(times, str):
                raise _JobFailed(MeasureStatus.WRONG_OUTPUT, times, tail)
            return times
        if self.job.artifact.self_timed:
            raise _JobFailed(
                MeasureStatus.WRONG_OUTPUT,
                'verify: a program with {repeats} in its argv must print "times_s" on stdout'
                + _cut_note(r), tail,
            )
        # The device's clock timed the run: it cannot be negative (the clock stepped back),
        # nor longer than the limit the run was killed at (stepped forward).
        if not (math.isfinite(r.wall_s) and 0 < r.wall_s <= self.job.timeout_s):
            raise DeviceFault(
                f"{self.device.label}: impossible run time {r.wall_s!r} s from the device's "
                f"clock (must be > 0 and <= timeout_s {self.job.timeout_s:g} s); did its "
                "clock step?")
        return [r.wall_s]

    def round(self) -> list[float]:
        """Collect one round: at least min_repeats and min_total_s worth of repeats."""
        cfg = self.cfg
        times: list[float] = []
        if self.job.artifact.self_timed:
            want = cfg.min_repeats
            while True:
                times += self.run(repeats=want, warmup=cfg.warmup if not times else 0)
                total = sum(times)
                if total >= cfg.min_total_s or len(times) >= cfg.max_repeats:
                    return times
                per = max(total / len(times), 1e-9)
                want = min(cfg.max_repeats - len(times),
                           max(1, math.ceil((cfg.min_total_s - total) / per)))
        for _ in range(cfg.warmup):
            self.run(repeats=1, warmup=0)
        while len(times) < cfg.min_repeats or (
            sum(times) < cfg.min_total_s and len(times) < cfg.max_repeats
        ):
            times += self.run(repeats=1, warmup=0)
        return times


def _thermal_wait(device: Device, cfg: ProtocolConfig) -> None:
    if cfg.thermal_limit_c is None:
        return
    deadline = time.monotonic() + cfg.thermal_timeout_s
    # The glob is expanded by the device's shell on purpose; it comes from configuration.
    script = 'cat $1 2>/dev/null | sort -n | tail -n1'
    while True:
        r = device.execute(["sh", "-c", script, "sh", cfg.thermal_glob], timeout_s=10)
        milli = device_int(r.stdout)
        if milli is None or milli / 1000.0 < cfg.thermal_limit_c:
            return
        if time.monotonic() > deadline:
            _log.warning("%s: still %.1f C after %g s; measuring anyway",
                         device.label, milli / 1000.0, cfg.thermal_timeout_s)
            return
        time.sleep(cfg.thermal_poll_s)


def _stats(times: list[float]) -> tuple[float, float]:
    arr = np.asarray(times, dtype=float)
    mean = float(arr.mean())
    cv = float(arr.std(ddof=1) / mean) if arr.size > 1 and mean > 0 else 0.0
    return float(np.median(arr)), cv


def measure_job(device: Device, job: MeasureJob, cfg: ProtocolConfig) -> Measurement:
    """Measure one job on one device; every failure becomes a record."""
    try:
        return _measure_once(device, job, cfg)
    except StagedFilesLost:
        _log.warning("%s: staged files vanished; staging %s again", device.label, job.job_id)
    try:
        return _measure_once(device, job, cfg)
    except StagedFilesLost as exc:
        return Measurement.failed(
            job, device=device.name, device_type=device.device_type,
            status=MeasureStatus.DEVICE_FAULT, error=str(exc), started_at=time.time(),
            finished_at=time.time())


def _measure_once(device: Device, job: MeasureJob, cfg: ProtocolConfig) -> Measurement:
    started = time.time()
    runner: _Runner | None = None
    try:
        _thermal_wait(device, cfg)
        directory = device.stage(job.artifact)
        runner = _Runner(device, job, cfg, directory)
        times: list[float] = []
        median = cv = 0.0
        for rounds in range(1, cfg.remeasure + 2):
            times = runner.round()
            median, cv = _stats(times)
            if cv <= cfg.max_cv:
                break
        status = MeasureStatus.OK if cv <= cfg.max_cv else MeasureStatus.NOISY
        return Measurement(
            job_id=job.job_id, device=device.name, device_type=device.device_type,
            artifact_hash=job.artifact.content_hash(), command=runner.command,
            status=status, times_s=tuple(times), median_s=median, cv=cv, rounds=rounds,
            started_at=started, finished_at=time.time(),
        )
    except _JobFailed as exc:
        status, error, stderr = exc.status, exc.error, exc.stderr
    except StagedFilesLost:
        raise
    except DeviceFault as exc:
        status, error, stderr = MeasureStatus.DEVICE_FAULT, str(exc), ""
    except (ValueError, OSError) as exc:  # the artifact's files here are missing or changed
        status, error, stderr = MeasureStatus.ERROR, f"{device.label}: artifact: {exc}", ""
    return Measurement.failed(
        job, device=device.name, device_type=device.device_type, status=status, error=error,
        stderr_tail=stderr, command=runner.command if runner else (), started_at=started,
        finished_at=time.time(),
    )
