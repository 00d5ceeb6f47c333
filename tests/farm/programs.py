"""Small real programs (POSIX sh scripts) packaged as Artifacts for the farm tests."""

from __future__ import annotations

import os

from benchmarks.harness.sshd import SshdFarm, SshdServer
from device_farm import (
    Artifact,
    ArtifactFile,
    MeasureJob,
    ProtocolConfig,
    SSHDevice,
    SSHTarget,
    Verify,
)


def script(directory: str, name: str, body: str) -> ArtifactFile:
    """Write an executable sh script and describe it as an artifact file."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return ArtifactFile.from_path(path, executable=True)


def self_timed(directory: str, *, checksum: float = 3.5, t: float = 0.001) -> Artifact:
    """A program with its own repeat loop: prints one time per repeat and a checksum."""
    f = script(directory, "selftimed.sh",
               'n=$1; out=""; i=0; while [ $i -lt $n ]; do out="$out${out:+,}' + str(t) + '"; '
               'i=$((i+1)); done; echo "{\\"times_s\\": [$out], \\"checksum\\": ' + f"{checksum}" + '}"')
    return Artifact(files=(f,), argv=("selftimed.sh", "{repeats}"), verify=Verify(checksum=3.5))


def plain(directory: str, name: str, body: str, *, verify: Verify | None = None) -> Artifact:
    """A program timed as whole runs (no {repeats} in its argv)."""
    f = script(directory, name, body)
    return Artifact(files=(f,), argv=(name,), verify=verify or Verify())


def job(job_id: str, artifact: Artifact, timeout_s: float = 20.0) -> MeasureJob:
    """A MeasureJob."""
    return MeasureJob(job_id=job_id, artifact=artifact, timeout_s=timeout_s)


# Fast protocol for tests: the programs are tiny and the machine has 2 shared cores.
FAST = ProtocolConfig(warmup=1, min_repeats=3, min_total_s=0.0, max_cv=10.0, remeasure=0)


def ssh_device(farm: SshdFarm, server: SshdServer, *, protocol: ProtocolConfig = FAST,
               device_type: str = "loop", **target_kw: object) -> SSHDevice:
    """An SSHDevice for one server of ``farm`` (keyword overrides go to SSHTarget)."""
    kw: dict[str, object] = {
        "host": "127.0.0.1", "port": server.port, "user": farm.user,
        "identity_file": farm.client_key, "known_hosts": farm.known_hosts,
        "connect_timeout_s": 5.0, "ssh_config": os.devnull}
    kw.update(target_kw)
    return SSHDevice(name=server.name, device_type=device_type, target=SSHTarget(**kw),  # type: ignore[arg-type]
                     work_dir=server.work_dir, protocol=protocol, env={"DEV": server.name})
