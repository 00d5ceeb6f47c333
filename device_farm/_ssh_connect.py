"""Opening SSH connections: ssh_config as OpenSSH reads it, ProxyJump chains,
ProxyCommand, host-key checks, trust.

Host keys are checked against a known_hosts file with paramiko's RejectPolicy:
an unknown key is refused with a message naming ``pattune devices trust NAME``
and a changed key is refused with one naming ``--replace``. Nothing here ever
adds a key silently.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from dataclasses import dataclass, field, replace

import paramiko

from device_farm._errors import DeviceFault
from device_farm._ssh_config import expand_proxy_command, lookup, split_jumps

__all__ = ["SSHTarget", "connect", "fetch_host_key", "fingerprint", "record_host_key",
           "recorded_keys"]


def default_known_hosts() -> str:
    """``~/.ssh/known_hosts``."""
    return os.path.join(os.path.expanduser("~"), ".ssh", "known_hosts")


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to log in; ``host`` may be an alias of ``ssh_config``.

    Attributes:
        host: Host name, address or ``Host`` alias in ``ssh_config``.
        port: TCP port (None: from ssh_config, else 22).
        user: Login name (None: from ssh_config, else the local user).
        identity_file: Private key (None: from ssh_config, else the agent/default keys).
        proxy_jump: ``[user@]host[:port]`` or alias of a hub host to tunnel through, or
            a comma-separated chain of them (first hop first), as ``ProxyJump``.
        known_hosts: File of trusted host keys (default ``~/.ssh/known_hosts``).
        ssh_config: ssh_config to read aliases from (default ``~/.ssh/config`` and the
            system's, as ``ssh`` reads them).
        connect_timeout_s: TCP connect timeout; also used for the banner and auth.
        identity_files: After :meth:`resolved`: every key to offer, in order.
        identities_only: After :meth:`resolved`: offer only ``identity_files``.
        proxy_command: After :meth:`resolved`: ssh_config's ``ProxyCommand``, tokens
            expanded, or None.
    """

    host: str
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None
    known_hosts: str = field(default_factory=default_known_hosts)
    ssh_config: str | None = None
    connect_timeout_s: float = 10.0
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    proxy_command: str | None = None

    def resolved(self) -> SSHTarget:
        """Host, port, user, keys, jump hosts and proxy command as OpenSSH resolves them.

        ``ssh -G`` where the client is installed (``Include``, ``Match``, chains, every
        ``IdentityFile``), else ssh_config read by paramiko; what the inventory sets
        explicitly wins, as ``ssh -p/-l/-J/-i`` do (an explicit identity file is the
        only key offered).
        """
        cfg = lookup(self.host, config=self.ssh_config, port=self.port, user=self.user,
                     jump=self.proxy_jump)
        idents: tuple[str, ...]
        if self.identity_file:
            idents, only = (os.path.expanduser(self.identity_file),), True
        else:
            idents, only = cfg.identity_files, cfg.identities_only
        jump = ",".join(cfg.proxy_jump) or None
        command = None if jump or not cfg.proxy_command else expand_proxy_command(
            cfg.proxy_command, host=cfg.hostname, port=cfg.port, user=cfg.user)
        return replace(self, host=cfg.hostname, port=cfg.port, user=cfg.user,
                       identity_files=idents, identities_only=only, proxy_jump=jump,
                       proxy_command=command)

    def jump_chain(self) -> tuple[str, ...]:
        """The jump hosts, first hop first (empty when the connection is direct)."""
        return split_jumps(self.proxy_jump)

    @property
    def host_key_entry(self) -> str:
        """The name known_hosts files it under: ``host`` or ``[host]:port``."""
        port = self.port or 22
        return self.host if port == 22 else f"[{self.host}]:{port}"


#: Jump hosts one connection may go through (a longer chain is a loop in ssh_config).
MAX_HOPS = 8


def parse_jump(spec: str, base: SSHTarget, before: tuple[str, ...] = ()) -> SSHTarget:
    """Parse ``[user@]host[:port]`` (or an alias) into a resolved target sharing base's
    key files; ``before`` are the hops to reach it through (the chain's earlier hops)."""
    user, _, hostport = spec.rpartition("@")
    host, sep, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    return SSHTarget(
        host=host if sep else hostport, port=int(port) if sep else None, user=user or None,
        identity_file=base.identity_file, known_hosts=base.known_hosts,
        ssh_config=base.ssh_config, connect_timeout_s=base.connect_timeout_s,
        proxy_jump=",".join(before) or None,
    ).resolved()


