"""SSH servers that allow one session per connection, and a job's commands (issue 15 items 6, 7).

Real sshd with ``MaxSessions 1`` (small boards' and phones' servers): every job
must succeed, a timeout must still kill the program, and the terminal must show
no paramiko lines. Then what a job costs on the link: one remote command per job,
and through a proxy that delays each direction, about two round trips for a job
with a new build (it was about twelve).
"""

from __future__ import annotations

import json
import statistics
import time

import pytest

from benchmarks.harness.delay_proxy import DelayProxy
from benchmarks.harness.sshd import SshdFarm
from device_farm import Artifact, MeasureStatus
from device_farm.ssh import SSHDevice

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import job, plain, script, self_timed, ssh_device
from tests.test_farm_cli import pattune, write_inventory


def test_max_sessions_1_runs_every_job_and_prints_no_paramiko_lines(tmp_path):
    farm = SshdFarm(str(tmp_path / "sshd"), 1, max_sessions=1)
    try:
        inv = write_inventory(tmp_path / "inv.toml", farm)
        pidfile = tmp_path / "child.pid"
        lines = []
        for i in range(5):  # a new build per job, as tuning sends
            art = self_timed(str(tmp_path / f"p{i}"), t=0.001 + i * 1e-4)
            lines.append({"job_id": f"job-{i}", "artifact": art.to_dict(), "timeout_s": 20})
        hang = plain(str(tmp_path / "h"), "hang.sh", f"sleep 300 & echo $! > {pidfile}; wait")
        lines.append({"job_id": "hang", "artifact": hang.to_dict(), "timeout_s": 1})
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text("".join(json.dumps(x) + "\n" for x in lines))
        out = tmp_path / "out.jsonl"
        r = pattune("measure", "-i", inv, "-t", "loop", "--jobs", str(jobs), "--out", str(out),
                    "--db", f"sqlite:///{tmp_path}/p.db", "--min-total-s", "0")
        assert r.returncode == 0, r.stderr
        results = {x["job_id"]: x for x in map(json.loads, out.read_text().splitlines())}
        assert [results[f"job-{i}"]["status"] for i in range(5)] == ["ok"] * 5
        assert results["hang"]["status"] == "timeout", results["hang"]
        for word in ("paramiko", "Secsh", "ChannelException", "Traceback", "ERROR"):
            assert word not in r.stderr + r.stdout, r.stderr
        child = int(pidfile.read_text())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.05)
        assert not _alive(child), "the timed-out program's child survived on a MaxSessions 1 server"
    finally:
        farm.stop()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _count_commands(dev: SSHDevice, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every remote command the device sends (observed, not replaced)."""
    sent: list[str] = []
    real = dev._run

    def run(line: str, timeout_s: float, **kw: object):  # type: ignore[no-untyped-def]
        sent.append(line)
        return real(line, timeout_s, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(dev, "_run", run)
    return sent


def _fresh(tmp_path, i: int, data) -> Artifact:
    exe = script(str(tmp_path / f"b{i}"), "prog.sh",
                 f"# build {i}\nn=$1; o=0.001; i=1; while [ $i -lt $n ]; do o=\"$o,0.001\"; "
                 'i=$((i+1)); done; echo "{\\"times_s\\": [$o]}"')
    return Artifact(files=(exe, data), argv=("prog.sh", "{repeats}"))


def test_a_job_with_a_new_build_is_one_remote_command(make_farm, tmp_path, monkeypatch):
    farm = make_farm(1)
    dev = ssh_device(farm, farm.servers[0])
    data = script(str(tmp_path), "input.bin", "x" * 100_000)  # shared, uploaded once
    [m] = dev.measure([job("warm", _fresh(tmp_path, 0, data))])
    assert m.status is MeasureStatus.OK, m.error
    sent = _count_commands(dev, monkeypatch)
    for i in range(1, 4):
        sent.clear()
        [m] = dev.measure([job(f"new-{i}", _fresh(tmp_path, i, data))])
        assert m.status is MeasureStatus.OK, m.error
        assert len(sent) == 1, sent  # upload, link and run in one exec
    sent.clear()
    [m] = dev.measure([job("again", _fresh(tmp_path, 3, data))])
    assert m.status is MeasureStatus.OK and len(sent) == 1


def test_a_new_build_costs_about_two_round_trips_over_a_slow_link(make_farm, tmp_path):
    farm = make_farm(1)
    server = farm.servers[0]
    delay = 0.05  # each way: a 100 ms round trip
    proxy = DelayProxy(("127.0.0.1", server.port), delay_s=delay)
    farm.trust(server, port=proxy.port)
    try:
        dev = ssh_device(farm, server, port=proxy.port)
        data = script(str(tmp_path), "input.bin", "x" * 100_000)
        dev.measure([job("warm", _fresh(tmp_path, 0, data))])
        walls = []
        for i in range(1, 6):
            t0 = time.perf_counter()
            [m] = dev.measure([job(f"new-{i}", _fresh(tmp_path, i, data))])
            walls.append(time.perf_counter() - t0)
            assert m.status is MeasureStatus.OK, m.error
        # OpenSSH opens a session's stdin window only after its exec: 2 round trips. The
        # bound leaves room for a busy 2-core machine; before, a job took about 12.
        assert statistics.median(walls) < 5 * 2 * delay, walls
        dev.close()
    finally:
        proxy.close()
