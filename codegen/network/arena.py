"""One arena for every activation and scratch buffer, planned at build time.

Each buffer lives from the op that writes it to the last op that reads it (op indices,
inclusive: an op's inputs and its output are live together, so no op ever writes over
what it reads). :func:`plan_arena` places buffers greedily by size, largest first, each
at the best-fitting gap among the buffers already placed whose lifetimes overlap its own
(TFLite's "greedy by size" planner); buffers whose lifetimes do not overlap share memory.
Offsets are in floats, 64-byte aligned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codegen.network.graph import Graph
from pattune_common import Record

#: Offsets and sizes are multiples of this many floats (64 bytes).
ALIGN_FLOATS = 16


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class Buffer(Record):
    """One region the arena must hold.

    Attributes:
        name: Tensor name, or ``scratch:<op>`` for an op's scratch space.
        floats: Size in floats.
        first: Index of the op that writes it first (-1: the input, copied in before op 0).
        last: Index of the op that reads it last (``len(ops)``: the output, copied out after).
    """

    name: str
    floats: int
    first: int
    last: int

    schema = "arena_buffer"

    def __post_init__(self) -> None:
        if self.floats < 0 or self.last < self.first:
            raise ValueError(f"buffer {self.name!r}: need floats >= 0 and last >= first; "
                             f"got {self.floats}, [{self.first}, {self.last}]")

    def overlaps(self, other: Buffer) -> bool:
        """True when both are live at some op."""
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class ArenaPlan(Record):
    """Where each buffer lives.

    Attributes:
        buffers: The planned buffers, in the order given.
        offsets: Float offset of each buffer, same order.
        floats: Arena size in floats.
        aliases: Tensor name -> the buffer it shares (flatten: same memory, new shape).
    """

    buffers: tuple[Buffer, ...]
    offsets: tuple[int, ...]
    floats: int
    aliases: tuple[tuple[str, str], ...] = ()

    schema = "arena_plan"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArenaPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(buffers=tuple(Buffer.from_dict(b) for b in data["buffers"]),
                   offsets=tuple(data["offsets"]), floats=int(data["floats"]),
                   aliases=tuple((str(a), str(b)) for a, b in data.get("aliases", ())))

    @property
    def bytes(self) -> int:
        """Arena size in bytes."""
        return self.floats * 4

    def offset(self, name: str) -> int:
        """Float offset of buffer (or aliased tensor) ``name``."""
        target = dict(self.aliases).get(name, name)
        for b, off in zip(self.buffers, self.offsets, strict=True):
            if b.name == target:
                return off
        raise KeyError(f"no buffer named {name!r} in the arena")

    def overlapping_live_pairs(self) -> list[tuple[str, str]]:
        """Pairs of buffers live at one op whose memory intersects (empty when the plan is sound)."""
        out = []
        items = list(zip(self.buffers, self.offsets, strict=True))
        for i, (a, oa) in enumerate(items):
            for b, ob in items[i + 1:]:
                if a.floats and b.floats and a.overlaps(b) and oa < ob + b.floats \
                        and ob < oa + a.floats:
                    out.append((a.name, b.name))
        return out


def plan_arena(buffers: Sequence[Buffer], *,
               aliases: Mapping[str, str] | None = None) -> ArenaPlan:
    """Place ``buffers`` in one arena (greedy by size, best fit; see module docstring).

    Raises:
        ValueError: Two buffers share a name.
    """
    names = [b.name for b in buffers]
    if len(set(names)) != len(names):
        raise ValueError("arena buffers must have unique names")
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].floats, buffers[i].first, i))
    placed: list[tuple[int, int, Buffer]] = []  # (offset, size, buffer)
    offsets = [0] * len(buffers)
    for i in order:
        b = buffers[i]
        size = _round_up(b.floats, ALIGN_FLOATS)
        live = sorted((o, s) for o, s, p in placed if p.overlaps(b))
        best, best_gap, end = -1, -1, 0
        for o, s in live:
            gap = o - end
            if gap >= size and (best_gap < 0 or gap < best_gap):
                best, best_gap = end, gap
            end = max(end, o + s)
        off = best if best >= 0 else end
        placed.append((off, size, b))
        offsets[i] = off
    total = max((o + s for o, s, _ in placed), default=0)
    return ArenaPlan(buffers=tuple(buffers), offsets=tuple(offsets), floats=total,
                     aliases=tuple(sorted((aliases or {}).items())))


def network_buffers(graph: Graph, scratch: Mapping[str, int],
                    handed_off: frozenset[str] = frozenset(),
                    padded: Mapping[str, tuple[int, bool]] | None = None,
                    ) -> tuple[list[Buffer], dict[str, str]]:
    """The buffers of ``graph``: the input, each op's output, scratch and padded input,
    with lifetimes.

    Args:
        graph: The network.
        scratch: Floats of scratch per op name (ops without scratch may be left out).
        handed_off: Tensors that live in their reader's padded input buffer (a pattern
            layer's handoff): they take no space of their own.
        padded: Per pattern op name, ``(floats, filled by the op before)``: its padded
            input buffer ``input:<op>``, live at the op (and at the op before, which
            stores its output there, when filled by it).

    Returns:
        The buffers and the aliases (a flatten's output -> the buffer it shares).
    """
    n = len(graph.ops)
    alias: dict[str, str] = {}
    first: dict[str, int] = {graph.input: -1}
    size: dict[str, int] = {graph.input: _elems(graph.input_shape)}
    last: dict[str, int] = {graph.input: -1}

    def root(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    for i, op in enumerate(graph.ops):
        for t in op.inputs:
            last[root(t)] = max(last[root(t)], i)
        if op.aliases_input:
            alias[op.output] = root(op.inputs[0])
            continue
        first[op.output], last[op.output] = i, i
        size[op.output] = 0 if op.output in handed_off else op.out_elems
    out = root(graph.output)
    last[out] = n
    bufs = [Buffer(t, size[t], first[t], last[t]) for t in first]
    bufs += [Buffer(f"scratch:{op.name}", scratch[op.name], i, i)
             for i, op in enumerate(graph.ops) if scratch.get(op.name)]
    pads = padded or {}
    bufs += [Buffer(f"input:{op.name}", pads[op.name][0], i - 1 if pads[op.name][1] else i, i)
             for i, op in enumerate(graph.ops) if op.name in pads]
    return bufs, alias


def _elems(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


__all__ = ["ALIGN_FLOATS", "ArenaPlan", "Buffer", "network_buffers", "plan_arena"]