def _open_sock(target: SSHTarget, label: str) -> tuple[socket.socket | paramiko.Channel
                                                      | paramiko.ProxyCommand,
                                                      paramiko.SSHClient | None]:
    port = target.port or 22
    hops = target.jump_chain()
    if hops:
        if label.count("(via jump host") >= MAX_HOPS:
            raise DeviceFault(f"{label}: more than {MAX_HOPS} jump hosts; does a ProxyJump "
                              "in ssh_config lead back to itself?")
        # The last hop is reached through the ones before it, as ssh -J a,b does.
        hub = parse_jump(hops[-1], target, hops[:-1])
        jump_client = connect(hub, label=f"{label} (via jump host {hub.host})")
        transport = jump_client.get_transport()
        assert transport is not None
        try:
            chan = transport.open_channel(
                "direct-tcpip", (target.host, port), ("127.0.0.1", 0),
                timeout=target.connect_timeout_s,
            )
        except (paramiko.SSHException, OSError) as exc:
            jump_client.close()
            raise DeviceFault(
                f"{label}: jump host {hub.host} cannot reach {target.host}:{port}: {exc}"
            ) from exc
        return chan, jump_client
    if target.proxy_command:
        try:
            return paramiko.ProxyCommand(target.proxy_command), None
        except paramiko.SSHException as exc:
            raise DeviceFault(f"{label}: ProxyCommand failed: {exc}") from exc
    try:
        sock = socket.create_connection((target.host, port), timeout=target.connect_timeout_s)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise DeviceFault(f"{label}: cannot connect to {target.host}:{port}: {reason}") from exc
    # Small request/response packets: Nagle plus delayed ACKs would add ~40 ms to each.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock, None


class _UnknownKey(paramiko.SSHException):
    """The server's key is not in known_hosts (carries it, unlike paramiko's RejectPolicy)."""

    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__("host key not found in known_hosts")
        self.key = key


