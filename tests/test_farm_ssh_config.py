"""SSH hosts resolve as OpenSSH resolves them, against real sshd on loopback.

An ssh_config that ``Include``\\ s the real one, a ``ProxyJump`` chain of two hubs,
two ``IdentityFile``\\ s of which only the second is authorised, and a
``ProxyCommand``: ``devices list`` shows the resolved login, ``devices check`` gets
through, and the connection goes the way the config says (a killed hub breaks the
chain; the proxy command notes each use). Without the OpenSSH client, paramiko's
parser resolves the same chain and keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.harness.sshd import keygen

pytest_plugins = ["tests.farm.fixtures"]

ROOT = Path(__file__).resolve().parents[1]
RELAY = ROOT / "tests" / "support" / "relay.py"


def pattune(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "pattune", *args], capture_output=True,
                          text=True, timeout=180, cwd=ROOT, env=env, check=False)


def _setup(tmp_path: Path, farm, *, include: bool = True) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    hub1, hub2, phone = farm.servers
    wrong = str(tmp_path / "wrong_key")
    keygen(wrong)  # not in authorized_keys: offered first, refused
    keys = f"  IdentityFile {wrong}\n  IdentityFile {farm.client_key}\n  IdentitiesOnly yes\n"
    hosts = "".join(
        f"Host {name}\n  HostName 127.0.0.1\n  Port {s.port}\n  User {farm.user}\n{keys}"
        for name, s in (("hub1", hub1), ("hub2", hub2)))
    hosts += (f"Host phone\n  HostName 127.0.0.1\n  Port {phone.port}\n  User {farm.user}\n"
              f"  ProxyJump hub1,hub2\n{keys}")
    hosts += (f"Host piped\n  HostName 127.0.0.1\n  Port {phone.port}\n  User {farm.user}\n"
              f"  ProxyCommand {sys.executable} {RELAY} %h %p {tmp_path / 'relay.log'}\n{keys}")
    config = tmp_path / "ssh_config"
    if include:
        (tmp_path / "conf.d").mkdir()
        (tmp_path / "conf.d" / "lab.conf").write_text(hosts)
        config.write_text(f"Include {tmp_path}/conf.d/*.conf\n")
    else:
        config.write_text(hosts)
    inv = tmp_path / "inv.toml"
    inv.write_text(
        f'[defaults]\nknown_hosts = "{farm.known_hosts}"\nssh_config = "{config}"\n'
        + "".join(f'[[device]]\nname = "{n}"\nhost = "{n}"\ntype = "loop"\n'
                  f'work_dir = "{phone.work_dir}"\n' for n in ("phone", "piped")))
    return inv, config


def test_include_chain_identities_and_proxy_command_through_real_sshd(make_farm, tmp_path):
    farm = make_farm(3)
    hub1, hub2, phone = farm.servers
    inv, _ = _setup(tmp_path, farm)

    r = pattune("devices", "list", "-i", str(inv), "--json")
    assert r.returncode == 0, r.stderr
    by_name = {d["name"]: d for d in json.loads(r.stdout)["devices"]}
    assert {k: by_name["phone"][k] for k in ("user", "host", "port", "proxy_jump")} == {
        "user": farm.user, "host": "127.0.0.1", "port": phone.port,
        "proxy_jump": ["hub1", "hub2"]}
    assert by_name["piped"]["proxy_command"].startswith(sys.executable)
    assert f"127.0.0.1 {phone.port} " in by_name["piped"]["proxy_command"]  # %h %p expanded
    r = pattune("devices", "list", "-i", str(inv))  # piped: plain rows, nothing cut
    assert "phone\tloop\t" in r.stdout
    assert f"{farm.user}@127.0.0.1:{phone.port}\thub1 -> hub2\t" in r.stdout

    r = pattune("devices", "check", "phone", "piped", "-i", str(inv), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [d["reachable"] for d in json.loads(r.stdout)["devices"]] == [True, True]
    assert (tmp_path / "relay.log").read_text().splitlines()[0] == f"127.0.0.1:{phone.port}"

    # The phone is reached through hub2 (through hub1): without hub2 it is not.
    hub2.kill()
    r = pattune("devices", "check", "phone", "-i", str(inv), "--json")
    assert r.returncode == 1
    [report] = json.loads(r.stdout)["devices"]
    assert not report["reachable"] and "via jump host" in report["error"], report["error"]
    assert f"127.0.0.1:{hub2.port}" in report["error"]


def test_without_the_openssh_client_paramiko_resolves_the_same(make_farm, tmp_path):
    farm = make_farm(3)
    inv, _ = _setup(tmp_path, farm, include=False)
    bare = tmp_path / "bin"
    bare.mkdir()  # a PATH with no ssh on it
    r = pattune("devices", "list", "-i", str(inv), "--json", path=str(bare))
    assert r.returncode == 0, r.stderr
    phone = json.loads(r.stdout)["devices"][1]
    assert phone["proxy_jump"] == ["hub1", "hub2"] and phone["port"] == farm.servers[2].port
    r = pattune("devices", "check", "phone", "-i", str(inv), "--json", path=str(bare))
    assert r.returncode == 0, r.stdout + r.stderr
