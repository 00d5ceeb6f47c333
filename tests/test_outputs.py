"""Output files on a filesystem that fails writes: nothing measured is lost unreported (item 1).

The failing filesystems are real: ``/dev/full`` (every write fails with ENOSPC),
a symlink switched to it and back (a disk full for a moment), ``RLIMIT_FSIZE``
in the measuring process (writes past the limit fail half-way, EFBIG), and
``/sys`` (a directory even root cannot create files in). Devices are real sshd
servers and the local device.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pattune
from device_farm import Farm, LeaseStore, MeasureStatus
from pattune_common import OutputError

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import job, self_timed, ssh_device
from tests.test_farm_cli import ROOT, write_inventory, write_jobs
from tests.test_farm_cli import pattune as run_cli


def _one_error_line(r: subprocess.CompletedProcess[str], code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    errors = [x for x in r.stderr.splitlines() if x.startswith("pattune: ")]
    assert len(errors) == 1, r.stderr
    return errors[0]


def test_a_full_disk_under_out_loses_no_job_and_exits_non_zero(make_farm, tmp_path):
    """Two devices, every append failing: no worker hangs, each job runs once, exit 1."""
    farm = make_farm(2)
    inv = write_inventory(tmp_path / "inv.toml", farm)
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 4)
    out = tmp_path / "out.jsonl"
    out.symlink_to("/dev/full")
    t0 = time.monotonic()
    r = run_cli("measure", "-i", inv, "-t", "loop", "--jobs", jobs, "--out", str(out),
                "--db", f"sqlite:///{tmp_path}/p.db", "--min-total-s", "0")
    assert time.monotonic() - t0 < 120  # before the fix the second worker waited forever
    line = _one_error_line(r, 1)
    assert line == (f"pattune: error: 4 of 4 result(s) could not be written to {out} (No space "
                    "left on device); they are not saved: free space and rerun the same command "
                    "to measure them again")
    assert "measured now: 4" in r.stdout  # the summary still shows what was done


def test_a_disk_full_for_a_moment_loses_nothing(tmp_path):
    """The write that fails is kept and written with the next one."""
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 4)
    real = tmp_path / "results.jsonl"
    out = tmp_path / "out.jsonl"
    real.touch()
    out.symlink_to(real)
    events: list[int] = []

    def flaky_disk(p: pattune.MeasureProgress) -> None:
        if p.last is None:
            return
        events.append(p.done)
        if p.done == 1:  # the next append meets a full disk ...
            out.unlink()
            out.symlink_to("/dev/full")
        elif p.done == 2:  # ... and then space again
            out.unlink()
            out.symlink_to(real)

    result = pattune.measure(jobs=jobs, out=out, db=f"sqlite:///{tmp_path}/p.db",
                             min_total_s=0, progress=flaky_disk)
    assert events == [1, 2, 3, 4]
    lines = [json.loads(x) for x in real.read_text().splitlines()]
    assert sorted(x["job_id"] for x in lines) == [f"job-{i}" for i in range(4)]
    assert result.statuses == {"ok": 4}


_FSIZE_RUN = """
import resource, sys
import pattune
from pattune_common import OutputError
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: EFBIG
try:
    pattune.measure(jobs=sys.argv[1], out=sys.argv[2], db=sys.argv[4], min_total_s=0)
except OutputError as exc:
    print(exc)
    sys.exit(1)
