"""Who holds a claim or a lease, and whether that holder can still be alive.

An owner is named ``host:pid:random``: the host and process that hold the row,
plus a random part so two objects of one process (or a pid reused after a
restart) never share a name. Names given by hand (``"a"``, ``"crasher"``) are
allowed; they are simply never found dead by :func:`owner_is_dead`.

Liveness is decided only where it is certain: a holder on *this* host whose
process no longer exists is dead. A holder on another host, or one whose pid
exists but belongs to another user, counts as alive; the claim's or lease's
expiry (seconds, on the database's clock or its heartbeat) frees it instead.
Every function is thread-safe.
"""

from __future__ import annotations

import os
import socket
import uuid


def this_host() -> str:
    """The host name owners of this machine carry."""
    return socket.gethostname()


def new_owner() -> str:
    """A fresh owner name for this process: ``host:pid:random``."""
    return f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_gone(host: str, pid: int) -> bool:
    """Whether ``pid`` on ``host`` is certainly dead: the host is this one and no such process exists.

    Args:
        host: Host name as :func:`this_host` gives it.
        pid: Process id on that host; ids below 1 name no single process and
            are never reported dead.
    """
    if host != this_host() or pid < 1:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    return False


def owner_is_dead(owner: str) -> bool:
    """Whether a ``host:pid:random`` owner names a process of this host that no longer exists."""
    parts = owner.split(":")
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    return process_gone(parts[0], int(parts[1]))
