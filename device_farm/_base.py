"""The Device interface: stage an artifact, run a command, measure jobs in batches."""

from __future__ import annotations

import abc
import dataclasses
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from device_farm._checks import check_env, device_int
from device_farm._errors import DeviceFault
from device_farm._protocol import ProtocolConfig, measure_job
from device_farm._records import Artifact, MeasureJob, Measurement, RunResult
from pattune_common import Record

__all__ = ["Device", "DeviceFault", "DeviceReport", "RunResult"]


@dataclass(frozen=True)
class DeviceReport(Record):
    """What ``pattune devices check`` shows for one device.

    ``rtt_ms`` is the median wall time of a trivial command (``true``) seen from
    this host, in milliseconds; ``thermal_c`` the hottest thermal zone in degrees
    Celsius (None where the device has none).
    """

    name: str
    device_type: str
    reachable: bool
    arch: str = ""
    cores: int = 0
    compiler: str = ""
    thermal_c: float | None = None
    rtt_ms: float | None = None
    error: str | None = None


_PROBE = (
    "uname -m; "
    "(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN); "
    # compilers come as arguments ("$@"), never spliced into the script
    "(for c in \"$@\"; do command -v \"$c\" >/dev/null 2>&1 && "
    "{ \"$c\" --version 2>/dev/null | head -n1; exit 0; }; done; echo none); "
    "(cat /sys/class/thermal/thermal_zone*/temp 2>/dev/null | sort -n | tail -n1; echo)"
)


class Device(abc.ABC):
    """A machine that runs artifacts and measures them.

    Contract:
        * Units: every time is seconds (floats); ``DeviceReport.rtt_ms`` alone is ms.
        * Ordering: :meth:`measure` returns one Measurement per job, in the jobs' order,
          the same length, each with the job's ``job_id``. It never raises for a job's
          failure: timeouts, crashes, wrong output and device faults are records.
        * Thread safety: a Device is used by one thread at a time (the farm gives each
          device one worker). Different Device objects may run concurrently.
        * Exclusivity across processes is not the Device's job: hold a lease
          (:class:`device_farm.LeaseStore`) around :meth:`measure`.

    Implementations provide :meth:`stage` and :meth:`execute`; the measurement
    protocol (warmup, repeats, spread, verification, pinning, thermal wait) is
    shared and lives in :mod:`device_farm._protocol`.
    """

    kind: str = "device"
    max_output: int = 1 << 20

    def __init__(
        self, *, name: str, device_type: str, arch: str = "", threads: int = 0,
        cpu_affinity: Sequence[int] = (), env: Mapping[str, str] | None = None,
        compiler: str = "", build: str = "host", protocol: ProtocolConfig | None = None,
    ) -> None:
        self.name = name
        self.device_type = device_type
        self.arch = arch
        self.threads = threads
        self.cpu_affinity = tuple(cpu_affinity)
        self.env = dict(check_env("env", dict(env or {})))
        self.compiler = compiler
        self.build = build  # "host": cross-compile on this machine; "device": on the device
        self.protocol = protocol or ProtocolConfig()
        self._last_finished: float | None = None  # monotonic; for the cooldown between jobs

    @property
    def label(self) -> str:
        """The component name failures start with, e.g. ``ssh device pixel-3``."""
        return f"{self.kind} device {self.name}"

    @abc.abstractmethod
    def stage(self, artifact: Artifact) -> str:
        """Make the artifact's files present on the device; return their directory.

        The files are there at the latest when the first :meth:`execute` with the
        returned directory as ``cwd`` runs (an SSH device sends a new build with
        that command instead of in a round trip of its own). Files are
        content-addressed by sha256, so each is stored once per device.

        Raises:
            DeviceFault: The files could not be placed (connection lost, disk full).
        """

    @abc.abstractmethod
    def execute(
        self, argv: Sequence[str], *, timeout_s: float, cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Run one command, reading its output until it exits or ``timeout_s`` passes.

        On timeout the command's whole process group is killed and
        ``RunResult.timed_out`` is set; the device stays usable.

        Raises:
            DeviceFault: The device could not be reached or the connection broke.
        """

    def close(self) -> None:
        """Release connections; the device reconnects on next use. Default: nothing."""

    def measure(self, jobs: list[MeasureJob]) -> list[Measurement]:
        """Measure each job with :attr:`protocol`; same order and length as ``jobs``."""
        results: list[Measurement] = []
        for job in jobs:
            # The cooldown spans calls: the farm hands a device one job at a time.
            if self._last_finished is not None and self.protocol.cooldown_s > 0:
                rest = self._last_finished + self.protocol.cooldown_s - time.monotonic()
                if rest > 0:
                    time.sleep(rest)
            results.append(measure_job(self, job, self.protocol))
            self._last_finished = time.monotonic()
        return results

    def check(self, *, rtt_samples: int = 5) -> DeviceReport:
        """Probe reachability, arch, cores, compiler, thermal state and round-trip time."""
        base = DeviceReport(name=self.name, device_type=self.device_type, reachable=False)
        try:
            rtts = []
            for _ in range(rtt_samples):
                t0 = time.perf_counter()
                self.execute(["true"], timeout_s=10)
                rtts.append((time.perf_counter() - t0) * 1e3)
            ccs = [c for c in (self.compiler, "cc", "gcc", "clang") if c]
            r = self.execute(["sh", "-c", _PROBE, "sh", *ccs], timeout_s=15)
        except DeviceFault as exc:
            return dataclasses.replace(base, error=str(exc))
        lines = (r.stdout.splitlines() + ["", "", "", ""])[:4]
        temp = lines[3].strip()
        return dataclasses.replace(
            base, reachable=True, arch=lines[0].strip(),
            cores=max(0, device_int(lines[1]) or 0),
            compiler=lines[2].strip(),
            thermal_c=None if (milli := device_int(temp)) is None else milli / 1000.0,
            rtt_ms=round(statistics.median(rtts), 3),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device_type={self.device_type!r})"
