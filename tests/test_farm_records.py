"""Records, verification and the inventory parser."""

from __future__ import annotations

import os

import pytest

from device_farm import (
    Artifact,
    ArtifactFile,
    MeasureJob,
    Measurement,
    MeasureStatus,
    ProtocolConfig,
    Verify,
    load_inventory,
    parse_report,
    verify_report,
)
from pattune_common import UserInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHA = "a" * 64


def _art(**kw) -> Artifact:
    f = ArtifactFile(name="prog", local_path="/x/prog", sha256=SHA, executable=True)
    return Artifact(files=(f,), argv=kw.pop("argv", ("prog", "{warmup}", "{repeats}")), **kw)


def test_job_and_measurement_round_trip_through_json():
    job = MeasureJob(job_id="conv3-cfg17", artifact=_art(verify=Verify(checksum=1.5)),
                     timeout_s=3)
    assert MeasureJob.from_json(job.to_json()) == job
    m = Measurement(job_id="j", device="d", device_type="t", artifact_hash="h", command=("a",),
                    status=MeasureStatus.NOISY, times_s=(0.1, 0.3), median_s=0.2, cv=0.7,
                    rounds=3)
    assert Measurement.from_json(m.to_json()) == m
    assert m.to_dict()["status"] == "noisy"


def test_value_or_error_never_both():
    with pytest.raises(ValueError, match="^a ok measurement needs median_s and no error$"):
        Measurement(job_id="j", device="d", device_type="t", artifact_hash="h", command=(),
                    status=MeasureStatus.OK, median_s=1.0, error="x")
    with pytest.raises(ValueError, match="^a crash measurement needs an error and no median_s$"):
        Measurement(job_id="j", device="d", device_type="t", artifact_hash="h", command=(),
                    status=MeasureStatus.CRASH)


def test_status_methods():
    assert [s.value for s in MeasureStatus if not s.is_final()] == ["device_fault"]
    assert [s.value for s in MeasureStatus if s.has_value()] == ["ok", "noisy"]


def test_artifact_rules():
    with pytest.raises(ValueError, match="^argv placeholders must be one of"):
        _art(argv=("prog", "{threads}"))
    with pytest.raises(ValueError, match="^artifact file name must be"):
        ArtifactFile(name="../etc/passwd", local_path="/x", sha256=SHA)
    with pytest.raises(ValueError, match="^sha256 must be 64 lowercase hex digits"):
        ArtifactFile(name="p", local_path="/x", sha256="abc")
    with pytest.raises(ValueError, match="^job_id must be"):
        MeasureJob(job_id="a b", artifact=_art())
    a = _art()
    assert a.self_timed
    assert a.render_argv(directory="/w/a/h", repeats=7, warmup=2) == ["/w/a/h/prog", "2", "7"]
    # the hash ignores local paths: the same build elsewhere is the same artifact
    moved = Artifact(files=(ArtifactFile(name="prog", local_path="/y/prog", sha256=SHA,
                                         executable=True),), argv=a.argv)
    assert moved.content_hash() == a.content_hash()
    assert _art(argv=("prog", "{repeats}")).content_hash() != a.content_hash()


def test_report_parsing_and_verification():
    out = 'log line\n{"times_s": [0.1], "checksum": 2.0}\nnot json {\n'
    assert parse_report(out) == {"times_s": [0.1], "checksum": 2.0}
    assert parse_report("nothing here") is None
    v = Verify(checksum=2.0, rtol=0.01)
    assert verify_report({"checksum": 2.019}, v) is None
    assert verify_report({"checksum": 2.03}, v) == (
        "verify: checksum 2.03 differs from expected 2 by 0.03 > tolerance 0.02")
    assert verify_report(None, v) == 'verify: no JSON report with a numeric "checksum" on stdout'
    assert verify_report({"checksum": float("nan")}, v) is not None
    assert verify_report(None, Verify()) is None


def test_protocol_config_rules():
    with pytest.raises(ValueError, match="^repeats must satisfy 1 <= min_repeats <= max_repeats"):
        ProtocolConfig(min_repeats=5, max_repeats=2)


def test_example_inventory_loads():
    inv = load_inventory(os.path.join(ROOT, "examples", "devices.toml"))
    assert inv.names() == ["local", "pixel-3-a", "pixel-3-b", "rpi4"]
    assert inv.types() == ["local", "pixel3-big", "rpi4"]
    a = inv.spec("pixel-3-a")
    assert (a.port, a.proxy_jump, a.cpu_affinity, a.build) == (8022, "lab@hub.lab:22",
                                                               (4, 5, 6, 7), "host")
    assert a.known_hosts == os.path.expanduser("~/.ssh/known_hosts")
    pixels = inv.of_type("pixel3-big")
    assert [d.name for d in pixels] == ["pixel-3-a", "pixel-3-b"]
    assert (pixels[0].arch, pixels[0].build, pixels[0].compiler, pixels[0].threads) == (
        "aarch64", "host", "aarch64-linux-gnu-gcc", 4)
    assert inv.make("rpi4").build == "device"
    assert inv.of_type("local")[0].name == "local"


@pytest.mark.parametrize(("body", "message"), [
    ('[[device]]\nname = "a"\nhost = "h"\ntype = "t"\n',
     "device #1 ('a'): missing required key 'work_dir'"),
    ('[[device]]\nname = "a"\nhost = "h"\ntype = "t"\nwork_dir = "/w/x"\ncolour = 1\n',
     "device #1 ('a'): unknown keys ['colour']; allowed: "),
    ('[[device]]\nname = "a"\nhost = "h"\ntype = "t"\nwork_dir = "/w/x"\nport = "22"\n',
     "device #1 ('a'): port must be an integer; got '22'"),
    ('[[device]]\nname = "a"\nhost = "h"\ntype = "t"\nwork_dir = "/tmp"\n',
     "device #1 ('a'): work_dir must be an absolute path at least two levels deep"),
    ('[[device]]\nname = "a"\nhost = "h"\ntype = "t"\nwork_dir = "/w/x"\n' * 2,
     "device names must be unique; repeated: a"),
    ('[[device]]\nname = "local"\nhost = "h"\ntype = "t"\nwork_dir = "/w/x"\n',
     "device #1 ('local'): name must be 1-64 letters, digits and ._- starting with a letter "
     "or digit, and not 'local'"),
    ('[defaults]\nname = "x"\n[[device]]\nname = "a"\nhost = "h"\ntype = "t"\nwork_dir = "/w/x"\n',
     "[defaults] has unknown keys ['name']"),
])
def test_inventory_errors_name_file_device_and_rule(tmp_path, body, message):
    path = tmp_path / "inv.toml"
    path.write_text(body)
    with pytest.raises(UserInputError) as err:
        load_inventory(path)
    assert str(err.value).startswith(f"{path}: {message}")