class _Refuse(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise _UnknownKey(key)


def recorded_keys(target: SSHTarget) -> dict[str, paramiko.PKey]:
    """The keys known_hosts holds for the target, by key type (empty when none)."""
    keys = paramiko.HostKeys()
    if os.path.exists(target.known_hosts):
        keys.load(target.known_hosts)
    found = keys.lookup(target.host_key_entry)
    return dict(found) if found is not None else {}


def connect(target: SSHTarget, *, label: str) -> paramiko.SSHClient:
    """Open an authenticated client; every failure is a DeviceFault naming ``label``.

    ``target`` must be :meth:`SSHTarget.resolved`.
    """
    sock, jump = _open_sock(target, label)
    client = paramiko.SSHClient()
    if os.path.exists(target.known_hosts):
        client.load_host_keys(target.known_hosts)
    client.set_missing_host_key_policy(_Refuse())
    idents = list(target.identity_files)
    if not idents and target.identity_file:  # a target that was not resolved
        idents = [os.path.expanduser(target.identity_file)]
    ident = ", ".join(idents) or None
    t = target.connect_timeout_s
    try:
        client.connect(
            target.host, port=target.port or 22, username=target.user,
            key_filename=idents or None, timeout=t, banner_timeout=t, auth_timeout=t,
            channel_timeout=t, sock=sock,  # type: ignore[arg-type]
            allow_agent=not (target.identities_only or target.identity_file),
            look_for_keys=not idents,
        )
    except (paramiko.BadHostKeyException, _UnknownKey) as exc:
        _abandon(client, jump, sock)
        known = recorded_keys(target)
        if known:
            # Another key, or a key of another type than the recorded one(s): a server that
            # now offers only ECDSA where ed25519 was recorded is as suspect as a new key.
            raise DeviceFault(
                f"{label}: host key of {target.host_key_entry} CHANGED (it offers "
                f"{exc.key.get_name()} {fingerprint(exc.key)}; {target.known_hosts} has "
                f"{_listed(known)}); refusing to connect. If the device was reinstalled, "
                f"check the new key and run `pattune devices trust {_name(label)} --replace`"
            ) from None
        raise DeviceFault(
            f"{label}: host key of {target.host_key_entry} is unknown (not in "
            f"{target.known_hosts}); check it and run `pattune devices trust {_name(label)}`"
        ) from None
    except paramiko.AuthenticationException as exc:
        _abandon(client, jump, sock)
        raise DeviceFault(
            f"{label}: authentication failed for {target.user}@{target.host_key_entry}"
            f" with identity {ident or '(agent/default keys)'}: {exc}"
        ) from exc
    except paramiko.SSHException as exc:
        _abandon(client, jump, sock)
        if "not found in known_hosts" in str(exc):
            raise DeviceFault(
                f"{label}: host key of {target.host_key_entry} is unknown (not in "
                f"{target.known_hosts}); check it and run `pattune devices trust {_name(label)}`"
            ) from exc
        raise DeviceFault(f"{label}: ssh error: {exc}") from exc
    except (OSError, EOFError) as exc:
        _abandon(client, jump, sock)
        raise DeviceFault(f"{label}: connection failed during handshake: {exc}") from exc
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(15)
    if jump is not None:
        client._pattune_jump = jump  # type: ignore[attr-defined]  # keep the hub alive with it
    return client


def _abandon(client: paramiko.SSHClient, jump: paramiko.SSHClient | None, sock: object) -> None:
    client.close()
    if jump is not None:
        jump.close()
    close = getattr(sock, "close", None)
    if close:
        close()


def _name(label: str) -> str:
    return label.split(" device ", 1)[-1].split(" ", 1)[0]


def close_client(client: paramiko.SSHClient) -> None:
    """Close a client opened by :func:`connect` and its jump host; a dead link is fine."""
    for c in (client, getattr(client, "_pattune_jump", None)):
        if c is not None:
            try:
                c.close()
            except (EOFError, OSError, paramiko.SSHException):
                pass  # closing a connection whose other end is gone


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def fetch_host_key(target: SSHTarget, *, label: str) -> paramiko.PKey:
    """Do the key exchange only (no auth) and return the server's host key."""
    sock, jump = _open_sock(target, label)
    transport = paramiko.Transport(sock)  # type: ignore[arg-type]
    try:
        transport.start_client(timeout=target.connect_timeout_s)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise DeviceFault(f"{label}: key exchange failed: {exc}") from exc
    finally:
        transport.close()
        if jump is not None:
            jump.close()


def _listed(keys: dict[str, paramiko.PKey]) -> str:
    return ", ".join(f"{kind} {fingerprint(k)}" for kind, k in sorted(keys.items()))


def record_host_key(target: SSHTarget, key: paramiko.PKey, *, replace_changed: bool) -> str:
    """Add ``key`` for the target to its known_hosts; return 'added', 'unchanged' or 'replaced'.

    Any key already recorded for the target, of any type, that is not ``key`` makes
    this a change: refused without ``replace_changed``, and with it every old key
    of the target is removed, so a server cannot get a new key trusted by offering
    another key type than the recorded one.

    Raises:
        ValueError: Another key is recorded and ``replace_changed`` is false.
    """
    entry = target.host_key_entry
    old = recorded_keys(target)
    if old.get(key.get_name()) == key:
        return "unchanged"
    if old and not replace_changed:
        raise ValueError(
            f"{target.known_hosts} has another key for {entry} ({_listed(old)}); the device "
            f"offers {key.get_name()} {fingerprint(key)}. Check it on the device and pass "
            "--replace to trust it instead"
        )
    os.makedirs(os.path.dirname(os.path.abspath(target.known_hosts)), exist_ok=True)
    lines = _without(target.known_hosts, entry) if old else _lines(target.known_hosts)
    lines.append(f"{entry} {key.get_name()} {key.get_base64()}\n")
    tmp = f"{target.known_hosts}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.writelines(lines)
    os.replace(tmp, target.known_hosts)
    return "replaced" if old else "added"


def _lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        out = fh.readlines()
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    return out


def _names_entry(name: str, entry: str) -> bool:
    if name.startswith("|1|"):  # a hashed name: HashKnownHosts yes
        salt = name.split("|")[2] if name.count("|") >= 3 else ""
        return paramiko.HostKeys.hash_host(entry, salt) == name
    return name == entry


def _without(path: str, entry: str) -> list[str]:
    """known_hosts' lines with ``entry`` taken out of every plain key line."""
    out = []
    for line in _lines(path):
        fields = line.split()
        if not fields or fields[0].startswith(("#", "@")):
            out.append(line)  # comments, @cert-authority and @revoked lines stay
            continue
        names = [n for n in fields[0].split(",") if not _names_entry(n, entry)]
        if names:
            out.append(" ".join([",".join(names), *fields[1:]]) + "\n")
    return out
