"""Names, ids, paths and numbers from users' files: full-match rules, finite numbers.

Issue 15 item 3 (an inventory ``env`` key read by ``env`` as an option ran a
command; names ending in a newline passed) and the value checks of item 8
(``"argv": "prog.sh"`` split into characters, ``1e999`` timeouts, NaN limits).
"""

from __future__ import annotations

import json
import math
import os

import pytest

from device_farm import Artifact, ArtifactFile, MeasureJob, ProtocolConfig, Verify, load_inventory
from device_farm.jobs_io import read_jobs
from device_farm.ssh import validate_work_dir
from pattune_common import UserInputError

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import script, ssh_device

GOOD = '[[device]]\nname = "p"\nhost = "h"\ntype = "t"\nwork_dir = "/w/x"\n'


def _inventory(tmp_path, extra: str) -> str:
    path = tmp_path / "inv.toml"
    path.write_text(GOOD + extra)
    return str(path)


@pytest.mark.parametrize(("extra", "message"), [
    ('env = { "-Stouch /tmp/pwned" = "1" }\n', "env name must be a letter or '_' then"),
    ('env = { "A B" = "1" }\n', "env name must be"),
    ('env = { "A" = 1 }\n', "env A must be a string"),
    ("threads = -4\n", "threads must be >= 0; got -4"),
    ("threads = true\n", "threads must be an integer; got True"),
    ("port = 0\n", "port must be >= 1; got 0"),
    ("cpu_affinity = [-1]\n", "cpu_affinity must be >= 0; got -1"),
    ("connect_timeout_s = nan\n", "connect_timeout_s must be a finite number; got nan"),
    ("connect_timeout_s = inf\n", "connect_timeout_s must be a finite number; got inf"),
    ('compiler = "-fplugin=x.so"\n', "compiler must be a command name or absolute path"),
    ('user = "-oProxyCommand=x"\n', "user must be a login name"),
])
def test_inventory_values_are_checked(tmp_path, extra, message):
    with pytest.raises(UserInputError, match=r"device #1 \('p'\): " + _re(message)):
        load_inventory(_inventory(tmp_path, extra))


