"""SSH device behaviour against real sshd: host keys, auth, reconnects, jumps, full disks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.harness.sshd import free_port, keygen
from device_farm import DeviceFault, MeasureStatus
from device_farm.ssh import validate_work_dir

pytest_plugins = ["tests.farm.fixtures"]
from tests.farm.programs import job, self_timed, ssh_device


def test_unknown_host_key_is_refused_naming_the_trust_command(make_farm, tmp_path):
    farm = make_farm(1)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    dev = ssh_device(farm, farm.servers[0], known_hosts=str(empty))
    with pytest.raises(DeviceFault) as err:
        dev.execute(["true"], timeout_s=5)
    port = farm.servers[0].port
    assert str(err.value) == (
        f"ssh device dev0: host key of [127.0.0.1]:{port} is unknown (not in {empty}); "
        "check it and run `pattune devices trust dev0`"
    )


def test_changed_host_key_is_refused(make_farm):
    farm = make_farm(1)
    server = farm.servers[0]
    server.kill()
    server.regenerate_host_key()
    server.start()
    with pytest.raises(DeviceFault, match=r"^ssh device dev0: host key of \[127\.0\.0\.1\]:\d+ "
                       r"CHANGED \(it offers ssh-ed25519 SHA256:.*refusing to connect.*"
                       r"devices trust dev0 --replace`$"):
        ssh_device(farm, server).execute(["true"], timeout_s=5)


def test_failed_authentication_is_a_device_fault(make_farm, tmp_path):
    farm = make_farm(1)
    stranger = str(tmp_path / "stranger")
    keygen(stranger)
    dev = ssh_device(farm, farm.servers[0], identity_file=stranger)
    [m] = dev.measure([job("auth", self_timed(str(tmp_path)))])
    assert m.status is MeasureStatus.DEVICE_FAULT
    assert m.error is not None and m.error.startswith(
        f"ssh device dev0: authentication failed for {farm.user}@[127.0.0.1]:"
        f"{farm.servers[0].port} with identity {stranger}")


def test_unreachable_device_is_a_device_fault_quickly(make_farm, tmp_path):
    farm = make_farm(1)
    port = free_port()  # nothing listens there
    dev = ssh_device(farm, farm.servers[0], port=port)
    [m] = dev.measure([job("x", self_timed(str(tmp_path)))])
    assert m.status is MeasureStatus.DEVICE_FAULT
    assert m.error == f"ssh device dev0: cannot connect to 127.0.0.1:{port}: Connection refused"
    assert not m.status.is_final()


def test_reconnects_after_the_connection_drops(make_farm):
    farm = make_farm(1)
    server = farm.servers[0]
    dev = ssh_device(farm, server)
    assert dev.execute(["echo", "one"], timeout_s=5).stdout == "one\n"
    server.kill()  # drops the session of the held connection too
    server.start()
    assert dev.execute(["echo", "two"], timeout_s=5).stdout == "two\n"


def test_connection_lost_mid_command_is_a_device_fault_and_the_orphan_is_killed(
        make_farm, tmp_path):
    farm = make_farm(1)
    server = farm.servers[0]
    dev = ssh_device(farm, server)
    dev.execute(["true"], timeout_s=5)
    pidfile = tmp_path / "orphan.pid"
    threading.Timer(0.7, server.kill).start()
    with pytest.raises(DeviceFault, match="^ssh device dev0: connection lost while running"):
        dev.execute(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout_s=20)
    orphan = int(pidfile.read_text())
    assert _alive(orphan)  # sshd does not signal a no-pty session's processes
    server.start()
    assert dev.execute(["echo", "back"], timeout_s=5).stdout == "back\n"
    assert not _alive(orphan)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_proxy_jump_through_a_hub_and_ssh_config_alias(make_farm, tmp_path):
    farm = make_farm(2)
    hub, phone = farm.servers
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host hub\n  HostName 127.0.0.1\n  Port {hub.port}\n  User {farm.user}\n"
        f"Host phone\n  HostName 127.0.0.1\n  Port {phone.port}\n  ProxyJump hub\n"
    )
    dev = ssh_device(farm, phone, host="phone", port=None, user=None, ssh_config=str(config))
    resolved = dev.target.resolved()
    assert (resolved.host, resolved.port, resolved.proxy_jump) == ("127.0.0.1", phone.port, "hub")
    r = dev.execute(["sh", "-c", "echo $DEV-$SSH_CLIENT"], timeout_s=5,
                    env={"DEV": "phone"})
    assert r.stdout.startswith("phone-127.0.0.1 ")
    [m] = dev.measure([job("jumped", self_timed(str(tmp_path)))])
    assert m.status is MeasureStatus.OK, m.error
    # The link runs through the hub: without the hub the phone is unreachable.
    hub.kill()
    dev.close()
    with pytest.raises(DeviceFault, match=r"^ssh device dev1 \(via jump host 127\.0\.0\.1\): "
                       r"cannot connect to 127\.0\.0\.1:\d+: Connection refused$"):
        dev.execute(["true"], timeout_s=5)


def _fill_disk(server) -> str:
    """Make the device's disk hold 256 KiB: a tmpfs on its work dir where mounting works
    (root here), else sshd restarted under RLIMIT_FSIZE (no privileges needed: writes past
    the limit fail, which the SFTP server reports as a dead channel)."""
    os.makedirs(server.work_dir, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", server.work_dir],
                       capture_output=True, check=False)
    if r.returncode == 0:
        return "tmpfs"
    server.kill()
    server.start(fsize_limit=256 * 1024)
    return "rlimit"


def test_full_remote_disk_is_a_device_fault_with_free_space(make_farm, tmp_path):
    farm = make_farm(1)
    server = farm.servers[0]
    how = _fill_disk(server)
    try:
        big = tmp_path / "weights.bin"
        big.write_bytes(os.urandom(1 << 20))
        from device_farm import Artifact, ArtifactFile

        art = self_timed(str(tmp_path))
        art = Artifact(files=(*art.files, ArtifactFile.from_path(big)), argv=art.argv,
                       verify=art.verify)
        dev = ssh_device(farm, server)
        [m] = dev.measure([job("big", art)])
        assert m.status is MeasureStatus.DEVICE_FAULT
        assert m.error is not None
        assert m.error.startswith("ssh device dev0: upload failed: ")
        if how == "tmpfs":
            assert m.error.endswith(f"KiB free in {server.work_dir})")
        assert not any(n.endswith(".part") for n in os.listdir(os.path.join(server.work_dir, "tmp")))
        # The device is still usable for what fits.
        [ok] = dev.measure([job("small", self_timed(str(tmp_path / "s")))])
        assert ok.status is MeasureStatus.OK, ok.error
    finally:
        if how == "tmpfs":
            subprocess.run(["umount", "-l", server.work_dir], check=False)


def test_work_dir_must_be_confined():
    assert validate_work_dir("/data/local/tmp/pattune/") == "/data/local/tmp/pattune"
    for bad in ("/", "/tmp", "relative/dir", "/data/../etc", "/data/x y", "/data/$(id)"):
        with pytest.raises(ValueError, match="^work_dir must be an absolute path"):
            validate_work_dir(bad)


def test_uploads_survive_a_new_connection_without_being_stored_again(make_farm, tmp_path):
    farm = make_farm(1)
    dev = ssh_device(farm, farm.servers[0])
    art = self_timed(str(tmp_path))
    [m] = dev.measure([job("first", art)])  # the file travels with the first run
    assert m.status is MeasureStatus.OK, m.error
    stored = os.path.join(dev.work_dir, "cas", art.files[0].sha256)
    before = os.stat(stored).st_mtime_ns
    dev.close()
    dev2 = ssh_device(farm, farm.servers[0])
    # A small file is sent on a guess (cheaper than asking), and the device keeps its copy.
    [m2] = dev2.measure([job("again", art)])
    assert m2.status is MeasureStatus.OK, m2.error
    assert os.stat(stored).st_mtime_ns == before


_ARG = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40)


def test_any_argument_reaches_the_remote_program_verbatim(make_farm):
    farm = make_farm(1)
    dev = ssh_device(farm, farm.servers[0])

    @settings(max_examples=40, deadline=None)
    @given(args=st.lists(_ARG, min_size=1, max_size=6), value=_ARG)
    def echo_back(args: list[str], value: str) -> None:
        r = dev.execute(["sh", "-c", 'printf "%s\\0" "$@" "$V"', "sh", *args],
                        timeout_s=10, env={"V": value})
        assert r.exit_code == 0, r.stderr
        assert r.stdout.split("\0")[:-1] == [*args, value]

    echo_back()


def test_processes_staging_one_artifact_at_once_all_succeed(make_farm, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    farm = make_farm(1)
    devs = [ssh_device(farm, farm.servers[0]) for _ in range(4)]
    art = self_timed(str(tmp_path))
    def stage_and_run(d):
        where = d.stage(art)
        assert d.execute(["true"], timeout_s=20, cwd=where).exit_code == 0
        return where

    with ThreadPoolExecutor(4) as pool:
        dirs = list(pool.map(stage_and_run, devs))
    assert len(set(dirs)) == 1
    assert os.listdir(dirs[0]) == ["selftimed.sh"]  # no stray temp dirs moved inside
    assert os.listdir(os.path.join(devs[0].work_dir, "tmp")) == []


def test_devices_clean_empties_the_work_dir(make_farm, tmp_path):
    farm = make_farm(1)
    dev = ssh_device(farm, farm.servers[0])
    dev.stage(self_timed(str(tmp_path)))
    assert sorted(os.listdir(dev.work_dir)) == ["a", "cas", "tmp"]
    dev.clean()
    assert os.listdir(dev.work_dir) == []
    [m] = dev.measure([job("again", self_timed(str(tmp_path)))])  # re-uploads after a clean
    assert m.status is MeasureStatus.OK, m.error


def _freeze(pids: list[str]) -> None:
    for pid in pids:
        os.kill(int(pid), signal.SIGSTOP)


def _thaw(pids: list[str]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGCONT)


def test_a_connection_that_stops_answering_cannot_hang_a_command(make_farm):
    farm = make_farm(1)
    server = farm.servers[0]
    assert server.proc is not None
    dev = ssh_device(farm, server, connect_timeout_s=2.0)
    dev.execute(["true"], timeout_s=5)
    sessions = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                              text=True, check=False).stdout.split()
    assert sessions
    threading.Timer(0.5, _freeze, [sessions]).start()  # TCP stays up, nothing answers
    try:
        t0 = time.monotonic()
        r = dev.execute(["sleep", "30"], timeout_s=1.5)
        # killed through a fresh connection (the listener still answers)
        assert r.timed_out and time.monotonic() - t0 < 15
        assert dev.execute(["echo", "ok"], timeout_s=5).stdout == "ok\n"
    finally:
        _thaw(sessions)


def test_a_device_that_stops_answering_entirely_is_a_device_fault(make_farm):
    farm = make_farm(1)
    server = farm.servers[0]
    assert server.proc is not None
    dev = ssh_device(farm, server, connect_timeout_s=2.0)
    dev.execute(["true"], timeout_s=5)
    frozen = [str(server.proc.pid), *subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True,
        check=False).stdout.split()]
    threading.Timer(0.5, _freeze, [frozen]).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DeviceFault, match=r"^ssh device dev0: no answer at the 1\.5 s deadline "
                           "and the device cannot be reached to kill the command$"):
            dev.execute(["sleep", "30"], timeout_s=1.5)
        assert time.monotonic() - t0 < 20
    finally:
        _thaw(frozen)
    assert dev.execute(["echo", "back"], timeout_s=5).stdout == "back\n"
