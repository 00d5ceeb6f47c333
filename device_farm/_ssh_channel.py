"""Channels on a paramiko transport: start a command without waiting, read it under a deadline.

paramiko's ``exec_command`` waits for the server's reply before it returns, and
only then can a command's stdin be sent: one network round trip per command
spent waiting. :func:`start` sends the ``exec`` request, the stdin data and
its end in one go; the reply is checked while the output is read
(:func:`collect`), which gives up on a server that does not answer within the
connect timeout, as the old watchdog did.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from device_farm._output import STDOUT_TAIL, OutputCap

__all__ = ["Collected", "NoReply", "collect", "start"]

#: Bytes of stderr's start kept apart: the wrapper's first lines are there.
HEAD_BYTES = 4096


class NoReply(Exception):
    """The server did not answer the ``exec`` request in time (a frozen session)."""


def start(chan: paramiko.Channel, command: str, stdin: bytes | None, *,
          send_timeout_s: float) -> float:
    """Send ``exec command``, then ``stdin`` and its end, without waiting for replies.

    Returns the monotonic time the request was sent (for the reply deadline).
    """
    try:
        # What exec_command sends, less its wait: the reply is checked in collect().
        m = Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("exec")
        m.add_boolean(True)
        m.add_string(command)
        chan._event_pending()
        sent = time.monotonic()
        chan.transport._send_user_message(m)  # type: ignore[union-attr]
    except AttributeError:  # a paramiko without these internals: the waiting call
        sent = time.monotonic()
        chan.exec_command(command)
    if stdin:
        # Blocks only while the server's window is full; a dead link raises instead of
        # hanging because the channel has a timeout while sending.
        chan.settimeout(send_timeout_s)
        chan.sendall(stdin)
        chan.settimeout(None)
    chan.shutdown_write()
    return sent


@dataclass
class Collected:
    """What a command left: its exit code (None: it did not end), output, stderr's head."""

    code: int | None
    out: OutputCap
    err: OutputCap
    head: bytes
    timed_out: bool = False


def collect(chan: paramiko.Channel, *, sent: float, deadline: float, reply_timeout_s: float,
            max_output: int, lost: Callable[[bytes], Exception]) -> Collected:
    """Read stdout and stderr concurrently until the command exits or ``deadline`` passes.

    Raises:
        NoReply: The ``exec`` was not answered within ``reply_timeout_s``.
        Exception: ``lost(head)`` when the channel or connection died mid-command.
    """
    out = OutputCap(head=max_output - STDOUT_TAIL, tail=STDOUT_TAIL)
    # stderr keeps its tail (room for the wrapper's trailer); its head separately
    err = OutputCap(head=0, tail=max_output + 128)
    head = bytearray()
    while True:
        while chan.recv_ready():
            out.add(chan.recv(1 << 16))
        while chan.recv_stderr_ready():
            chunk = chan.recv_stderr(1 << 16)
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            err.add(chunk)
        if chan.exit_status_ready() and not chan.recv_ready() and not (
            chan.recv_stderr_ready()
        ) and (chan.eof_received or chan.closed):
            break
        now = time.monotonic()
        if not chan.event.is_set() and now - sent > reply_timeout_s:
            raise NoReply
        if deadline - now <= 0:
            return Collected(None, out, err, bytes(head), timed_out=True)
        transport = chan.get_transport()
        if chan.closed and not chan.exit_status_ready() or not (
            transport and transport.is_active()
        ):
            raise lost(bytes(head))
        wait = min(deadline - now, 0.25)
        if chan.eof_received:
            # Output is over (the pipe behind fileno stays readable now, so select
            # would spin); wait for the exit status itself.
            chan.status_event.wait(wait)
        else:
            select.select([chan], [], [], wait)
    code = chan.exit_status  # set: the loop above left only once it was ready
    transport = chan.get_transport()
    if code == -1 and not (transport and transport.is_active()):
        # paramiko reports -1 when the channel closed without an exit status
        raise lost(bytes(head))
    return Collected(code, out, err, bytes(head))
