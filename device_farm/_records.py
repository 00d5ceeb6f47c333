"""The records device_farm takes and returns: Artifact, MeasureJob, Measurement.

device_farm knows artifacts only: files (each with its sha256), an argv template
to run, and how to verify what the program prints. It never sees layers or
patterns. Every record is a frozen dataclass with a stable JSON form.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from device_farm._checks import (
    check_env,
    check_name,
    check_number,
    check_text,
    check_texts,
    is_real,
)
from pattune_common import Record, stable_hash

__all__ = [
    "Artifact",
    "ArtifactFile",
    "MeasureJob",
    "MeasureStatus",
    "Measurement",
    "Verify",
    "file_sha256",
]

# Matched whole (fullmatch): a name ending in a newline is not a name.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,199}")
#: The longest a single run of a program may be given (one day): a bigger limit is a typo.
MAX_TIMEOUT_S = 86400.0
# Placeholders an argv template may use; anything else in braces is an error.
PLACEHOLDERS = ("{dir}", "{repeats}", "{warmup}")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a local file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ArtifactFile(Record):
    """One file of an artifact: where it is here, its name on the device, its sha256.

    Attributes:
        name: File name in the artifact's directory on the device (no slashes).
        local_path: Path on this machine.
        sha256: Hex sha256 of the content; the device stores it under this name.
        executable: Whether the file gets mode 0755 on the device.
    """

    name: str
    local_path: str
    sha256: str
    executable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _FILE_NAME.fullmatch(self.name) or (
                ".." in self.name):
            raise ValueError(
                "artifact file name must be 1-128 characters of letters, digits, '.', '_', "
                f"'+', '-' starting with a letter or digit, and contain no '..'; got {self.name!r}"
            )
        check_name("sha256", self.sha256, _SHA256, "64 lowercase hex digits")
        check_text("local_path", self.local_path, allow_empty=False)
        if not isinstance(self.executable, bool):
            raise ValueError(f"executable must be true or false; got {self.executable!r}")

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, name: str | None = None, executable: bool = False
    ) -> ArtifactFile:
        """Describe a local file, hashing its content now."""
        path = os.fspath(path)
        return cls(
            name=name or os.path.basename(path),
            local_path=os.path.abspath(path),
            sha256=file_sha256(path),
            executable=executable,
        )


@dataclass(frozen=True)
class Verify(Record):
    """How a run's output is checked before its time counts (Kernel Tuner's ``answer``).

    The program's last stdout line that parses as a JSON object is its *report*.
    With ``checksum`` set, the report's ``"checksum"`` must be within
    ``atol + rtol * |checksum|`` of it. Without, only the exit code counts (a
    program that checks itself exits non-zero on a mismatch).
    """

    checksum: float | None = None
    rtol: float = 1e-4
    atol: float = 0.0

    def __post_init__(self) -> None:
        if self.checksum is not None:
            check_number("verify checksum", self.checksum)
        check_number("verify rtol", self.rtol, low=0)
        check_number("verify atol", self.atol, low=0)


@dataclass(frozen=True)
class Artifact(Record):
    """Files plus the command that runs them plus how to verify the output.

    ``argv`` is a template: ``{dir}`` becomes the artifact's directory on the
    device (where every file lies under its ``name``), ``{repeats}`` and
    ``{warmup}`` the counts the protocol asks for. A program whose argv has
    ``{repeats}`` runs its own repeat loop and must report ``"times_s"`` (one
    float per repeat, seconds); any other program is timed as whole runs.
    A bare first element naming a file of the artifact runs that file.
    """

    files: tuple[ArtifactFile, ...]
    argv: tuple[str, ...]
    verify: Verify = field(default_factory=Verify)
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.files, tuple) or not all(
                isinstance(f, ArtifactFile) for f in self.files):
            raise ValueError("artifact files must be a list of file objects")
        check_texts("artifact argv", self.argv)
        if not self.argv or not self.argv[0]:
            raise ValueError("artifact argv must have at least one element, the program")
        if not isinstance(self.verify, Verify):
            raise ValueError(f"artifact verify must be an object; got {self.verify!r}")
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"artifact file names must be unique; got {names}")
        for arg in self.argv:
            rest = arg
            for ph in PLACEHOLDERS:
                rest = rest.replace(ph, "")
            if "{" in rest or "}" in rest:
                raise ValueError(
                    f"argv placeholders must be one of {', '.join(PLACEHOLDERS)}; got {arg!r}"
                )
        check_env("artifact env", self.env)

    @property
    def self_timed(self) -> bool:
        """Whether the program runs its own repeat loop (argv has ``{repeats}``)."""
        return any("{repeats}" in a for a in self.argv)

    def content_hash(self) -> str:
        """Hash over file contents, names, argv, verify and env (not local paths)."""
        return stable_hash(
            {
                "files": sorted((f.name, f.sha256, f.executable) for f in self.files),
                "argv": list(self.argv),
                "verify": self.verify.to_dict(),
                "env": [list(e) for e in self.env],
            }
        )

    def render_argv(self, *, directory: str, repeats: int, warmup: int) -> list[str]:
        """Fill the placeholders; a first element naming a file becomes its path."""
        out = []
        for arg in self.argv:
            out.append(
                arg.replace("{dir}", directory)
                .replace("{repeats}", str(repeats))
                .replace("{warmup}", str(warmup))
            )
        if out[0] in {f.name for f in self.files}:
            out[0] = f"{directory}/{out[0]}"
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        """Build from :meth:`to_dict`'s output."""
        files, verify = data["files"], data.get("verify", {})
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise ValueError(f"artifact files must be a list of objects; got {files!r}")
        if not isinstance(verify, dict):
            raise ValueError(f"artifact verify must be an object; got {verify!r}")
        unknown = set(data) - {"files", "argv", "verify", "env"}
        if unknown:
            raise ValueError(f"Artifact: unknown fields {sorted(unknown)}")
        return cls(
            files=tuple(ArtifactFile.from_dict(f) for f in files),
            argv=check_texts("artifact argv", data["argv"]),
            verify=Verify.from_dict(verify),
            env=check_env("artifact env", data.get("env", ())),
        )


