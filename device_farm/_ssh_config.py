"""Resolving an SSH host the way OpenSSH does: ``ssh -G``, or ssh_config read here.

Where the OpenSSH client is installed, ``ssh -G`` prints the configuration ``ssh``
itself would use for a host: ``Host``/``Match`` blocks, ``Include``d files,
``ProxyJump`` chains, every ``IdentityFile``, ``ProxyCommand``, the system-wide
config, first value wins. Without the client, paramiko's ssh_config parser is the
fallback: ``Host`` blocks, several ``IdentityFile``\\ s, ``ProxyJump`` chains and
``ProxyCommand`` are read; ``Include`` and ``Match exec`` are not (the message of a
failed connection says so).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import paramiko

from device_farm._errors import DeviceFault

__all__ = ["HostConfig", "expand_proxy_command", "lookup", "split_jumps"]

_SSH_G_TIMEOUT_S = 10.0
#: The user's ssh_config, which may be absent (ssh then reads only the system's).
_DEFAULT_CONFIG = os.path.join(os.path.expanduser("~"), ".ssh", "config")


@dataclass(frozen=True)
class HostConfig:
    """What OpenSSH would use to reach one host.

    Attributes:
        hostname: The real host name or address (``HostName``, else the alias).
        port: TCP port.
        user: Login name.
        identity_files: Private keys to offer, in order (those that exist).
        identities_only: Offer only ``identity_files``, not the agent's keys.
        proxy_jump: Hops to tunnel through, first hop first (``ProxyJump a,b``).
        proxy_command: Command whose stdin/stdout is the connection (``%h``, ``%p``,
            ``%r`` not yet expanded), or None.
        source: ``ssh -G`` or ``paramiko`` (the fallback).
    """

    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    identities_only: bool
    proxy_jump: tuple[str, ...]
    proxy_command: str | None
    source: str


def split_jumps(spec: str | None) -> tuple[str, ...]:
    """``"a,u@b:2222"`` -> ``("a", "u@b:2222")``; ``none`` or empty -> ``()``."""
    if not spec or spec.strip().lower() == "none":
        return ()
    return tuple(h.strip() for h in spec.split(",") if h.strip())


def expand_proxy_command(command: str, *, host: str, port: int, user: str) -> str:
    """ssh_config's tokens in a ProxyCommand: ``%h``, ``%p``, ``%r``, ``%n``, ``%%``."""
    out, i = [], 0
    while i < len(command):
        c = command[i]
        if c == "%" and i + 1 < len(command):
            token = command[i + 1]
            out.append({"h": host, "p": str(port), "r": user, "n": host, "%": "%"}.get(
                token, c + token))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _local_user() -> str:
    import getpass

    return getpass.getuser()


def _existing(paths: list[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for p in paths:
        full = os.path.expanduser(p)
        if os.path.isfile(full) and full not in seen:
            seen.append(full)
    return tuple(seen)


def _ssh_g(host: str, *, config: str | None, port: int | None, user: str | None,
           jump: str | None) -> HostConfig:
    ssh = shutil.which("ssh")
    assert ssh is not None
    argv = [ssh, "-G"]
    if config:
        argv += ["-F", config]
    if port:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", user]
    if jump:
        argv += ["-o", f"ProxyJump={jump}"]
    argv += ["--", host]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=_SSH_G_TIMEOUT_S,
                           stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceFault(f"ssh -G {host}: {exc}") from exc
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[0]
        raise DeviceFault(f"ssh -G {host} (resolving the ssh_config): {why}")
    values: dict[str, list[str]] = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key.lower(), []).append(value)

    def one(key: str, default: str = "") -> str:
        return values.get(key, [default])[0]

    command = one("proxycommand", "none")
    return HostConfig(
        hostname=one("hostname", host), port=int(one("port", "22")),
        user=one("user") or _local_user(),
        identity_files=_existing(values.get("identityfile", [])),
        identities_only=one("identitiesonly", "no") == "yes",
        proxy_jump=split_jumps(one("proxyjump", "none")),
        proxy_command=None if command.lower() == "none" else command, source="ssh -G",
    )  # fmt: skip


def _paramiko(host: str, *, config: str | None, port: int | None, user: str | None,
              jump: str | None) -> HostConfig:
    path = config or os.path.join(os.path.expanduser("~"), ".ssh", "config")
    cfg: dict[str, object] = {}
    if os.path.exists(path):
        try:
            cfg = dict(paramiko.SSHConfig.from_path(path).lookup(host))
        except Exception as exc:  # noqa: BLE001 - paramiko raises several kinds
            raise DeviceFault(f"ssh_config {path}: {exc}") from exc
    idents = cfg.get("identityfile")
    command = cfg.get("proxycommand")
    return HostConfig(
        hostname=str(cfg.get("hostname", host)), port=port or int(str(cfg.get("port", 22))),
        user=user or str(cfg.get("user") or _local_user()),
        identity_files=_existing([str(i) for i in idents] if isinstance(idents, list) else []),
        identities_only=str(cfg.get("identitiesonly", "no")).lower() == "yes",
        proxy_jump=split_jumps(jump or str(cfg.get("proxyjump") or "")),
        proxy_command=None if not command or str(command).lower() == "none" else str(command),
        source="paramiko",
    )  # fmt: skip


def lookup(host: str, *, config: str | None = None, port: int | None = None,
           user: str | None = None, jump: str | None = None) -> HostConfig:
    """Resolve ``host`` (an alias, name or address) as OpenSSH would.

    Args:
        host: What the inventory names.
        config: ssh_config file (``-F``); None: ``~/.ssh/config`` and the system's.
        port, user, jump: Set in the inventory: they win over the config, as ``ssh -p``,
            ``-l`` and ``-J`` do.

    Raises:
        DeviceFault: ``ssh -G`` refused the config (a syntax error, a missing Include).
    """
    if config and not os.path.exists(config):
        if os.path.abspath(config) != _DEFAULT_CONFIG:
            raise DeviceFault(f"ssh_config {config} does not exist; fix ssh_config in the "
                              "inventory or remove it")
        config = None  # the usual ~/.ssh/config, absent: ssh's defaults, as ssh itself does
    if shutil.which("ssh"):
        return _ssh_g(host, config=config, port=port, user=user, jump=jump)
    return _paramiko(host, config=config, port=port, user=user, jump=jump)
