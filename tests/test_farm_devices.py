"""The shared Device suite: every implementation (local, ssh) passes the same tests."""

from __future__ import annotations

import os
import time

from device_farm import Artifact, MeasureStatus, ProtocolConfig, Verify
from device_farm._base import Device

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import job, plain, script, self_timed


def test_self_timed_program_reports_times_and_passes_verification(device: Device, tmp_path):
    [m] = device.measure([job("st", self_timed(str(tmp_path)))])
    assert m.status is MeasureStatus.OK, m.error
    assert m.error is None and m.median_s == 0.001
    assert m.times_s == (0.001,) * 3  # min_repeats=3, min_total_s=0
    assert m.device == device.name and m.job_id == "st"
    assert m.command[-1] == "3" and m.command[0].endswith("/selftimed.sh")
    assert m.started_at <= m.finished_at


def test_plain_program_is_timed_as_whole_runs_on_the_device(device: Device, tmp_path):
    art = plain(str(tmp_path), "nap.sh", "sleep 0.2")
    [m] = device.measure([job("wall", art)])
    assert m.status is MeasureStatus.OK, m.error
    assert len(m.times_s) == 3
    # device-side wall time: the sleep plus process start, without the network round trip
    assert all(0.19 < t < 0.5 for t in m.times_s), m.times_s


def test_batch_keeps_order_and_length(device: Device, tmp_path):
    jobs = [job(f"j{i}", self_timed(str(tmp_path / f"a{i}"))) for i in range(4)]
    jobs.insert(2, job("bad", plain(str(tmp_path / "b"), "bad.sh", "exit 3")))
    out = device.measure(jobs)
    assert [m.job_id for m in out] == ["j0", "j1", "bad", "j2", "j3"]
    assert [m.status for m in out].count(MeasureStatus.OK) == 4


def test_wrong_checksum_is_recorded_not_timed(device: Device, tmp_path):
    art = plain(str(tmp_path), "wrong.sh", 'echo \'{"checksum": 4.0}\'', verify=Verify(checksum=3.0))
    [m] = device.measure([job("wrong", art)])
    assert m.status is MeasureStatus.WRONG_OUTPUT
    assert m.error == "verify: checksum 4 differs from expected 3 by 1 > tolerance 0.0003"
    assert m.median_s is None


def test_crash_records_exit_code_and_stderr(device: Device, tmp_path):
    art = plain(str(tmp_path), "crash.sh", "echo 'segfault in layer 3' >&2; exit 139")
    [m] = device.measure([job("crash", art)])
    assert m.status is MeasureStatus.CRASH
    assert m.error == f"{device.label}: exit code 139: segfault in layer 3"
    assert m.stderr_tail.strip() == "segfault in layer 3"


def test_hung_program_is_killed_with_its_children_and_device_stays_usable(device: Device, tmp_path):
    pidfile = tmp_path / "child.pid"
    art = plain(str(tmp_path), "hang.sh", f"sleep 300 & echo $! > {pidfile}; wait")
    t0 = time.monotonic()
    [m] = device.measure([job("hang", art, timeout_s=1.0)])
    assert time.monotonic() - t0 < 8
    assert m.status is MeasureStatus.TIMEOUT
    assert m.error == f"{device.label}: timeout after 1 s"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the hung program's child survived the kill"
    [ok] = device.measure([job("after", self_timed(str(tmp_path / "ok")))])
    assert ok.status is MeasureStatus.OK


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"  # a zombie is dead, awaiting its reaper
    except FileNotFoundError:
        return False


def test_megabytes_on_stderr_neither_deadlock_nor_bloat(device: Device, tmp_path):
    body = ("head -c 8000000 /dev/zero | tr '\\0' x >&2; echo END >&2; "
            'echo \'{"checksum": 3.5}\'')
    art = plain(str(tmp_path), "loud.sh", body, verify=Verify(checksum=3.5))
    [m] = device.measure([job("loud", art, timeout_s=30)])
    assert m.status is MeasureStatus.OK, m.error
    r = device.execute(["sh", "-c", body], timeout_s=30)
    assert r.exit_code == 0
    assert len(r.stderr) == device.max_output  # the tail is kept, capped
    assert r.stderr.endswith("xxxxEND\n")


def test_arguments_reach_the_program_verbatim_without_shell(device: Device, tmp_path):
    marker = tmp_path / "pwned"
    nasty = ["a b", "$(touch " + str(marker) + ")", "; touch " + str(marker), "'\"", "*", "\n"]
    r = device.execute(["printf", "%s|", *nasty], timeout_s=10)
    assert r.exit_code == 0
    assert r.stdout == "|".join(nasty) + "|"
    assert not marker.exists()
    r = device.execute(["sh", "-c", 'printf %s "$X"'], timeout_s=10, env={"X": "$(id) `id`"})
    assert r.stdout == "$(id) `id`"


def test_files_cross_once_content_addressed(device: Device, tmp_path):
    art = self_timed(str(tmp_path))
    d1 = device.stage(art)
    # The files are there at the latest when the first command runs in the directory.
    assert device.execute(["ls"], timeout_s=10, cwd=d1).stdout == "selftimed.sh\n"
    stored = os.path.join(device.work_dir, "cas", art.files[0].sha256)  # type: ignore[attr-defined]
    first = os.stat(stored).st_mtime_ns
    # A different artifact (other argv) sharing the file reuses the stored copy.
    other = Artifact(files=art.files, argv=("selftimed.sh", "{repeats}", "x"), verify=art.verify)
    d2 = device.stage(other)
    assert device.execute(["ls"], timeout_s=10, cwd=d2).stdout == "selftimed.sh\n"
    assert d1 != d2
    assert os.stat(stored).st_mtime_ns == first
    assert os.path.realpath(os.path.join(d2, "selftimed.sh")) == os.path.realpath(stored)


