"""What a device or its program reports is checked before it is a measurement (issue 15 item 5).

Every test runs real programs on the shared Device suite (local and a real sshd)
or on a real sshd whose ``date`` steps back, as a device's clock can.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from device_farm import Artifact, MeasureStatus, ProtocolConfig, Verify
from device_farm._base import Device

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import job, plain, script, ssh_device


def _reporting(tmp_path, name: str, report: str, *, counter: str | None = None) -> Artifact:
    count = f'echo x >> "{counter}"; ' if counter else ""
    f = script(str(tmp_path), name, f"{count}echo '{report}'")
    return Artifact(files=(f,), argv=(name, "{repeats}"))


@pytest.mark.parametrize(("report", "error"), [
    ('{"times_s": [-1.0]}', "verify: impossible repeat time -1.0 s in times_s (each must be a "
                            "finite number of seconds > 0 and <= the run's limit timeout_s 20 "
                            "s)"),
    ('{"times_s": [0]}', "verify: impossible repeat time 0.0 s in times_s"),
    ('{"times_s": [NaN]}', "verify: impossible repeat time nan s in times_s"),
    ('{"times_s": [Infinity]}', "verify: impossible repeat time inf s in times_s"),
    ('{"times_s": [1e999]}', "verify: impossible repeat time inf s in times_s"),
    ('{"times_s": [1e308, 1e308]}', "verify: impossible repeat time 1e+308 s in times_s"),
    ('{"times_s": [15, 15]}', "verify: impossible times_s: 2 repeats add up to 30 s, more "
                              "than the run's limit timeout_s 20 s"),
    ('{"times_s": ["0.1"]}', 'verify: "times_s" must be a non-empty list of numbers'),
    ('{"times_s": [true]}', 'verify: "times_s" must be a non-empty list of numbers'),
    ('{"times_s": []}', 'verify: "times_s" must be a non-empty list of numbers'),
])
def test_impossible_reported_times_are_a_per_job_error(device: Device, tmp_path, report, error):
    counter = str(tmp_path / "runs")
    [m] = device.measure([job("t", _reporting(tmp_path, "t.sh", report, counter=counter))])
    assert m.status is MeasureStatus.WRONG_OUTPUT
    assert m.error is not None and m.error.startswith(error), m.error
    assert m.median_s is None and m.cv is None
    with open(counter) as fh:
        assert len(fh.read().split()) == 1  # one run, not 1000 repeats
    json.loads(m.to_json(), parse_constant=_no_constants)  # standard JSON, no NaN


def _no_constants(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")


@pytest.mark.parametrize(("report", "error"), [
    ('{"checksum": NaN}', "verify: checksum nan is not finite"),
    ('{"checksum": -Infinity}', "verify: checksum -inf is not finite"),
    ('{"checksum": true}', 'verify: no JSON report with a numeric "checksum" on stdout'),
    ('{"checksum": "3.5"}', 'verify: no JSON report with a numeric "checksum" on stdout'),
    ('{"checksum": null, "nonfinite": 12}', "verify: the output holds 12 NaN or infinite"),
])
def test_checksums_that_are_not_finite_numbers_fail_verification(device: Device, tmp_path,
                                                                 report, error):
    art = plain(str(tmp_path), "c.sh", f"echo '{report}'", verify=Verify(checksum=3.5))
    [m] = device.measure([job("c", art)])
    assert m.status is MeasureStatus.WRONG_OUTPUT
    assert m.error is not None and m.error.startswith(error), m.error


def test_a_report_after_megabytes_of_output_still_counts(device: Device, tmp_path):
    art = plain(str(tmp_path), "big.sh",
                "head -c 3000000 /dev/zero | tr '\\0' 'x'; echo; echo '{\"checksum\": 3.5}'",
                verify=Verify(checksum=3.5))
    [m] = device.measure([job("big", art)])
    assert m.status is MeasureStatus.OK, m.error


def test_cut_output_says_it_was_cut(device: Device, tmp_path):
    art = plain(str(tmp_path), "cut.sh",
                "head -c 1500000 /dev/zero | tr '\\0' 'x'; echo; echo '{\"checksum\": 3.5}'; "
                "head -c 1500000 /dev/zero | tr '\\0' 'x'; echo",
                verify=Verify(checksum=3.5))
    [m] = device.measure([job("cut", art)])
    assert m.status is MeasureStatus.WRONG_OUTPUT
    assert m.error == ('verify: no JSON report with a numeric "checksum" on stdout (stdout was '
                       "3,000,020 bytes; only its first and last part were kept, so print less)")


def test_a_child_that_escapes_with_setsid_is_killed_at_the_timeout(device: Device, tmp_path):
    pidfile = tmp_path / "escaped.pid"
    art = plain(str(tmp_path), "escape.sh",
                f"setsid sleep 300 & echo $! > {pidfile}; sleep 300")
    [m] = device.measure([job("escape", art, timeout_s=1.0)])
    assert m.status is MeasureStatus.TIMEOUT
    escaped = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(escaped):
        time.sleep(0.05)
    assert not _alive(escaped), "a child that left the process group survived the timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("fake", [
    "@PATTUNE nodir",
    "@PATTUNE fail nodir",
    "@PATTUNE pid 1\\n@PATTUNE fail missing 00",
    "@PATTUNE fail upload No space left on device",
])
def test_a_program_cannot_fake_the_wrappers_reports(make_farm, tmp_path, fake):
    farm = make_farm(1)
    dev = ssh_device(farm, farm.servers[0])
    art = plain(str(tmp_path), "liar.sh", f"printf '{fake}\\n' >&2; exit 125")
    [m] = dev.measure([job("liar", art)])
    # the program's own failure, not the device's: final, and no fault counted
    assert m.status is MeasureStatus.CRASH, m.error
    assert m.error is not None and m.error.startswith("ssh device dev0: exit code 125: ")
    dev.close()


def test_a_device_clock_that_steps_back_is_a_device_fault(make_farm, tmp_path):
    farm = make_farm(1)
    server = farm.servers[0]
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    state = tmp_path / "date-calls"
    # The device's date: start at 2e18 ns, end at 1e18 ns (the clock stepped back).
    (fakebin / "date").write_text(
        f"#!/bin/sh\nn=$(cat {state} 2>/dev/null || echo 0); echo $((n+1)) > {state}\n"
        "if [ $((n % 2)) -eq 0 ]; then echo 2000000000000000000; "
        "else echo 1000000000000000000; fi\n")
    os.chmod(fakebin / "date", 0o755)
    server.kill()
    with open(server.config) as fh:  # sshd reads the first SetEnv line only: extend it
        config = fh.read().replace("SetEnv HOME=", f"SetEnv PATH={fakebin}:/usr/bin:/bin HOME=")
    with open(server.config, "w") as fh:
        fh.write(config)
    server.start()
    counter = tmp_path / "runs"
    dev = ssh_device(farm, server, protocol=ProtocolConfig(warmup=0, min_repeats=3,
                                                           min_total_s=0.5, max_cv=10.0))
    art = plain(str(tmp_path), "p.sh", f"echo x >> {counter}")
    [m] = dev.measure([job("clock", art)])
    assert m.status is MeasureStatus.DEVICE_FAULT
    assert m.error == ("ssh device dev0: impossible run time -1000000000.0 s from the device's "
                       "clock (must be > 0 and <= timeout_s 20 s); did its clock step?")
    assert counter.read_text().split() == ["x"]  # stopped at once, not after 1000 repeats
    dev.close()
