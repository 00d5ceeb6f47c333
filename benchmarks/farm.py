"""``pattune bench farm``: SSH overhead per measurement and 3-over-1 device scaling.

Everything is real: a C program built with gcc, three OpenSSH servers on
loopback (one per "device"), optionally behind a proxy that delays each
direction like a phone's Wi-Fi. Baselines run side by side in the same process:
the overhead is the SSH device's median time per measurement minus the local
device's on the same job, interleaved; the scaling is the throughput of the
same 60-job batch on 3 devices over 1.

This machine has 2 cores, so the scaling batch uses jobs that are not CPU-bound:
the program sleeps for its repeats (``nanosleep``) and reports those times, as a
phone busy with a kernel would leave the host idle. The JSON says so.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from benchmarks.harness.delay_proxy import DelayProxy
from benchmarks.harness.sshd import SshdFarm
from device_farm._base import Device
from device_farm._protocol import ProtocolConfig
from device_farm._records import Artifact, ArtifactFile, MeasureJob, MeasureStatus
from device_farm._ssh_connect import SSHTarget
from device_farm.farm import Farm, FarmConfig
from device_farm.lease import LeaseStore
from device_farm.local import LocalDevice
from device_farm.ssh import SSHDevice

__all__ = ["run_farm_bench"]

_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9; }
/* usage: prog WARMUP REPEATS spin N | sleep SECONDS ; prints {"times_s": [...], "checksum": x} */
int main(int argc, char **argv) {
  if (argc != 5) return 2;
  int warmup = atoi(argv[1]), repeats = atoi(argv[2]);
  int spin = strcmp(argv[3], "spin") == 0; double arg = atof(argv[4]);
  volatile double acc = 0; double *times = malloc(sizeof(double) * (repeats > 0 ? repeats : 1));
  for (int r = -warmup; r < repeats; r++) {
    double t0 = now();
    if (spin) { acc = 0; for (long i = 0; i < (long)arg; i++) acc += 1.0 / (1.0 + i); }
    else { struct timespec ts = { (time_t)arg, (long)((arg - (time_t)arg) * 1e9) };
           nanosleep(&ts, NULL); acc = 1.0; }
    if (r >= 0) times[r] = now() - t0;
  }
  printf("{\"times_s\": [");
  for (int r = 0; r < repeats; r++) printf("%s%.9f", r ? ", " : "", times[r]);
  printf("], \"checksum\": %.6f}\n", (double)acc);
  return 0;
}
"""


def _build(workdir: str) -> ArtifactFile:
    src = os.path.join(workdir, "bench.c")
    exe = os.path.join(workdir, "bench_prog")
    with open(src, "w") as fh:
        fh.write(_PROGRAM)
    subprocess.run([shutil.which("gcc") or "cc", "-O2", "-o", exe, src], check=True)
    return ArtifactFile.from_path(exe, executable=True)


def _data_file(workdir: str) -> str:
    """A 64 KiB input file every job of the new-build overhead shares (uploaded once)."""
    path = os.path.join(workdir, "input.bin")
    with open(path, "wb") as fh:
        fh.write(os.urandom(64 * 1024))
    return path


def _ssh(farm: SshdFarm, i: int, port: int, protocol: ProtocolConfig) -> SSHDevice:
    s = farm.servers[i]
    target = SSHTarget(host="127.0.0.1", port=port, user=farm.user, identity_file=farm.client_key,
                       known_hosts=farm.known_hosts, ssh_config=os.devnull)
    return SSHDevice(name=f"{s.name}@{port}", device_type="bench", target=target,
                     work_dir=s.work_dir, protocol=protocol)


def _per_job_ms(dev: Device, job: MeasureJob) -> float:
    t0 = time.perf_counter()
    [m] = dev.measure([job])
    if m.status is not MeasureStatus.OK:
        raise RuntimeError(f"bench job failed on {dev.name}: {m.error}")
    return (time.perf_counter() - t0) * 1e3