def test_noisy_program_is_remeasured_then_recorded_noisy(device: Device, tmp_path):
    device.protocol = ProtocolConfig(warmup=0, min_repeats=3, min_total_s=0.0, max_cv=0.05,
                                     remeasure=2)
    f = script(str(tmp_path), "noisy.sh", 'echo \'{"times_s": [0.001, 0.002, 0.004]}\'')
    art = Artifact(files=(f,), argv=("noisy.sh", "{repeats}"))
    [m] = device.measure([job("noisy", art)])
    assert m.status is MeasureStatus.NOISY
    assert m.rounds == 3 and m.median_s == 0.002 and m.error is None
    assert m.cv is not None and m.cv > 0.05


def test_self_timed_program_without_times_is_wrong_output(device: Device, tmp_path):
    f = script(str(tmp_path), "quiet.sh", "true")
    [m] = device.measure([job("quiet", Artifact(files=(f,), argv=("quiet.sh", "{repeats}")))])
    assert m.status is MeasureStatus.WRONG_OUTPUT
    assert m.error == 'verify: a program with {repeats} in its argv must print "times_s" on stdout'


def test_check_reports_arch_cores_and_rtt(device: Device):
    r = device.check(rtt_samples=2)
    assert r.reachable and r.error is None
    assert r.arch == os.uname().machine
    assert r.cores == os.cpu_count()
    assert r.rtt_ms is not None and r.rtt_ms > 0
    assert r.compiler.startswith(("cc ", "gcc ")), r.compiler  # Debian's gcc is installed


def test_thermal_wait_holds_the_job_until_the_zone_cools(device: Device, tmp_path):
    zone = tmp_path / "zone0"
    zone.mkdir()
    (zone / "temp").write_text("91000\n")
    device.protocol = ProtocolConfig(warmup=0, min_repeats=1, min_total_s=0.0, max_cv=10.0,
                                     thermal_limit_c=60.0, thermal_poll_s=0.05,
                                     thermal_glob=str(tmp_path / "zone*" / "temp"))
    cooled_at: list[float] = []

    def cool() -> None:
        time.sleep(0.8)
        (zone / "temp").write_text("45000\n")
        cooled_at.append(time.time())

    import threading

    t = threading.Thread(target=cool)
    t.start()
    [m] = device.measure([job("hot", self_timed(str(tmp_path / "p")))])
    t.join()
    assert m.status is MeasureStatus.OK, m.error
    ran_at = float(m.finished_at)
    assert cooled_at and ran_at >= cooled_at[0]


def test_runs_are_pinned_to_the_device_cpu_affinity(device: Device, tmp_path):
    device.cpu_affinity = (0,)
    art = plain(str(tmp_path), "pinned.sh",
                'grep -Eq "^Cpus_allowed_list:[[:space:]]+0$" /proc/$$/status || exit 7')
    [m] = device.measure([job("pin", art)])
    assert m.status is MeasureStatus.OK, m.error
    assert m.command[:3] == ("taskset", "-c", "0")
    device.cpu_affinity = ()
    [m2] = device.measure([job("free", art)])
    # unpinned, the list names every CPU this process may use
    assert (m2.status is MeasureStatus.CRASH) == (len(os.sched_getaffinity(0)) > 1)


def test_a_changed_or_missing_local_file_is_the_artifacts_error(device: Device, tmp_path):
    art = self_timed(str(tmp_path))
    path = art.files[0].local_path
    with open(path, "a") as fh:
        fh.write("# edited after hashing\n")
    [m] = device.measure([job("edited", art)])
    assert m.status is MeasureStatus.ERROR  # final: another device would not help
    assert m.error is not None and m.error.startswith(f"{device.label}: artifact: {path} has sha256 ")
    assert m.error.endswith("...; rebuild the artifact")
    os.unlink(path)
    [m] = device.measure([job("gone", art)])
    assert m.error == f"{device.label}: artifact: {path} does not exist; rebuild the artifact"


def test_closed_output_then_long_exit_neither_spins_nor_misses_the_timeout(device: Device):
    t0 = time.process_time()
    r = device.execute(["sh", "-c", "exec >&- 2>&-; sleep 1; exit 4"], timeout_s=10)
    assert r.exit_code == 4
    assert time.process_time() - t0 < 0.5  # waited, did not busy-loop for the second
    r = device.execute(["sh", "-c", "exec >&- 2>&-; sleep 30"], timeout_s=0.5)
    assert r.timed_out and r.exit_code is None


def test_cooldown_separates_jobs_even_across_calls(device: Device, tmp_path):
    device.protocol = ProtocolConfig(warmup=0, min_repeats=1, min_total_s=0.0, max_cv=10.0,
                                     cooldown_s=0.6)
    art = self_timed(str(tmp_path))
    a, b = device.measure([job("a", art), job("b", art)])
    [c] = device.measure([job("c", art)])
    assert b.started_at - a.finished_at >= 0.55
    assert c.started_at - b.finished_at >= 0.55


def test_files_cleaned_behind_the_devices_back_are_staged_again(device: Device, tmp_path):
    import shutil

    art = self_timed(str(tmp_path))
    [m] = device.measure([job("first", art)])
    assert m.status is MeasureStatus.OK, m.error
    for sub in ("a", "cas"):  # what `pattune devices clean` from another process does
        shutil.rmtree(os.path.join(device.work_dir, sub))  # type: ignore[attr-defined]
    [m] = device.measure([job("second", art)])
    assert m.status is MeasureStatus.OK, m.error
    assert os.path.exists(os.path.join(device.work_dir, "cas", art.files[0].sha256))  # type: ignore[attr-defined]
