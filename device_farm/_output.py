"""Bounded capture of a program's output: its head and its tail, never all of it.

A program may write gigabytes; the protocol needs its first lines (to see what
went wrong) and its last JSON line (the report). :class:`OutputCap` keeps the
first ``head`` bytes and the last ``tail`` bytes and counts what it dropped in
between, so a report after megabytes of output still arrives and a message can
say the output was cut.
"""

from __future__ import annotations

__all__ = ["STDOUT_TAIL", "OutputCap"]

#: Bytes kept from the end of stdout when it is over the limit: room for the report.
STDOUT_TAIL = 64 * 1024


class OutputCap:
    """Keeps a stream's first ``head`` and last ``tail`` bytes.

    Args:
        head: Bytes kept from the start.
        tail: Bytes kept from the end (after the head).
    """

    def __init__(self, *, head: int, tail: int) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        """Take the next chunk of the stream."""
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_limit:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit:  # trim now and then, not per chunk
                del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def cut(self) -> int:
        """Bytes dropped between the head and the tail."""
        return self.total - len(self.head) - min(len(self.tail), self.tail_limit)

    def value(self) -> bytes:
        """The head, then (if anything was dropped) a newline and the tail."""
        tail = bytes(self.tail[-self.tail_limit:]) if self.tail_limit else b""
        # The newline keeps a line cut at the head's end from joining the tail's first line.
        return bytes(self.head) + (b"\n" if self.cut else b"") + tail

    @classmethod
    def of(cls, data: bytes, *, head: int, tail: int) -> OutputCap:
        """A cap that has taken all of ``data``."""
        cap = cls(head=head, tail=tail)
        cap.add(data)
        return cap