def _re(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize("field", ["name", "host", "type", "work_dir"])
def test_a_trailing_newline_is_not_part_of_any_name(tmp_path, field):
    # TOML's "\n" escape: re.match(r"...$") accepted these, re.fullmatch does not.
    body = GOOD.replace(f'{field} = "', f'{field} = "x\\n', 1) if field != "work_dir" else (
        GOOD.replace('work_dir = "/w/x"', 'work_dir = "/w/x\\n"'))
    path = tmp_path / "inv.toml"
    path.write_text(body)
    with pytest.raises(UserInputError, match=f"{field} must be"):
        load_inventory(str(path))


def test_device_is_a_table_and_devices_a_list(tmp_path):
    path = tmp_path / "inv.toml"
    path.write_text('device = ["x"]\n')
    with pytest.raises(UserInputError, match=r"device #1 must be a \[\[device\]\] table; got 'x'"):
        load_inventory(str(path))
    path.write_text('[device]\nname = "x"\n')
    with pytest.raises(UserInputError, match=r"\[device\] must be \[\[device\]\]"):
        load_inventory(str(path))


def test_record_names_are_matched_whole():
    with pytest.raises(ValueError, match="work_dir must be"):
        validate_work_dir("/data/local/tmp/x\n")
    sha = "0" * 64
    for name in ("prog\n", "-x", "a/b", ".."):
        with pytest.raises(ValueError, match="artifact file name must be"):
            ArtifactFile(name=name, local_path="/x", sha256=sha)
    with pytest.raises(ValueError, match="sha256 must be 64 lowercase hex digits"):
        ArtifactFile(name="p", local_path="/x", sha256=sha + "\n")
    f = ArtifactFile(name="p", local_path="/x", sha256=sha)
    art = Artifact(files=(f,), argv=("p",))
    for bad in ("j\n", "-j", "", "a b"):
        with pytest.raises(ValueError, match="job_id must be"):
            MeasureJob(job_id=bad, artifact=art)
    for key in ("-Sx", "A\n", "A=B", "1A"):
        with pytest.raises(ValueError, match="artifact env name must be"):
            Artifact(files=(f,), argv=("p",), env=((key, "v"),))
    with pytest.raises(ValueError, match="must not contain NUL"):
        Artifact(files=(f,), argv=("p", "a\x00b"))


@pytest.mark.parametrize(("change", "message"), [
    ({"timeout_s": 1e999}, "timeout_s must be a finite number; got inf"),
    ({"timeout_s": float("nan")}, "timeout_s must be a finite number; got nan"),
    ({"timeout_s": 1e6}, "timeout_s must be <= 86400 seconds; got 1000000.0"),
    ({"timeout_s": "60"}, "timeout_s must be a number; got '60'"),
    ({"timeout_s": True}, "timeout_s must be a number; got True"),
    ({"job_id": 5}, "job_id must be 1-200 characters"),
    ({"artifact.argv": "prog.sh"}, "artifact argv must be a list of strings; got 'prog.sh'"),
    ({"artifact.argv": ["prog.sh", 3]}, "artifact argv[1] must be a string; got 3"),
    ({"artifact.verify": {"checksum": "abc"}}, "verify checksum must be a number; got 'abc'"),
    ({"artifact.verify": {"checksum": [1]}}, "verify checksum must be a number; got (1,)"),
    ({"artifact.verify": {"checksum": 1, "rtol": -1}}, "verify rtol must be >= 0; got -1"),
    ({"artifact.env": ["A=b"]}, "artifact env must hold [name, value] pairs"),
    ({"artifact.env": [["-S", "b"]]}, "artifact env name must be"),
    ({"artifact.files": "prog.sh"}, '"artifact" must be an object with a "files" list'),
    ({"artifact": "prog.sh"}, '"artifact" must be an object with a "files" list'),
])
def test_jobs_file_values_are_checked(tmp_path, change, message):
    f = script(str(tmp_path), "prog.sh", "true")
    line = {"job_id": "j", "artifact": Artifact(files=(f,), argv=("prog.sh",)).to_dict(),
            "timeout_s": 5}
    for key, value in change.items():
        if key.startswith("artifact."):
            line["artifact"][key.split(".", 1)[1]] = value
        else:
            line[key] = value
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(UserInputError) as err:
        read_jobs(str(path))
    assert str(err.value).startswith(f"jobs file {path} line 1: {message}"), str(err.value)


@pytest.mark.parametrize(("kw", "message"), [
    ({"max_cv": math.nan}, "max_cv must be a finite number"),
    ({"min_total_s": math.nan}, "min_total_s must be a finite number"),
    ({"thermal_limit_c": math.nan}, "thermal_limit_c must be a finite number"),
    ({"min_total_s": math.inf}, "min_total_s must be a finite number"),
    ({"warmup": -1}, "warmup must be >= 0"),
    ({"min_repeats": 0}, "min_repeats must be >= 1"),
    ({"cooldown_s": -0.5}, "cooldown_s must be >= 0"),
])
def test_protocol_limits_are_finite(kw, message):
    with pytest.raises(ValueError, match=message):
        ProtocolConfig(**kw)


def test_env_keys_cannot_become_options_of_the_remote_command(make_farm, tmp_path):
    """Against a real sshd: the key that made `env` run `touch` is refused before any exec."""
    farm = make_farm(1)
    dev = ssh_device(farm, farm.servers[0])
    target = tmp_path / "pwned"
    with pytest.raises(ValueError, match="env name must be"):
        dev.execute(["true"], timeout_s=5, env={f"-Stouch {target}": "1"})
    with pytest.raises(ValueError, match="env name must be"):
        ssh_device(farm, farm.servers[0]).__class__(
            name="x", device_type="t", target=dev.target, work_dir=dev.work_dir,
            env={f"-Stouch {target}": "1"})
    # A value may hold anything (but NUL) and reaches the program verbatim.
    value = f"; touch {target}; $(touch {target}) `touch {target}` -S\n"
    r = dev.execute(["sh", "-c", 'printf %s "$V"'], timeout_s=5, env={"V": value})
    assert r.stdout == value and not os.path.exists(target)
    dev.close()


def test_verify_accepts_only_finite_numbers():
    for bad in (math.nan, math.inf, "1", True):
        with pytest.raises(ValueError, match="verify checksum must be"):
            Verify(checksum=bad)  # type: ignore[arg-type]