"""


def test_a_write_cut_by_a_file_size_limit_leaves_whole_lines_only(tmp_path, pg_url):
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 3)
    out = tmp_path / "out.jsonl"
    # Fill the results file to just below the limit with earlier results of other jobs,
    # so the next append is cut part-way by the kernel.
    earlier = json.loads(json.dumps({
        "job_id": "old-0", "device": "local", "device_type": "local", "artifact_hash": "0" * 16,
        "command": ["x"], "status": "crash", "times_s": [], "median_s": None, "cv": None,
        "rounds": 0, "error": "local device local: exit code 1: no", "stderr_tail": "",
        "started_at": 0.0, "finished_at": 0.0}))
    text = ""
    while len(text) < 64 * 1024:
        earlier["job_id"] = f"old-{len(text)}"
        text += json.dumps(earlier, sort_keys=True) + "\n"
    out.write_text(text)
    limit = len(text) + 200  # less than one result line
    # The leases live in PostgreSQL: a SQLite file would meet the same limit.
    r = subprocess.run([sys.executable, "-c", _FSIZE_RUN, jobs, str(out), str(limit), pg_url],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert r.returncode == 1, r.stderr
    assert r.stdout.strip() == (f"3 of 3 result(s) could not be written to {out} (File too "
                                "large); they are not saved: free space and rerun the same "
                                "command to measure them again")
    assert out.read_text() == text  # the half-written line was taken back


def test_out_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    counter = tmp_path / "runs"
    jobs = tmp_path / "jobs.jsonl"
    art = self_timed(str(tmp_path / "prog"))
    jobs.write_text(json.dumps({"job_id": "j", "artifact": art.to_dict()}) + "\n")
    (tmp_path / "dir").mkdir()
    cases = {
        str(tmp_path / "missing" / "out.jsonl"): "cannot be written: No such file or directory",
        "/sys/kernel/out.jsonl": "cannot be written: Permission denied",
        str(tmp_path / "dir"): "is a directory; give a file such as",
    }
    for out, words in cases.items():
        r = run_cli("measure", "--jobs", str(jobs), "--out", out,
                    "--db", f"sqlite:///{tmp_path}/p.db")
        assert words in _one_error_line(r, 2), r.stderr
    assert not counter.exists() and not (tmp_path / "p.db").exists()


def test_prune_and_tune_outputs_are_checked_before_the_work(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    t0 = time.monotonic()
    r = run_cli("prune", "--model", "tests.tune.tiny:tiny_bn", "--input-shape", "1,1,12,12",
                "--out", str(a_file))
    assert _one_error_line(r, 2) == (f"pattune: error: --out {a_file} is a file; give a "
                                     "directory (it is created if missing)")
    r = run_cli("tune", "--model", "tests.tune.tiny:tiny_bn", "--input-shape", "1,1,12,12",
                "--storage", f"sqlite:///{tmp_path}/t.db", "--json-out", str(tmp_path))
    assert _one_error_line(r, 2) == (f"pattune: error: --json-out {tmp_path} is a directory;"
                                     f" give a file path such as {tmp_path / 'out.json'}")
    r = run_cli("prune", "--json-out", "/sys/kernel/x.json")
    assert _one_error_line(r, 2).startswith("pattune: error: --json-out /sys/kernel/x.json: cannot "
                                            "write in /sys/kernel: Permission denied")
    assert time.monotonic() - t0 < 60 and not (tmp_path / "t.db").exists()


def test_a_result_handler_that_fails_neither_hangs_nor_loses_the_batch(make_farm, tmp_path):
    """The root of the hang: a worker whose on_result raised never released its job."""
    farm = make_farm(2)
    devices = [ssh_device(farm, s) for s in farm.servers]
    jobs = [job(f"j{i}", self_timed(str(tmp_path / f"a{i}"))) for i in range(6)]
    seen: list[str] = []

    def on_result(m) -> None:  # type: ignore[no-untyped-def]
        seen.append(m.job_id)
        if m.job_id in ("j1", "j4"):
            raise OSError(28, "No space left on device")

    events: list[str] = []
    f = Farm(devices, leases=LeaseStore(f"sqlite:///{tmp_path}/l.db"), on_result=on_result,
             on_event=events.append)
    out = f.run(jobs)
    assert [m.status for m in out] == [MeasureStatus.OK] * 6
    assert sorted(seen) == [f"j{i}" for i in range(6)]
    assert sorted(j for j, _ in f.handover_errors) == ["j1", "j4"]
    assert any("the result of j1 was not taken: OSError" in e for e in events), events
    for d in devices:
        d.close()


def test_write_text_replaces_whole_or_reports(tmp_path):
    from pattune_common.files import write_text

    target = tmp_path / "summary.json"
    target.write_text("old")
    script = ("import resource, sys\nfrom pattune_common.files import write_text\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))\n"
              "write_text(sys.argv[1], 'x' * 100, what='the summary')\n")
    r = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       check=False)
    assert r.returncode != 0 and r.stderr.strip().endswith(
        f"OutputError: could not write the summary {target}: File too large")
    assert target.read_text() == "old"  # never half of the new file
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temp file left
    write_text(target, "new")
    assert target.read_text() == "new"
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY
    assert isinstance(OutputError("x"), Exception) and Path(target).exists()