def _overhead(local: Device, remote: Device, job: MeasureJob, n: int) -> dict[str, float]:
    for dev in (local, remote):  # warm: connection open, artifact uploaded
        _per_job_ms(dev, job)
    loc, rem = [], []
    for _ in range(n):  # interleaved, so drifts in machine load hit both sides alike
        loc.append(_per_job_ms(local, job))
        rem.append(_per_job_ms(remote, job))
    return {"local_median_ms": round(statistics.median(loc), 3),
            "ssh_median_ms": round(statistics.median(rem), 3),
            "overhead_ms": round(statistics.median(rem) - statistics.median(loc), 3)}


def _variant(exe: ArtifactFile, directory: str, i: int) -> ArtifactFile:
    """A copy of ``exe`` with a distinct sha256: a new build, as every tuned config is.

    ELF loaders ignore bytes after the last segment, so a few trailing bytes make a
    new file that runs exactly like the original.
    """
    path = os.path.join(directory, f"variant-{i:04d}")
    shutil.copyfile(exe.local_path, path)
    with open(path, "ab") as fh:
        fh.write(f"pattune-variant-{i}-{time.time_ns()}".encode())
    os.chmod(path, 0o755)
    return ArtifactFile.from_path(path, name="bench_prog", executable=True)


def fresh_job_overhead(local: Device, remote: Device, exe: ArtifactFile, data: ArtifactFile,
                       directory: str, n: int) -> dict[str, float]:
    """Per-job time when every job brings a new executable (and a data file already there).

    This is what tuning does: each config is a new build, so a job uploads its
    executable, links the artifact's files and runs it. The local device does the
    same (a copy instead of an upload), interleaved, so the difference is what the
    link and the remote commands cost.
    """
    def job(i: int) -> MeasureJob:
        return MeasureJob(job_id=f"fresh-{i}", artifact=Artifact(
            files=(_variant(exe, directory, i), data),
            argv=("bench_prog", "{warmup}", "{repeats}", "spin", "20000")))

    for dev in (local, remote):  # warm: connected, the data file uploaded
        _per_job_ms(dev, job(10_000 + len(dev.name)))
    loc, rem = [], []
    for i in range(n):
        loc.append(_per_job_ms(local, job(2 * i)))
        rem.append(_per_job_ms(remote, job(2 * i + 1)))
    return {"local_median_ms": round(statistics.median(loc), 3),
            "ssh_median_ms": round(statistics.median(rem), 3),
            "overhead_ms": round(statistics.median(rem) - statistics.median(loc), 3)}


def _batch_s(devices: list[Device], jobs: list[MeasureJob], db: str) -> float:
    farm = Farm(devices, leases=LeaseStore(db), config=FarmConfig())
    t0 = time.perf_counter()
    out = farm.run(jobs)
    wall = time.perf_counter() - t0
    bad = [m.error for m in out if m.status is not MeasureStatus.OK]
    if bad:
        raise RuntimeError(f"bench batch had failures: {bad[:3]}")
    return wall


def _scaling(one: list[Device], three: list[Device], jobs: list[MeasureJob], root: str,
             rounds: int) -> dict[str, Any]:
    for d in three:  # upload once and connect, outside the timing
        d.measure(jobs[:1])
    w1, w3 = [], []
    for r in range(rounds):
        w1.append(_batch_s(one, jobs, f"sqlite:///{root}/lease-{r}-1.db"))
        w3.append(_batch_s(three, jobs, f"sqlite:///{root}/lease-{r}-3.db"))
    return {"wall_1_device_s": [round(w, 3) for w in w1],
            "wall_3_devices_s": [round(w, 3) for w in w3],
            "scaling_3_over_1": round(statistics.median(w1) / statistics.median(w3), 3)}


