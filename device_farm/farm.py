"""Batch measurement over every healthy device of one type, surviving device faults.

One worker thread per device takes the device's lease (so other tuner
processes wait), takes the next job, measures it and releases the lease. A
``device_fault`` result (connection dropped, disk full) sends the job back to
the queue for another device and counts against the device; a device with
``quarantine_after`` consecutive faults is quarantined for every process.
Every job gets exactly one result: measured, failed with its reason, or
``device_fault`` with ``farm: ...`` when no device could run it (that status is
not final, so a resumed batch tries such jobs again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from device_farm._base import Device, DeviceReport
from device_farm._errors import DeviceFault
from device_farm._records import MeasureJob, Measurement, MeasureStatus
from device_farm.lease import LeaseStore

__all__ = ["Farm", "FarmConfig"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FarmConfig:
    """How the farm treats faults. Times are seconds.

    Attributes:
        max_attempts: Devices a job may fault on before it fails for good.
        quarantine_after: Consecutive device faults that quarantine a device.
        quarantine_s: How long a quarantine lasts (for every process sharing the database).
        probe_timeout_s: Limit for the health probe (``true``) at start and after a fault.
        retry_backoff_s: First pause before re-probing a faulty device (doubles each time).
    """

    max_attempts: int = 3
    quarantine_after: int = 3
    quarantine_s: float = 600.0
    probe_timeout_s: float = 15.0
    retry_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.quarantine_after < 1:
            raise ValueError("max_attempts and quarantine_after must be >= 1")


@dataclass
class _Pending:
    job: MeasureJob
    attempts: int = 0
    faulted_on: set[str] = field(default_factory=set)
    last_error: str = ""


class _Queue:
    """The jobs not yet final, shared by the workers; every method holds one lock."""

    def __init__(self, jobs: Sequence[MeasureJob]) -> None:
        self.lock = threading.Lock()
        self.items = [_Pending(j) for j in jobs]
        self.running = 0

    def take(self, device: str) -> _Pending | None:
        with self.lock:
            for i, item in enumerate(self.items):
                if device not in item.faulted_on:
                    self.running += 1
                    return self.items.pop(i)
            return None

    def put_back(self, item: _Pending) -> None:
        with self.lock:
            self.items.insert(0, item)
            self.running -= 1

    def finish(self) -> None:
        with self.lock:
            self.running -= 1

    def has_job_for(self, device: str) -> bool:
        with self.lock:
            return any(device not in i.faulted_on for i in self.items)

    def idle_for(self, device: str) -> bool:
        """True when no job is left for ``device`` and none is running that could return."""
        with self.lock:
            return self.running == 0 and all(device in i.faulted_on for i in self.items)


class Farm:
    """Devices of one type measuring a batch of jobs in parallel.

    Args:
        devices: Interchangeable devices (one device type).
        leases: Where leases and health live (shared by every tuner process).
        config: Fault handling.
        on_result: Called once per job with its final Measurement (from worker threads,
            one call at a time). If it raises, the farm reports that as an event and
            goes on: the job is settled and the result is still returned by :meth:`run`.
        on_event: Called with one-line notices (device unreachable, quarantined).
    """

    def __init__(self, devices: Sequence[Device], *, leases: LeaseStore,
                 config: FarmConfig | None = None,
                 on_result: Callable[[Measurement], None] | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        if not devices:
            raise ValueError("a farm needs at least one device")
        self.devices = list(devices)
        self.leases = leases
        self.config = config or FarmConfig()
        self._on_result = on_result or (lambda m: None)
        self._on_event = on_event or (lambda s: _log.warning("%s", s))
        self._result_lock = threading.Lock()
        self._results: dict[str, Measurement] = {}
        self._unhealthy: dict[str, str] = {}  # why each device left out was left out
        #: ``(job_id, error)`` for each result ``on_result`` failed to take in the last run.
        self.handover_errors: list[tuple[str, str]] = []

    def check(self) -> list[DeviceReport]:
        """Probe every device in parallel (``pattune devices check``)."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.devices))) as pool:
            return list(pool.map(lambda d: d.check(), self.devices))

    def _probe(self, device: Device) -> str | None:
        try:
            r = device.execute(["true"], timeout_s=self.config.probe_timeout_s)
        except DeviceFault as exc:
            return str(exc)
        if r.exit_code != 0:
            return f"{device.label}: health probe `true` gave {r.exit_code or 'a timeout'}"
        return None

    def healthy(self) -> list[Device]:
        """The devices that are not quarantined and answer a trivial command now."""
        def ok(device: Device) -> bool:
            reason = self.leases.quarantine(device.name)
            if reason:
                self._unhealthy[device.name] = f"{device.label}: quarantined ({reason})"
                self._on_event(self._unhealthy[device.name])
                return False
            err = self._probe(device)
            if err:
                self._unhealthy[device.name] = err
                self._on_event(f"{err}; not used")
                self.leases.record_failure(device.name, err, threshold=self.config.quarantine_after,
                                           quarantine_s=self.config.quarantine_s)
            return err is None

        self._unhealthy = {}

        with ThreadPoolExecutor(max_workers=len(self.devices)) as pool:
            flags = list(pool.map(ok, self.devices))
        return [d for d, f in zip(self.devices, flags, strict=True) if f]

    def run(self, jobs: Sequence[MeasureJob]) -> list[Measurement]:
        """Measure every job; return one final Measurement per job, in the jobs' order."""
        ids = [j.job_id for j in jobs]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"job ids must be unique in a batch; repeated: {', '.join(dup)}")
        self._results = {}
        self.handover_errors = []
        queue = _Queue(jobs)
        workers = [threading.Thread(target=self._worker, args=(d, queue), name=f"farm-{d.name}")
                   for d in self.healthy()]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        device_type = self.devices[0].device_type
        for item in queue.items:  # nothing could run these
            # Say why: the job's own last fault, else why the devices were left out (a
            # changed host key must be in the record, not only on a terminal).
            if item.last_error:
                why = f"; last error: {item.last_error}"
            elif self._unhealthy:
                why = f"; devices left out: {'; '.join(self._unhealthy.values())[:2000]}"
            else:
                why = ""
            self._finalize(Measurement.failed(
                item.job, device="", device_type=device_type,
                status=MeasureStatus.DEVICE_FAULT,
                error=f"farm: no healthy device of type {device_type} could run it{why}",
                started_at=time.time(), finished_at=time.time()))
        return [self._results[i] for i in ids]

    def _finalize(self, m: Measurement) -> None:
        with self._result_lock:
            if m.job_id in self._results:  # never twice; cannot happen by construction
                raise AssertionError(f"job {m.job_id} finished twice")
            self._results[m.job_id] = m
            try:
                self._on_result(m)
            except Exception as exc:  # noqa: BLE001  (e.g. the results file's disk is full)
                # The job is settled regardless: a worker that died here would leave its
                # job "running" and every other worker waiting for it forever.
                why = f"{type(exc).__name__}: {exc}"
                self.handover_errors.append((m.job_id, why))
                _log.debug("on_result failed for %s", m.job_id, exc_info=True)
                self._on_event(f"farm: the result of {m.job_id} was not taken: {why}")

    def _worker(self, device: Device, queue: _Queue) -> None:
        try:
            while not queue.idle_for(device.name):
                if not queue.has_job_for(device.name):
                    time.sleep(0.05)  # jobs are running elsewhere and may come back
                    continue
                if not self._one_job(device, queue):
                    return
        except Exception as exc:  # noqa: BLE001  (the database went away, or a bug)
            # Jobs this worker held are back in the queue; others finish them, or run()
            # records them as unrunnable. A dead worker must never hang the batch. The
            # traceback is for developers (debug log); users get the one-line event.
            _log.debug("worker for %s stopped", device.name, exc_info=True)
            self._on_event(f"{device.label}: worker stopped: {type(exc).__name__}: {exc}")

    def _one_job(self, device: Device, queue: _Queue) -> bool:
        """Lease the device, measure one job, settle it; False when the device is done for."""
        lease = self.leases.acquire(device.name, timeout_s=1.0)
        if lease is None:
            return True  # another process is measuring on it; look again
        item: _Pending | None = None
        try:
            with self.leases.held(lease) as lost:
                item = queue.take(device.name)
                if item is None:
                    return True  # another worker took the last job meanwhile
                m = self._measure(device, item.job)
                if lost.is_set():
                    # Someone else may have measured on the device meanwhile: time is suspect.
                    self._on_event(f"{device.label}: lease lost during {item.job.job_id}; "
                                   "measuring it again")
                    queue.put_back(item)
                    item = None
                    return True
        except BaseException:
            if item is not None:
                queue.put_back(item)
            raise
        return self._settle(device, item, m, queue)

    def _measure(self, device: Device, job: MeasureJob) -> Measurement:
        try:
            return device.measure([job])[0]
        except Exception as exc:  # noqa: BLE001  (a Device must not raise; record it if it does)
            _log.debug("%s raised measuring %s", device.label, job.job_id, exc_info=True)
            return Measurement.failed(
                job, device=device.name, device_type=device.device_type,
                status=MeasureStatus.ERROR, error=f"farm: {device.label} raised "
                f"{type(exc).__name__}: {exc}", started_at=time.time(), finished_at=time.time())

    def _settle(self, device: Device, item: _Pending, m: Measurement, queue: _Queue) -> bool:
        if m.status.is_final():
            try:
                self._finalize(m)
            finally:
                queue.finish()  # before touching the database again, so no job can hang
            self.leases.record_success(device.name)
            return True
        item.attempts += 1
        item.faulted_on.add(device.name)
        item.last_error = m.error or ""
        if item.attempts >= self.config.max_attempts:
            try:
                self._finalize(m.with_status(
                    MeasureStatus.DEVICE_FAULT,
                    f"farm: device faults on {item.attempts} devices; last: {m.error}"))
            finally:
                queue.finish()
        else:
            queue.put_back(item)
        return self._recover(device, m.error or "device fault")

    def _recover(self, device: Device, error: str) -> bool:
        """Count the fault; re-probe with backoff. False when the device is quarantined."""
        cfg = self.config
        backoff = cfg.retry_backoff_s
        reason = error
        while True:
            if self.leases.record_failure(device.name, reason, threshold=cfg.quarantine_after,
                                          quarantine_s=cfg.quarantine_s):
                self._on_event(f"{device.label}: quarantined after {cfg.quarantine_after} "
                               f"consecutive faults; last: {reason}")
                device.close()
                return False
            time.sleep(backoff)
            backoff *= 2
            probe = self._probe(device)
            if probe is None:
                return True
            reason = probe
