"""The farm against real sshd: spreading jobs, devices dying, quarantine, no job twice."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest

from device_farm import Farm, FarmConfig, LeaseStore, Measurement, MeasureStatus, ProtocolConfig

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import job, plain, self_timed, ssh_device

ONCE = ProtocolConfig(warmup=0, min_repeats=1, min_total_s=0.0, max_cv=10.0, remeasure=0)
CFG = FarmConfig(max_attempts=3, quarantine_after=3, quarantine_s=600, retry_backoff_s=0.05,
                 probe_timeout_s=5)


def _sleeper(tmp_path, marker: str, seconds: float):
    body = (f'echo "$DEV" >> {marker}; sleep {seconds}; '
            f'echo \'{{"times_s": [{seconds}], "checksum": 1.0}}\'')
    return plain(str(tmp_path), "nap.sh", body)


def _run(devices, jobs, tmp_path, **kw) -> tuple[list[Measurement], list[Measurement], list[str]]:
    seen: list[Measurement] = []
    events: list[str] = []
    farm = Farm(devices, leases=LeaseStore(f"sqlite:///{tmp_path}/farm.db"), config=CFG,
                on_result=seen.append, on_event=events.append, **kw)
    return farm.run(jobs), seen, events


def test_jobs_spread_over_every_device(make_farm, tmp_path):
    farm = make_farm(3)
    devices = [ssh_device(farm, s, protocol=ONCE) for s in farm.servers]
    art = _sleeper(tmp_path, str(tmp_path / "ran"), 0.2)
    jobs = [job(f"j{i:02d}", art) for i in range(9)]
    out, seen, _ = _run(devices, jobs, tmp_path)
    assert [m.job_id for m in out] == [j.job_id for j in jobs]
    assert all(m.status is MeasureStatus.OK for m in out), [m.error for m in out]
    assert sorted(m.job_id for m in seen) == [j.job_id for j in jobs]  # each reported once
    assert set(Counter(m.device for m in out)) == {"dev0", "dev1", "dev2"}


def test_device_unreachable_at_start_is_skipped(make_farm, tmp_path):
    farm = make_farm(2)
    farm.servers[1].kill()
    devices = [ssh_device(farm, s) for s in farm.servers]
    jobs = [job(f"j{i}", self_timed(str(tmp_path))) for i in range(4)]
    out, _, events = _run(devices, jobs, tmp_path)
    assert all(m.status is MeasureStatus.OK and m.device == "dev0" for m in out)
    assert any(e.startswith("ssh device dev1: cannot connect to 127.0.0.1:") and
               e.endswith("Connection refused; not used") for e in events), events


def test_device_dropped_mid_job_reruns_the_job_elsewhere_once(make_farm, tmp_path):
    farm = make_farm(2)
    devices = [ssh_device(farm, s, protocol=ONCE) for s in farm.servers]
    marker = tmp_path / "started"
    # Long enough that the killer (polling every 10 ms) hits dev0 mid-job even when loaded.
    art = _sleeper(tmp_path, str(marker), 1.2)
    jobs = [job(f"j{i}", art) for i in range(6)]

    def kill_dev0_when_busy() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if marker.exists() and "dev0" in marker.read_text():
                farm.servers[0].kill()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_dev0_when_busy)
    killer.start()
    out, seen, events = _run(devices, jobs, tmp_path)
    killer.join()
    assert all(m.status is MeasureStatus.OK for m in out), [m.error for m in out]
    assert len(seen) == 6 and len({m.job_id for m in seen}) == 6
    starts = marker.read_text().split()
    # The interrupted job started once on dev0 and again on dev1; nothing else repeated.
    assert len(starts) == 7 and Counter(m.device for m in out)["dev1"] >= 4
    assert any("quarantined after 3 consecutive faults" in e for e in events), events


def test_device_that_keeps_failing_is_quarantined_and_jobs_still_finish(make_farm, tmp_path):
    import subprocess

    farm = make_farm(2)
    bad = farm.servers[0]
    os.makedirs(bad.work_dir, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", bad.work_dir], check=True)
    try:
        big = tmp_path / "blob.bin"
        big.write_bytes(os.urandom(256 * 1024))
        from device_farm import Artifact, ArtifactFile

        # dev1 needs 0.3 s a job, so dev0 (upload fails in ms) meets 3 jobs before the end.
        nap = _sleeper(tmp_path, str(tmp_path / "ran"), 0.3)
        jobs = [job(f"j{i}", Artifact(files=(*nap.files, ArtifactFile.from_path(big)),
                                      argv=(*nap.argv, str(i)))) for i in range(6)]
        devices = [ssh_device(farm, s, protocol=ONCE) for s in farm.servers]
        store = LeaseStore(f"sqlite:///{tmp_path}/farm.db")
        out, _, _ = _run(devices, jobs, tmp_path)
        assert all(m.status is MeasureStatus.OK and m.device == "dev1" for m in out)
        reason = store.quarantine("dev0")
        assert reason is not None and reason.startswith("ssh device dev0:")
        # A new batch does not even try the quarantined device.
        out2, _, events2 = _run(devices, jobs[:1], tmp_path)
        assert out2[0].device == "dev1"
        assert any(e.startswith("ssh device dev0: quarantined (") for e in events2), events2
    finally:
        subprocess.run(["umount", "-l", bad.work_dir], check=False)


def test_jobs_fail_with_a_reason_when_no_device_is_left(make_farm, tmp_path):
    farm = make_farm(1)
    farm.servers[0].kill()
    devices = [ssh_device(farm, farm.servers[0])]
    out, seen, _ = _run(devices, [job("a", self_timed(str(tmp_path)))], tmp_path)
    assert out[0].status is MeasureStatus.DEVICE_FAULT
    assert out[0].error == (
        "farm: no healthy device of type loop could run it; devices left out: ssh device dev0: "
        f"cannot connect to 127.0.0.1:{farm.servers[0].port}: Connection refused")
    assert seen == out


def test_program_failures_are_final_and_not_retried(make_farm, tmp_path):
    farm = make_farm(2)
    devices = [ssh_device(farm, s) for s in farm.servers]
    marker = tmp_path / "ran"
    art = plain(str(tmp_path), "boom.sh", f'echo "$DEV" >> {marker}; exit 2')
    out, _, _ = _run(devices, [job("boom", art)], tmp_path)
    assert out[0].status is MeasureStatus.CRASH
    assert len(marker.read_text().split()) == 1  # warmup ran once, failed, never retried


def test_duplicate_job_ids_are_refused(make_farm, tmp_path):
    farm = make_farm(1)
    art = self_timed(str(tmp_path))
    f = Farm([ssh_device(farm, farm.servers[0])],
             leases=LeaseStore(f"sqlite:///{tmp_path}/x.db"))
    with pytest.raises(ValueError, match="^job ids must be unique in a batch; repeated: a$"):
        f.run([job("a", art), job("a", art)])


def test_a_lease_lost_mid_job_means_measuring_again(make_farm, tmp_path):
    from sqlalchemy import delete, update

    from device_farm.lease import farm_leases

    farm = make_farm(1)
    marker = tmp_path / "started"
    devices = [ssh_device(farm, farm.servers[0], protocol=ONCE)]
    store = LeaseStore(f"sqlite:///{tmp_path}/farm.db", ttl_s=0.3)

    def steal_once() -> None:
        while not marker.exists():
            time.sleep(0.01)
        with store.engine.begin() as conn:  # another holder takes over the row
            conn.execute(update(farm_leases).values(token="thief", holder="thief"))
        time.sleep(0.5)
        with store.engine.begin() as conn:
            conn.execute(delete(farm_leases).where(farm_leases.c.holder == "thief"))

    thief = threading.Thread(target=steal_once)
    thief.start()
    events: list[str] = []
    out = Farm(devices, leases=store, config=CFG, on_event=events.append).run(
        [job("j0", _sleeper(tmp_path, str(marker), 0.4))])
    thief.join()
    assert out[0].status is MeasureStatus.OK
    assert events == ["ssh device dev0: lease lost during j0; measuring it again"]
    assert marker.read_text().split() == ["dev0", "dev0"]