def run_farm_bench(*, jobs: int = 60, overhead_jobs: int = 50, wifi_delay_ms: float = 30.0,
                   rounds: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark; return the JSON document (with a ``summary`` table)."""
    root = tempfile.mkdtemp(prefix="pattune-bench-farm-")
    farm = SshdFarm(os.path.join(root, "sshd"), 3)
    proxies: list[DelayProxy] = []
    try:
        exe = _build(root)
        fast = ProtocolConfig(warmup=1, min_repeats=5, min_total_s=0.0, max_cv=10.0,
                              remeasure=0)
        spin = MeasureJob(job_id="spin", artifact=Artifact(
            files=(exe,), argv=("bench_prog", "{warmup}", "{repeats}", "spin", "20000")))
        local = LocalDevice(work_dir=os.path.join(root, "local"), protocol=fast)
        log("overhead: loopback")
        direct = _overhead(local, _ssh(farm, 0, farm.servers[0].port, fast), spin, overhead_jobs)
        for s in farm.servers:
            proxies.append(DelayProxy(("127.0.0.1", s.port), delay_s=wifi_delay_ms / 1e3))
            farm.trust(s, port=proxies[-1].port)
        log(f"overhead: through a {wifi_delay_ms:g} ms each-way delay proxy")
        wifi = _overhead(local, _ssh(farm, 0, proxies[0].port, fast), spin,
                         max(10, overhead_jobs // 5))
        log(f"overhead, a new build per job: through the {wifi_delay_ms:g} ms proxy")
        data = ArtifactFile.from_path(_data_file(root), name="input.bin")
        fresh = fresh_job_overhead(local, _ssh(farm, 0, proxies[0].port, fast), exe, data,
                                   root, max(10, overhead_jobs // 5))
        sleep_s = 0.01
        batch = [MeasureJob(job_id=f"nap-{i:03d}", artifact=Artifact(
            files=(exe,), argv=("bench_prog", "{warmup}", "{repeats}", "sleep", str(sleep_s))))
            for i in range(jobs)]
        log(f"scaling: {jobs} jobs, 1 vs 3 devices, loopback")
        sdirect = _scaling([_ssh(farm, 0, farm.servers[0].port, fast)],
                           [_ssh(farm, i, s.port, fast) for i, s in enumerate(farm.servers)],
                           batch, root, rounds)
        log(f"scaling: {jobs} jobs, 1 vs 3 devices, {wifi_delay_ms:g} ms delay proxy")
        swifi = _scaling([_ssh(farm, 0, proxies[0].port, fast)],
                         [_ssh(farm, i, p.port, fast) for i, p in enumerate(proxies)],
                         batch, root, rounds)
    finally:
        for p in proxies:
            p.close()
        farm.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "summary": {
            "overhead_ms": direct["overhead_ms"],
            "overhead_ms_wifi": wifi["overhead_ms"],
            "overhead_ms_new_build_wifi": fresh["overhead_ms"],
            "scaling_3_over_1": sdirect["scaling_3_over_1"],
            "scaling_3_over_1_wifi": swifi["scaling_3_over_1"],
        },
        "overhead": {"loopback": direct, "wifi": wifi, "new_build_wifi": fresh,
                     "jobs": overhead_jobs,
                     "job": "gcc -O2 C program, its own loop: 1 warmup + 5 repeats of 20000 "
                            "divisions (CPU-bound, ~0.1 ms each); one exec per measurement",
                     "new_build_job": "the same run, but each job a new executable (its "
                                      "sha256 differs) beside a 64 KiB input already on the "
                                      "device: upload, link, run, as each tuned config is"},
        "scaling": {"loopback": sdirect, "wifi": swifi, "jobs": jobs, "rounds": rounds,
                    "job": f"same C program, 1 warmup + 5 repeats of nanosleep({sleep_s} s): "
                           "not CPU-bound, because this host has 2 cores for 3 'devices'"},
        "wifi_delay_ms_each_way": wifi_delay_ms,
        "devices": "3 OpenSSH sshd processes on 127.0.0.1, one per device, each its own "
                   "work dir; leases in SQLite",
        "protocol": {"warmup": 1, "min_repeats": 5, "min_total_s": 0.0},
    }
