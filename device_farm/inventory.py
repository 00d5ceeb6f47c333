"""The device inventory: a TOML file listing SSH devices (``examples/devices.toml``).

Without a file the inventory holds only the built-in ``local`` device. Every
problem with the file is a :class:`UserInputError` naming the file, the device
and the fix, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from device_farm._base import Device
from device_farm._checks import check_env, check_number
from device_farm._protocol import ProtocolConfig
from device_farm._ssh_connect import SSHTarget, default_known_hosts
from device_farm.local import LocalDevice
from device_farm.ssh import SSHDevice, validate_work_dir
from pattune_common import UserInputError
from pattune_common.files import read_input

__all__ = ["DeviceSpec", "Inventory", "load_inventory"]

ARCHES = ("x86_64", "aarch64", "armv7l", "riscv64")
BUILD_PLACES = ("host", "device")
# Every rule is matched whole (fullmatch): "dev1\n" is not a name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Host names, addresses ([::1] too) and ssh_config aliases; never an option ("-o...").
_HOST = re.compile(r"[A-Za-z0-9_\[:][A-Za-z0-9_.:%\[\]-]{0,253}")  # ::1 and [::1] too
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}")
_HOP = r"(?:[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}@)?" + _HOST.pattern
_JUMP = re.compile(f"{_HOP}(?:,{_HOP}){{0,7}}")  # a chain, first hop first, as ProxyJump
# A command name or an absolute path, passed to the device as one argument.
_COMPILER = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_.+/-]{0,127}")
_RULES = {
    "type": (_NAME, "1-64 letters, digits and ._- starting with a letter or digit"),
    "host": (_HOST, "a host name, address or ssh_config alias (letters, digits, ._:%[]-, "
                    "not starting with '-')"),
    "user": (_USER, "a login name (letters, digits, ._@-, not starting with '-')"),
    "proxy_jump": (_JUMP, "[user@]host[:port] or an ssh_config alias, or a comma-separated "
                          "chain of up to 8 of them"),
    "compiler": (_COMPILER, "a command name or absolute path (letters, digits, ._+/-)"),
}
_DEVICE_KEYS = {
    "name", "host", "port", "user", "identity_file", "proxy_jump", "arch", "type", "threads",
    "cpu_affinity", "work_dir", "build", "compiler", "env", "known_hosts", "connect_timeout_s",
}


@dataclass(frozen=True)
class DeviceSpec:
    """One ``[[device]]`` entry, validated. See ``docs/device_farm.md`` for each key."""

    name: str
    device_type: str
    host: str
    work_dir: str
    arch: str = "aarch64"
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None
    threads: int = 0
    cpu_affinity: tuple[int, ...] = ()
    build: str = "host"
    compiler: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    known_hosts: str = field(default_factory=default_known_hosts)
    ssh_config: str | None = None
    connect_timeout_s: float = 10.0

    def target(self) -> SSHTarget:
        """The SSH login this device uses (not yet resolved against ssh_config)."""
        return SSHTarget(
            host=self.host, port=self.port, user=self.user, identity_file=self.identity_file,
            proxy_jump=self.proxy_jump, known_hosts=self.known_hosts,
            ssh_config=self.ssh_config, connect_timeout_s=self.connect_timeout_s,
        )

    def make(self, protocol: ProtocolConfig | None = None) -> SSHDevice:
        """Build the :class:`SSHDevice` (it connects on first use)."""
        return SSHDevice(
            name=self.name, device_type=self.device_type, target=self.target(),
            work_dir=self.work_dir, arch=self.arch, threads=self.threads,
            cpu_affinity=self.cpu_affinity, env=self.env, compiler=self.compiler,
            build=self.build, protocol=protocol,
        )


@dataclass(frozen=True)
class Inventory:
    """The devices of one inventory file (or only ``local`` without one)."""

    devices: tuple[DeviceSpec, ...]
    path: str | None = None

    def names(self) -> list[str]:
        """Every device name, ``local`` first."""
        return ["local", *(d.name for d in self.devices)]

    def types(self) -> list[str]:
        """Every device type, sorted."""
        return sorted({"local", *(d.device_type for d in self.devices)})

    def spec(self, name: str) -> DeviceSpec:
        """The entry called ``name``."""
        for d in self.devices:
            if d.name == name:
                return d
        raise UserInputError(
            f"no device {name!r} in {self.path or 'the inventory'}; known: {', '.join(self.names())}"
        )

    def make(self, name: str, protocol: ProtocolConfig | None = None) -> Device:
        """Build the device called ``name`` (``local`` is built in)."""
        if name == "local":
            return LocalDevice(protocol=protocol)
        return self.spec(name).make(protocol)

    def of_type(self, device_type: str, protocol: ProtocolConfig | None = None) -> list[Device]:
        """Build every device of ``device_type``; raise naming the known types if none."""
        if device_type == "local":
            return [LocalDevice(protocol=protocol)]
        found: list[Device] = [d.make(protocol) for d in self.devices
                               if d.device_type == device_type]
        if not found:
            raise UserInputError(
                f"no device of type {device_type!r} in {self.path or 'the inventory'}; "
                f"known types: {', '.join(self.types())}"
            )
        return found


def _check_type(path: str, where: str, key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        names = "a string" if kind is str else "an integer" if kind is int else "a number"
        raise UserInputError(f"{path}: {where}: {key} must be {names}; got {value!r}")
    if isinstance(value, str) and "\x00" in value:
        raise UserInputError(f"{path}: {where}: {key} must not contain NUL characters")


def _spec(path: str, i: int, raw: Any, defaults: dict[str, Any]) -> DeviceSpec:
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: device #{i + 1} must be a [[device]] table; got {raw!r}")
    where = f"device #{i + 1}" + (f" ({raw['name']!r})" if isinstance(raw.get("name"), str) else "")
    unknown = set(raw) - _DEVICE_KEYS
    if unknown:
        raise UserInputError(
            f"{path}: {where}: unknown keys {sorted(unknown)}; allowed: {', '.join(sorted(_DEVICE_KEYS))}"
        )
    for key in ("name", "host", "type", "work_dir"):
        if key not in raw:
            raise UserInputError(f"{path}: {where}: missing required key {key!r}")
    merged = {**defaults, **raw}
    for key in ("name", "host", "type", "work_dir", "arch", "build", "compiler"):
        if key in merged:
            _check_type(path, where, key, merged[key], str)
    for key in ("user", "identity_file", "proxy_jump", "known_hosts", "ssh_config"):
        if merged.get(key) is not None:
            _check_type(path, where, key, merged[key], str)
    if not _NAME.fullmatch(raw["name"]) or raw["name"] == "local":
        raise UserInputError(f"{path}: {where}: name must be 1-64 letters, digits and ._- "
                             f"starting with a letter or digit, and not 'local' (built in); "
                             f"got {raw['name']!r}")
    for key, (rule, words) in _RULES.items():
        value = merged.get(key)
        if value is not None and not (key == "compiler" and value == "") and (
                not rule.fullmatch(value)):
            raise UserInputError(f"{path}: {where}: {key} must be {words}; got {value!r}")
    if merged.get("arch", "aarch64") not in ARCHES:
        raise UserInputError(f"{path}: {where}: arch must be one of {', '.join(ARCHES)}; "
                             f"got {merged['arch']!r}")
    if merged.get("build", "host") not in BUILD_PLACES:
        raise UserInputError(f"{path}: {where}: build must be one of {', '.join(BUILD_PLACES)}; "
                             f"got {merged['build']!r}")
    port = merged.get("port")
    aff = merged.get("cpu_affinity", [])
    env = merged.get("env", {})
    try:
        if port is not None:
            check_number("port", port, low=1, high=65535, integer=True)
        threads = int(check_number("threads", merged.get("threads", 0), low=0, high=1024,
                                   integer=True))
        if not isinstance(aff, list):
            raise ValueError(f"cpu_affinity must be a list of CPU numbers; got {aff!r}")
        for c in aff:
            check_number("cpu_affinity", c, low=0, high=4095, integer=True)
        if not isinstance(env, dict):
            raise ValueError(f"env must be a table of names to strings; got {env!r}")
        env_pairs = check_env("env", env)
        work_dir = validate_work_dir(merged["work_dir"])
        timeout = check_number("connect_timeout_s", merged.get("connect_timeout_s", 10.0),
                               low=0, low_open=True, high=600)
    except ValueError as exc:
        raise UserInputError(f"{path}: {where}: {exc}") from None
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: str | None) -> str | None:
        return None if p is None else os.path.join(base, os.path.expanduser(p))

    return DeviceSpec(
        name=raw["name"], device_type=merged["type"], host=merged["host"], work_dir=work_dir,
        arch=merged.get("arch", "aarch64"), port=port, user=merged.get("user"),
        identity_file=rel(merged.get("identity_file")), proxy_jump=merged.get("proxy_jump"),
        threads=threads, cpu_affinity=tuple(aff), build=merged.get("build", "host"),
        compiler=merged.get("compiler", ""), env=dict(env_pairs),
        known_hosts=rel(merged.get("known_hosts")) or default_known_hosts(),
        ssh_config=rel(defaults.get("ssh_config")), connect_timeout_s=float(timeout),
    )


def load_inventory(path: str | os.PathLike[str] | None) -> Inventory:
    """Read and validate an inventory file; ``None`` gives the ``local``-only inventory.

    Relative ``identity_file``, ``known_hosts`` and ``ssh_config`` paths are taken
    relative to the file. A ``[defaults]`` table supplies any device key (plus
    ``ssh_config``) for every device.
    """
    if path is None:
        return Inventory(devices=())
    path = os.fspath(path)
    try:
        data = tomllib.loads(read_input(path, "inventory", max_bytes=16 << 20).decode())
    except FileNotFoundError:
        raise UserInputError(f"inventory {path} does not exist; pass --inventory with a TOML "
                             "file like examples/devices.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"inventory {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UserInputError(f"inventory {path} cannot be read: {exc.strerror}") from None
    unknown = set(data) - {"device", "defaults"}
    if unknown:
        raise UserInputError(f"{path}: unknown top-level keys {sorted(unknown)}; "
                             "allowed: [defaults], [[device]]")
    defaults = data.get("defaults", {})
    allowed = (_DEVICE_KEYS - {"name", "host"}) | {"ssh_config"}
    if not isinstance(defaults, dict) or set(defaults) - allowed:
        bad = sorted(set(defaults) - allowed) if isinstance(defaults, dict) else defaults
        raise UserInputError(f"{path}: [defaults] has unknown keys {bad}; allowed: "
                             f"{', '.join(sorted(allowed))}")
    raw = data.get("device", [])
    if isinstance(raw, dict):  # [device] instead of [[device]]
        raise UserInputError(f"{path}: [device] must be [[device]] (one table per device)")
    if not isinstance(raw, list) or not raw:
        raise UserInputError(f"inventory {path} lists no devices; add [[device]] tables "
                             "(see examples/devices.toml)")
    specs = [_spec(path, i, d, defaults) for i, d in enumerate(raw)]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserInputError(f"{path}: device names must be unique; repeated: {', '.join(dup)}")
    return Inventory(devices=tuple(specs), path=path)
