"""`pattune devices ...` and `pattune measure` through the real CLI (subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import self_timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pattune(*args: str, cwd: str = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "pattune", *args], capture_output=True,
                          text=True, timeout=180, cwd=cwd, env=env, check=False)


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def write_inventory(path, farm, *, known_hosts: str | None = None, device_type: str = "loop"):
    parts = [(f'[defaults]\nknown_hosts = "{known_hosts or farm.known_hosts}"\n'
              f'identity_file = "{farm.client_key}"\nuser = "{farm.user}"\n'
              f'ssh_config = "{os.devnull}"\n')]
    for s in farm.servers:
        parts.append(f'[[device]]\nname = "{s.name}"\nhost = "127.0.0.1"\nport = {s.port}\n'
                     f'type = "{device_type}"\narch = "x86_64"\nwork_dir = "{s.work_dir}"\n'
                     'threads = 1\ncpu_affinity = [0]\n')
    path.write_text("\n".join(parts))
    return str(path)


def write_jobs(path, tmp_path, n: int) -> str:
    art = self_timed(str(tmp_path / "prog"))
    with open(path, "w") as fh:
        fh.writelines(json.dumps({"job_id": f"job-{i}", "artifact": art.to_dict(),
                                 "timeout_s": 20}) + "\n" for i in range(n))
    return str(path)


def test_missing_inventory(tmp_path):
    r = pattune("devices", "list", "--inventory", str(tmp_path / "nope.toml"))
    assert one_line_error(r) == (
        f"pattune: error: inventory {tmp_path}/nope.toml does not exist; pass --inventory "
        "with a TOML file like examples/devices.toml")


def test_corrupt_inventory(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[device]\nname = 'x'\n")
    assert one_line_error(pattune("devices", "list", "-i", str(bad))).startswith(
        f"pattune: error: inventory {bad} is not valid TOML: ")


def test_empty_inventory(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    assert one_line_error(pattune("devices", "check", "-i", str(empty))) == (
        f"pattune: error: inventory {empty} lists no devices; add [[device]] tables "
        "(see examples/devices.toml)")


def test_inventory_with_a_bad_value(tmp_path):
    inv = tmp_path / "inv.toml"
    inv.write_text('[[device]]\nname = "p"\nhost = "h"\ntype = "t"\nwork_dir = "/d/w"\n'
                   'arch = "mips"\n')
    assert one_line_error(pattune("devices", "list", "-i", str(inv))) == (
        f"pattune: error: {inv}: device #1 ('p'): arch must be one of x86_64, aarch64, armv7l, "
        "riscv64; got 'mips'")


def test_unknown_device_type(tmp_path, make_farm):
    farm = make_farm(1)
    inv = write_inventory(tmp_path / "inv.toml", farm)
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 1)
    r = pattune("measure", "-i", inv, "--device-type", "pixel", "--jobs", jobs,
                "--out", str(tmp_path / "out.jsonl"))
    assert one_line_error(r) == (
        f"pattune: error: no device of type 'pixel' in {inv}; known types: local, loop")


def test_bad_jobs_files(tmp_path):
    missing = tmp_path / "none.jsonl"
    r = pattune("measure", "--jobs", str(missing), "--out", str(tmp_path / "o.jsonl"))
    assert one_line_error(r) == (
        f"pattune: error: jobs file {missing} does not exist; pass --jobs with a JSON Lines "
        "file of MeasureJob objects (see docs/device_farm.md)")
    with open(write_jobs(tmp_path / "j.jsonl", tmp_path, 1)) as fh:
        good = json.loads(fh.readline())
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n{not json\n")
    assert one_line_error(pattune("measure", "--jobs", str(bad), "--out", "o.jsonl")).startswith(
        f"pattune: error: jobs file {bad} line 2: Expecting property name")
    good["timeout_s"] = -1
    bad.write_text(json.dumps(good) + "\n")
    assert one_line_error(pattune("measure", "--jobs", str(bad), "--out", "o.jsonl")) == (
        f"pattune: error: jobs file {bad} line 1: timeout_s must be > 0 seconds; got -1")
    bad.write_text("\n")
    assert one_line_error(pattune("measure", "--jobs", str(bad), "--out", "o.jsonl")) == (
        f"pattune: error: jobs file {bad} has no jobs; write one MeasureJob JSON per line")


def test_measure_on_ssh_devices_then_resume(tmp_path, make_farm):
    farm = make_farm(2)
    inv = write_inventory(tmp_path / "inv.toml", farm)
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 6)
    out = tmp_path / "results.jsonl"
    args = ("measure", "-i", inv, "-t", "loop", "--jobs", jobs, "--out", str(out),
            "--db", f"sqlite:///{tmp_path}/p.db", "--min-repeats", "3", "--min-total-s", "0")
    r = pattune(*args)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["job_id"] for x in lines) == [f"job-{i}" for i in range(6)]
    assert all(x["status"] == "ok" and x["median_s"] == 0.001 for x in lines)
    assert {x["device"] for x in lines} <= {"dev0", "dev1"}
    assert all(x["command"][:3] == ["taskset", "-c", "0"] for x in lines)
    assert "6 jobs, 0 already in" in r.stderr and "ok" in r.stdout
    # A line cut short by a crash is ignored and its job measured again; the rest are skipped.
    out.write_text("\n".join(out.read_text().splitlines()[:5]) + '\n{"job_id": "job-')
    r2 = pattune(*args)
    assert r2.returncode == 0, r2.stderr
    assert "ignored 1 unreadable line(s)" in r2.stderr
    assert "6 jobs, 5 already in" in r2.stderr and "measured now: 1 in" in r2.stdout
    ids = [json.loads(x)["job_id"] for x in out.read_text().splitlines()
           if x.startswith("{") and x.endswith("}")]
    assert sorted(ids) == [f"job-{i}" for i in range(6)]


def test_measure_locally_without_inventory(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 2)
    out = tmp_path / "r.jsonl"
    r = pattune("measure", "--jobs", jobs, "--out", str(out), "--db",
                f"sqlite:///{tmp_path}/p.db", "--min-total-s", "0")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["device"] for x in out.read_text().splitlines()] == ["local", "local"]


def test_trust_records_an_unknown_key_and_refuses_a_changed_one(tmp_path, make_farm):
    farm = make_farm(1)
    kh = tmp_path / "kh"
    inv = write_inventory(tmp_path / "inv.toml", farm, known_hosts=str(kh))
    r = pattune("devices", "check", "dev0", "-i", inv, "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert (doc["schema"], doc["schema_version"]) == ("pattune.devices_check", 1)
    [report] = doc["devices"]
    assert not report["reachable"] and "`pattune devices trust dev0`" in report["error"]
    r = pattune("devices", "trust", "dev0", "-i", inv)
    assert r.returncode == 0, r.stderr
    port = farm.servers[0].port
    assert r.stdout.startswith(f"[127.0.0.1]:{port} ssh-ed25519 SHA256:")
    assert r.stdout.strip().endswith(f": added in {kh}")
    r = pattune("devices", "check", "dev0", "-i", inv, "--json")
    assert r.returncode == 0, r.stdout
    [report] = json.loads(r.stdout)["devices"]
    assert report["reachable"] and report["arch"] == os.uname().machine
    # The device is reinstalled: a new key is refused until explicitly replaced.
    s = farm.servers[0]
    s.kill()
    s.regenerate_host_key()
    s.start()
    err = one_line_error(pattune("devices", "trust", "dev0", "-i", inv))
    assert err.startswith(f"pattune: error: {kh} has another key for [127.0.0.1]:{port} "
                          "(ssh-ed25519 SHA256:")
    assert err.endswith("Check it on the device and pass --replace to trust it instead")
    r = pattune("devices", "trust", "dev0", "-i", inv, "--replace")
    assert r.returncode == 0 and r.stdout.strip().endswith(f": replaced in {kh}")


def test_devices_list_shows_the_inventory(tmp_path, make_farm):
    farm = make_farm(1)
    inv = write_inventory(tmp_path / "inv.toml", farm)
    r = pattune("devices", "list", "-i", inv)
    assert r.returncode == 0
    assert "local" in r.stdout and "dev0" in r.stdout and "loop" in r.stdout


def test_jobs_no_device_could_run_are_retried_by_a_rerun(tmp_path, make_farm):
    farm = make_farm(1)
    inv = write_inventory(tmp_path / "inv.toml", farm)
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 2)
    out = tmp_path / "results.jsonl"
    args = ("measure", "-i", inv, "-t", "loop", "--jobs", jobs, "--out", str(out),
            "--db", f"sqlite:///{tmp_path}/p.db", "--min-total-s", "0")
    farm.servers[0].kill()
    r = pattune(*args)
    assert r.returncode == 0, r.stderr
    first = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in first] == ["device_fault", "device_fault"]
    assert first[0]["error"] == (
        "farm: no healthy device of type loop could run it; devices left out: ssh device dev0: "
        f"cannot connect to 127.0.0.1:{farm.servers[0].port}: Connection refused")
    assert "device_fault" in r.stdout
    farm.servers[0].start()
    r = pattune(*args)
    assert r.returncode == 0, r.stderr
    assert "2 jobs, 0 already in" in r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["status"] for x in lines] == ["device_fault", "device_fault", "ok", "ok"]


def test_check_lifts_the_quarantine_of_a_device_that_answers_again(tmp_path, make_farm):
    from device_farm import LeaseStore

    farm = make_farm(1)
    inv = write_inventory(tmp_path / "inv.toml", farm)
    db = f"sqlite:///{tmp_path}/p.db"
    LeaseStore(db).record_failure("dev0", "ssh device dev0: boom", threshold=1, quarantine_s=600)
    r = pattune("devices", "list", "-i", inv, "--db", db)
    assert r.returncode == 0 and "ssh device dev0: boom" in r.stdout
    r = pattune("devices", "check", "dev0", "-i", inv, "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    assert "dev0: answers again; quarantine lifted" in r.stderr
    assert LeaseStore(db).quarantine("dev0") is None


def test_unusable_lease_database(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 1)
    out = str(tmp_path / "o.jsonl")
    err = one_line_error(pattune("measure", "--jobs", jobs, "--out", out, "--db", "nonsense"))
    assert err == ("pattune: error: the database URL given does not parse as a URL; use e.g. "
                   "sqlite:///pattune.db or postgresql+psycopg://user@host/dbname")
    err = one_line_error(pattune("measure", "--jobs", jobs, "--out", out, "--db",
                                 f"sqlite:///{tmp_path}/no/such/dir/p.db"))
    assert err == (f"pattune: error: cannot open the lease database "
                   f"sqlite:///{tmp_path}/no/such/dir/p.db: unable to open database file")
