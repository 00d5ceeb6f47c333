"""Host keys: another key *type* is a change too, refused everywhere (issue 15 item 4).

With an ed25519 key recorded, a real sshd that now offers only an ECDSA key got it
added by ``pattune devices trust NAME`` without ``--replace``, and the job's record
said only that no healthy device could run it.
"""

from __future__ import annotations

import json

from device_farm import DeviceFault
from device_farm._ssh_connect import recorded_keys

pytest_plugins = ["tests.farm.fixtures"]
import pytest

from tests.farm.programs import ssh_device
from tests.test_farm_cli import one_line_error, pattune, write_inventory, write_jobs


def test_a_server_offering_another_key_type_is_a_changed_key(make_farm, tmp_path):
    farm = make_farm(1)
    server = farm.servers[0]
    inv = write_inventory(tmp_path / "inv.toml", farm)
    dev = ssh_device(farm, server)
    before = recorded_keys(dev.target.resolved())
    assert list(before) == ["ssh-ed25519"]
    server.kill()
    server.regenerate_host_key("ecdsa")  # reinstalled, or a man in the middle
    server.start()

    # trust without --replace: refused, one line, both keys named, known_hosts untouched
    with open(farm.known_hosts) as fh:
        known = fh.read()
    msg = one_line_error(pattune("devices", "trust", "dev0", "-i", inv))
    assert msg.startswith(f"pattune: error: {farm.known_hosts} has another key for "
                          f"[127.0.0.1]:{server.port} (ssh-ed25519 SHA256:")
    assert "the device offers ecdsa-sha2-nistp256 SHA256:" in msg and msg.endswith(
        "pass --replace to trust it instead")
    with open(farm.known_hosts) as fh:
        assert fh.read() == known

    # connecting: refused as a change, naming both keys and --replace
    with pytest.raises(DeviceFault) as err:
        dev.execute(["true"], timeout_s=5)
    assert str(err.value).startswith(
        f"ssh device dev0: host key of [127.0.0.1]:{server.port} CHANGED (it offers "
        "ecdsa-sha2-nistp256 SHA256:")
    assert str(err.value).endswith("run `pattune devices trust dev0 --replace`")

    # a batch: the job's own record says why, not only a line on stderr
    jobs = write_jobs(tmp_path / "jobs.jsonl", tmp_path, 1)
    out = tmp_path / "out.jsonl"
    r = pattune("measure", "-i", inv, "-t", "loop", "--jobs", jobs, "--out", str(out),
                "--db", f"sqlite:///{tmp_path}/p.db")
    assert r.returncode == 0, r.stderr
    [res] = [json.loads(x) for x in out.read_text().splitlines()]
    assert res["status"] == "device_fault"
    assert res["error"].startswith("farm: no healthy device of type loop could run it; devices "
                                   f"left out: ssh device dev0: host key of [127.0.0.1]:"
                                   f"{server.port} CHANGED")

    # --replace: the new key replaces every old one of the entry, and connections work
    r = pattune("devices", "trust", "dev0", "-i", inv, "--replace")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"[127.0.0.1]:{server.port} ecdsa-sha2-nistp256 SHA256:")
    assert r.stdout.rstrip().endswith(f"replaced in {farm.known_hosts}")
    assert list(recorded_keys(dev.target.resolved())) == ["ecdsa-sha2-nistp256"]
    assert dev.execute(["echo", "ok"], timeout_s=5).stdout == "ok\n"
    r = pattune("devices", "trust", "dev0", "-i", inv)
    assert r.returncode == 0 and r.stdout.rstrip().endswith(f"unchanged in {farm.known_hosts}")
    dev.close()


def test_replace_keeps_other_hosts_and_hashed_entries(make_farm, tmp_path):
    import paramiko

    from device_farm._ssh_connect import SSHTarget, record_host_key

    farm = make_farm(1)
    known = tmp_path / "known_hosts"
    other = "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    target = SSHTarget(host="127.0.0.1", port=farm.servers[0].port, known_hosts=str(known))
    entry = target.host_key_entry
    old = paramiko.Ed25519Key.from_private_key_file(farm.client_key)  # any key will do
    hashed = paramiko.HostKeys.hash_host(entry)
    known.write_text(f"# a comment\n{other}{hashed} ssh-ed25519 {old.get_base64()}\n")
    new = paramiko.ECDSAKey.generate()
    with pytest.raises(ValueError, match="pass --replace"):
        record_host_key(target, new, replace_changed=False)
    assert record_host_key(target, new, replace_changed=True) == "replaced"
    text = known.read_text()
    assert text.startswith(f"# a comment\n{other}") and hashed not in text
    assert list(recorded_keys(target)) == ["ecdsa-sha2-nistp256"]