@dataclass(frozen=True)
class MeasureJob(Record):
    """One artifact to measure on one device type, with a unique id.

    Attributes:
        job_id: Unique within a batch; a resumed batch skips ids already final.
        artifact: What to run.
        timeout_s: Limit in seconds for one run of the program (one exec).
    """

    job_id: str
    artifact: Artifact
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        check_name("job_id", self.job_id, _JOB_ID,
                   "1-200 characters of letters, digits and ._:+@=- starting with a letter "
                   "or digit")
        if not isinstance(self.artifact, Artifact):
            raise ValueError(f"artifact must be an Artifact; got {self.artifact!r}")
        if not (is_real(self.timeout_s) and 0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise ValueError(f"timeout_s must be > 0 and <= {MAX_TIMEOUT_S:g} seconds; "
                             f"got {self.timeout_s!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasureJob:
        """Build from :meth:`to_dict`'s output."""
        unknown = set(data) - {"job_id", "artifact", "timeout_s"}
        if unknown:
            raise ValueError(f"MeasureJob: unknown fields {sorted(unknown)}")
        if not isinstance(data["artifact"], dict):
            raise ValueError(f"artifact must be an object; got {data['artifact']!r}")
        timeout = data.get("timeout_s", 60.0)
        check_number("timeout_s", timeout, low=0, low_open=True, high=MAX_TIMEOUT_S,
                     unit="seconds")
        return cls(
            job_id=data["job_id"],
            artifact=Artifact.from_dict(data["artifact"]),
            timeout_s=float(timeout),
        )


class MeasureStatus(enum.Enum):
    """How a measurement ended."""

    OK = "ok"
    NOISY = "noisy"  # a value, but its spread stayed above the limit after re-measuring
    TIMEOUT = "timeout"
    CRASH = "crash"  # non-zero exit
    WRONG_OUTPUT = "wrong_output"
    ERROR = "error"  # the artifact could not be staged or run (e.g. disk full)
    DEVICE_FAULT = "device_fault"  # the device failed (lost, disk full); the job may run elsewhere

    def is_final(self) -> bool:
        """Whether re-running the job elsewhere could not change the answer."""
        return self is not MeasureStatus.DEVICE_FAULT

    def has_value(self) -> bool:
        """Whether the measurement carries a median time."""
        return self in (MeasureStatus.OK, MeasureStatus.NOISY)


@dataclass(frozen=True)
class Measurement(Record):
    """The result of one MeasureJob on one device: a value or an error, never both.

    Times are seconds. ``times_s`` are the raw repeat times of the accepted round
    (kept on failures where there were any, for diagnosis); ``median_s`` and
    ``cv`` are set only when ``status.has_value()``, ``error`` only otherwise.
    ``started_at``/``finished_at`` are Unix seconds on this host.
    """

    schema = "pattune.measurement/1"

    job_id: str
    device: str
    device_type: str
    artifact_hash: str
    command: tuple[str, ...]
    status: MeasureStatus
    times_s: tuple[float, ...] = ()
    median_s: float | None = None
    cv: float | None = None
    rounds: int = 0
    error: str | None = None
    stderr_tail: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0

    def __post_init__(self) -> None:
        if self.status.has_value():
            if self.median_s is None or self.error is not None:
                raise ValueError(f"a {self.status.value} measurement needs median_s and no error")
            # A value is a measurement only when it could be one: the protocol checks each
            # time, and this keeps NaN and infinity out of every file and database.
            check_number("median_s", self.median_s, low=0, low_open=True)
            check_number("cv", self.cv, low=0)
        elif self.error is None or self.median_s is not None:
            raise ValueError(f"a {self.status.value} measurement needs an error and no median_s")
        for t in self.times_s:
            check_number("times_s", t, low=0)

    @classmethod
    def failed(
        cls, job: MeasureJob, *, device: str, device_type: str, status: MeasureStatus,
        error: str, command: tuple[str, ...] = (), started_at: float = 0.0,
        finished_at: float = 0.0, stderr_tail: str = "", times_s: tuple[float, ...] = (),
    ) -> Measurement:
        """Build a failure record for ``job``."""
        return cls(
            job_id=job.job_id, device=device, device_type=device_type,
            artifact_hash=job.artifact.content_hash(), command=command, status=status,
            error=error, started_at=started_at, finished_at=finished_at,
            stderr_tail=stderr_tail, times_s=times_s,
        )

    def with_status(self, status: MeasureStatus, error: str) -> Measurement:
        """Return a failure copy with ``status`` and ``error``."""
        return dataclasses.replace(self, status=status, error=error, median_s=None, cv=None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Build from :meth:`to_dict`'s output."""
        d = dict(data)
        d["status"] = MeasureStatus(d["status"])
        d["command"] = tuple(d.get("command", ()))
        d["times_s"] = tuple(float(t) for t in d.get("times_s", ()))
        return cls(**d)


@dataclass(frozen=True)
class RunResult:
    """What one command did on a device.

    Attributes:
        exit_code: The exit status, or None when the command was killed at its timeout.
        stdout: Standard output, at most ``Device.max_output`` bytes: its head and,
            when longer, its last 64 KiB (where the report is).
        stderr: Standard error (the tail, at most ``Device.max_output`` bytes).
        wall_s: Seconds the command ran, measured on the device where it can be.
        timed_out: Whether the command was killed at its deadline.
        stdout_cut: Bytes of stdout dropped from its middle to stay within the limit
            (its head and tail are kept, so the last JSON line survives).
    """

    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool = False
    stdout_cut: int = 0
