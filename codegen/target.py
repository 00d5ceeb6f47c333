"""Compile targets as data: compiler, flags, sysroot, vector width, how to run.

A :class:`Target` is everything the generator and builder need to know about a
CPU family, so a phone's NDK clang is a TOML file, not code::

    name = "pixel7"
    arch = "aarch64"
    cc = "/opt/ndk/toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android33-clang"
    cflags = ["-O3", "-march=armv8.2-a"]
    ldflags = ["-static-libstdc++"]
    isa = "neon"
    vector_floats = 4
    vector_registers = 32

Built-ins: :func:`host_target` (AVX-512 or AVX2+FMA, detected from
``/proc/cpuinfo``) and :func:`aarch64_target` (Debian's ``aarch64-linux-gnu-gcc``,
static, run under ``qemu-aarch64`` on this machine).
"""

from __future__ import annotations

import json
import os
import platform
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pattune_common import ConfigError, Record

ISAS = ("avx512", "avx2", "neon", "generic")
ARCHES = ("x86_64", "aarch64", "armv7", "riscv64")


@dataclass(frozen=True)
class Target(Record):
    """One kind of CPU the generator emits code for.

    Attributes:
        name: Short name (``host``, ``aarch64``, ``pixel7``).
        arch: Machine architecture, one of :data:`ARCHES`.
        cc: C compiler command (a path or a name on ``PATH``).
        cflags: Flags for every compile (optimisation and ISA flags).
        ldflags: Extra flags when linking the standalone executable.
        isa: Vector ISA family, one of :data:`ISAS` (documentation and features only:
            the generated code uses GCC/Clang vector extensions).
        vector_floats: Widest vector in float32 lanes (16 for AVX-512, 8 AVX2, 4 NEON).
        vector_registers: Architectural vector registers (bounds the register tile).
        sysroot: ``--sysroot`` for cross compilers; empty for none.
        run_prefix: Command prefix to run an executable on this machine
            (``["qemu-aarch64"]``); empty when it runs natively.
        static: Link the executable statically (phones and qemu need no libc match).
        supports_openmp: The toolchain has ``-fopenmp`` and libgomp.
        max_threads: Most threads a config may ask for.
    """

    name: str
    arch: str
    cc: str
    cflags: tuple[str, ...]
    isa: str
    vector_floats: int
    ldflags: tuple[str, ...] = ()
    vector_registers: int = 16
    sysroot: str = ""
    run_prefix: tuple[str, ...] = ()
    static: bool = False
    supports_openmp: bool = True
    max_threads: int = 8

    schema = "target"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("Target.name must not be empty")
        if self.arch not in ARCHES:
            raise ConfigError(f"Target.arch must be one of {', '.join(ARCHES)}; got {self.arch!r}")
        if self.isa not in ISAS:
            raise ConfigError(f"Target.isa must be one of {', '.join(ISAS)}; got {self.isa!r}")
        if self.vector_floats not in (1, 2, 4, 8, 16):
            raise ConfigError(
                f"Target.vector_floats must be one of 1, 2, 4, 8, 16; got {self.vector_floats}"
            )
        if self.vector_registers < 8:
            raise ConfigError(f"Target.vector_registers must be >= 8; got {self.vector_registers}")
        if self.max_threads < 1:
            raise ConfigError(f"Target.max_threads must be >= 1; got {self.max_threads}")
        for attr in ("cflags", "ldflags", "run_prefix"):
            object.__setattr__(self, attr, tuple(str(x) for x in getattr(self, attr)))

    @property
    def runs_here(self) -> bool:
        """True when this machine can run the target's executables (natively or emulated)."""
        return bool(self.run_prefix) or self.arch == platform.machine()

    @property
    def can_load_library(self) -> bool:
        """True when the shared library can be loaded into this Python process."""
        return not self.run_prefix and self.arch == platform.machine()

    def compile_flags(self) -> list[str]:
        """cflags plus ``--sysroot`` when one is set."""
        return list(self.cflags) + ([f"--sysroot={self.sysroot}"] if self.sysroot else [])

    @classmethod
    def load(cls, path: str | Path) -> Target:
        """Read a target from a ``.toml`` or ``.json`` file.

        Raises:
            ConfigError: The file is missing, not TOML/JSON, or its fields break a rule.
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"target file {str(p)!r} does not exist; give a .toml or .json file")
        try:
            if p.suffix == ".toml":
                data: dict[str, Any] = tomllib.loads(p.read_text())
            elif p.suffix == ".json":
                data = json.loads(p.read_text())
            else:
                raise ConfigError(f"target file must end in .toml or .json; got {p.name!r}")
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"target file {p.name!r} is not valid {p.suffix[1:]}: {exc}") from None
        try:
            return cls.from_dict(data)
        except TypeError as exc:
            raise ConfigError(f"target file {p.name!r}: {exc}") from None


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def host_target(*, isa: str | None = None) -> Target:
    """This x86-64 machine: AVX-512 when ``/proc/cpuinfo`` lists avx512f, else AVX2+FMA.

    Args:
        isa: Force ``avx512`` or ``avx2`` (e.g. to build AVX2 code on an AVX-512 host).
    """
    flags = _cpu_flags()
    chosen = isa or ("avx512" if "avx512f" in flags else "avx2")
    if chosen not in ("avx512", "avx2"):
        raise ConfigError(f"host isa must be one of avx512, avx2; got {chosen!r}")
    base = ["-O3", "-std=gnu11", "-fno-math-errno", "-ffp-contract=fast", "-mavx2", "-mfma"]
    if chosen == "avx512":
        return Target(
            name="host",
            arch="x86_64",
            cc="gcc",
            cflags=tuple(base + ["-mavx512f", "-mavx512vl", "-mtune=icelake-server"]),
            isa="avx512",
            vector_floats=16,
            vector_registers=32,
            max_threads=os.cpu_count() or 1,
        )
    return Target(
        name="host",
        arch="x86_64",
        cc="gcc",
        cflags=tuple(base + ["-mtune=haswell"]),
        isa="avx2",
        vector_floats=8,
        vector_registers=16,
        max_threads=64,
    )


def aarch64_target() -> Target:
    """Debian's aarch64 cross gcc, NEON, static executables run under qemu-aarch64 here.

    ``-fno-schedule-insns``: GCC 12's scheduling before register allocation (on by default
    for aarch64, off for x86) hoists a kernel's input loads ahead of their FMAs, and the
    7 x 2 tiles (14 accumulators) of 14- and 7-wide layers then spilled 80 to 500 q
    registers per tile function, inside the kernel loops; without it, none.
    """
    return Target(
        name="aarch64",
        arch="aarch64",
        cc="aarch64-linux-gnu-gcc",
        cflags=("-O3", "-std=gnu11", "-fno-math-errno", "-ffp-contract=fast", "-march=armv8-a",
                "-fno-schedule-insns"),
        ldflags=(),
        isa="neon",
        vector_floats=4,
        vector_registers=32,
        run_prefix=("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"),
        static=True,
        max_threads=8,
    )


BUILTIN_TARGETS = ("host", "aarch64")


def get_target(name_or_path: str) -> Target:
    """A built-in target by name, or one loaded from a ``.toml``/``.json`` file.

    Raises:
        ConfigError: Unknown name and no such file.
    """
    if name_or_path == "host":
        return host_target()
    if name_or_path == "aarch64":
        return aarch64_target()
    if name_or_path.endswith((".toml", ".json")):
        return Target.load(name_or_path)
    raise ConfigError(
        f"unknown target {name_or_path!r}; use one of {', '.join(BUILTIN_TARGETS)} "
        "or a .toml/.json target file"
    )
