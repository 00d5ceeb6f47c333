"""Weight formats and work schedules: FKW, dense (FKW off), CSR; FKR; thread mapping.

FKW (PatDNN's *filter kernel weight* format): for each filter, in processing
order, its alive kernels sorted by (input-channel block, pattern, channel); each
kernel stores one uint16 input-channel index and its ``n`` tap weights; per
filter a table of uint16 offsets (relative to the filter's first kernel) marks
where each (block, pattern) run starts. The generated code walks one run per
pattern with the taps as compile-time constants.

All arrays go into one little-endian blob (:func:`blob`) that both the shared
library and the standalone executable read; the generated code checks the
array sizes it was generated for.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from codegen.config import KernelConfig
from search_spaces.layers import PrunedLayer

MAGIC = b"PTWBLOB1"
ALIGN = 64


@dataclass(frozen=True)
class Packed:
    """Weights laid out for one generated kernel.

    Attributes:
        arrays: Named arrays in blob order.
        order: Processing position -> original filter index (FKR permutation).
        used_patterns: Pattern-set indices present in the layer, in code order.
        format_bytes: Bytes of the weight format proper (weights, indices, offsets,
            permutation; no bias, no alignment padding).
    """

    arrays: tuple[tuple[str, np.ndarray], ...]
    order: np.ndarray
    used_patterns: tuple[int, ...]
    format_bytes: int


def used_patterns(layer: PrunedLayer) -> tuple[int, ...]:
    """Pattern ids with at least one alive kernel, ascending."""
    return tuple(int(p) for p in np.flatnonzero(layer.pattern_histogram()))


def filter_order(layer: PrunedLayer, fkr: bool) -> np.ndarray:
    """FKR: filters sorted by alive-kernel count (descending), then pattern histogram.

    Similar filters end up next to each other, so a group of ``oc_block`` filters
    has similar loop trip counts and groups have similar work (thread balance).
    Without FKR the natural order is kept.
    """
    cout = layer.spec.cout
    if not fkr:
        return np.arange(cout, dtype=np.int32)
    k = len(layer.pattern_set)
    onehot = np.zeros((cout, layer.alive.shape[1], k), dtype=np.int64)
    f, c = np.nonzero(layer.alive)
    onehot[f, c, layer.pattern_ids[f, c].astype(np.int64)] = 1
    hist = onehot.sum(axis=1)
    counts = layer.alive.sum(axis=1)
    # lexsort: last key is primary -> kernel count (desc), then histogram (desc), then index.
    keys = [np.arange(cout)] + [-hist[:, p] for p in range(k - 1, -1, -1)] + [-counts]
    return np.lexsort(keys).astype(np.int32)


def block_bounds(cin_pg: int, ic_block: int) -> list[tuple[int, int]]:
    """(start, end) of each input-channel block."""
    return [(c, min(c + ic_block, cin_pg)) for c in range(0, cin_pg, ic_block)]


def _bias(layer: PrunedLayer) -> np.ndarray:
    if layer.bias is None:
        return np.zeros(layer.spec.cout, dtype=np.float32)
    return np.asarray(layer.bias, dtype=np.float32)


def pack(layer: PrunedLayer, cfg: KernelConfig, plane_offsets: dict[int, int] | None = None
         ) -> Packed:
    """Lay out ``layer``'s weights in ``cfg.format`` and filter order.

    Args:
        layer: The pruned layer.
        cfg: The kernel config (format, fkr, ic_block are used).
        plane_offsets: For ``csr``: flat tap index -> offset in floats from the
            channel's base in the padded input (the generator's layout).
    """
    order = filter_order(layer, cfg.fkr)
    used = used_patterns(layer)
    if cfg.format == "fkw":
        return _pack_fkw(layer, cfg, order, used)
    if cfg.format == "dense":
        return _pack_dense(layer, order, used)
    if plane_offsets is None:
        raise ValueError("pack: format 'csr' needs plane_offsets from the generator layout")
    return _pack_csr(layer, cfg, order, used, plane_offsets)


def _pack_fkw(layer: PrunedLayer, cfg: KernelConfig, order: np.ndarray, used: tuple[int, ...]
              ) -> Packed:
    s = layer.spec
    cin_pg, cout_pg = s.cin_per_group, s.cout // s.groups
    nb = -(-cin_pg // cfg.ic_block)
    k_used = max(len(used), 1)
    slot_of = np.zeros(len(layer.pattern_set), dtype=np.int64)
    slot_of[list(used)] = np.arange(len(used))
    n_taps = layer.pattern_set[used[0]].n if used else 1
    taps = np.array([list(p.taps) if p.n == n_taps else [0] * n_taps
                     for p in layer.pattern_set], dtype=np.int64)
    pos_of = np.empty(s.cout, dtype=np.int64)
    pos_of[order] = np.arange(s.cout)
    f, c = np.nonzero(layer.alive)
    pid = layer.pattern_ids[f, c].astype(np.int64)
    pos, blk, slot = pos_of[f], c // cfg.ic_block, slot_of[pid]
    run = (pos * nb + blk) * k_used + slot  # (filter position, block, pattern) run index
    sort = np.lexsort((c, run))
    f, c, pid, pos, run = f[sort], c[sort], pid[sort], pos[sort], run[sort]
    counts = np.bincount(run, minlength=s.cout * nb * k_used).reshape(s.cout, nb * k_used)
    rel = np.zeros((s.cout, nb * k_used + 1), dtype=np.int64)
    rel[:, 1:] = np.cumsum(counts, axis=1)
    if rel.size and rel.max() > 65535:
        raise ValueError("FKW: more than 65535 kernels in one filter")
    fstart = np.zeros(s.cout + 1, dtype=np.int64)
    fstart[1:] = np.cumsum(rel[:, -1])
    flat_w = layer.weights.reshape(s.cout, cin_pg, -1)
    wts = flat_w[f[:, None], c[:, None], taps[pid]] if len(f) else np.zeros((0, n_taps))
    chans = (f // cout_pg) * cin_pg + c
    arrays = (
        ("fstart", fstart.astype(np.int32)),
        ("rel", rel.astype(np.uint16).ravel()),
        ("chan", chans.astype(np.uint16)),
        ("wt", np.ascontiguousarray(wts, dtype=np.float32).ravel()),
        ("perm", order.astype(np.int32)),
        ("bias", _bias(layer)),
    )
    nbytes = sum(a.nbytes for name, a in arrays if name != "bias")
    return Packed(arrays=arrays, order=order, used_patterns=used, format_bytes=nbytes)


def _pack_dense(layer: PrunedLayer, order: np.ndarray, used: tuple[int, ...]) -> Packed:
    s = layer.spec
    slot = {p: i for i, p in enumerate(used)}
    pid = np.full((s.cout, s.cin_per_group), -1, dtype=np.int16)
    for p in used:
        pid[(layer.pattern_ids == p) & layer.alive] = slot[p]
    arrays = (
        ("wd", np.ascontiguousarray(layer.weights, dtype=np.float32).ravel()),
        ("pid", pid.ravel()),
        ("perm", order.astype(np.int32)),
        ("bias", _bias(layer)),
    )
    nbytes = sum(a.nbytes for name, a in arrays if name != "bias")
    return Packed(arrays=arrays, order=order, used_patterns=used, format_bytes=nbytes)


def _pack_csr(layer: PrunedLayer, cfg: KernelConfig, order: np.ndarray, used: tuple[int, ...],
              plane_offsets: dict[int, int]) -> Packed:
    """Unstructured CSR: per (filter, block) a run of (input offset, weight) pairs."""
    s = layer.spec
    cin_pg, cout_pg = s.cin_per_group, s.cout // s.groups
    nb = -(-cin_pg // cfg.ic_block)
    w = layer.weights.reshape(s.cout, cin_pg, -1)
    pos_of = np.empty(s.cout, dtype=np.int64)
    pos_of[order] = np.arange(s.cout)
    f, c, t = np.nonzero(w)
    run = pos_of[f] * nb + c // cfg.ic_block
    sort = np.lexsort((t, c, run))
    f, c, t, run = f[sort], c[sort], t[sort], run[sort]
    tap_off = np.array([plane_offsets[i] for i in range(w.shape[2])], dtype=np.int64)
    idx = ((f // cout_pg) * cin_pg + c) * plane_offsets[-1] + tap_off[t]
    if idx.size and idx.max() >= 2**31:
        raise ValueError("CSR: input offsets exceed int32")
    off = np.zeros(s.cout * nb + 1, dtype=np.int64)
    off[1:] = np.cumsum(np.bincount(run, minlength=s.cout * nb))
    arrays = (
        ("off", off.astype(np.int32)),
        ("idx", idx.astype(np.int32)),
        ("wt", w[f, c, t].astype(np.float32)),
        ("perm", order.astype(np.int32)),
        ("bias", _bias(layer)),
    )
    nbytes = sum(a.nbytes for name, a in arrays if name != "bias")
    return Packed(arrays=arrays, order=order, used_patterns=used, format_bytes=nbytes)


def blob(packed: Packed) -> bytes:
    """Serialise the arrays: magic, count, byte sizes, then each array 64-byte aligned."""
    arrays = [a for _, a in packed.arrays]
    head = MAGIC + struct.pack("<q", len(arrays)) + b"".join(
        struct.pack("<q", a.nbytes) for a in arrays
    )
    out = bytearray(head)
    for a in arrays:
        out += b"\0" * (-len(out) % ALIGN)
        out += np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
    return bytes(out)


def group_work(layer: PrunedLayer, order: np.ndarray, oc_block: int) -> list[int]:
    """Alive kernels per filter group (groups of ``oc_block`` consecutive filters)."""
    counts = layer.alive.sum(axis=1)[order]
    return [int(counts[g:g + oc_block].sum()) + 1 for g in range(0, len(order), oc_block)]


def thread_schedule(work: list[int], threads: int, mapping: str) -> list[list[int]]:
    """Deal filter groups to threads.

    Args:
        work: Work per group (alive kernels).
        threads: Thread count.
        mapping: ``contiguous`` (equal-count chunks), ``interleaved`` (round
            robin) or ``balanced`` (longest-processing-time first by work).

    Returns:
        Per thread the group ids it runs, in execution order.
    """
    n = len(work)
    if mapping == "contiguous":
        bounds = [round(t * n / threads) for t in range(threads + 1)]
        return [list(range(bounds[t], bounds[t + 1])) for t in range(threads)]
    if mapping == "interleaved":
        return [list(range(t, n, threads)) for t in range(threads)]
    if mapping == "balanced":
        loads = [0] * threads
        out: list[list[int]] = [[] for _ in range(threads)]
        for g in sorted(range(n), key=lambda g: (-work[g], g)):
            t = min(range(threads), key=lambda t: (loads[t], t))
            loads[t] += work[g]
            out[t].append(g)
        return [sorted(x) for x in out]
    raise ValueError(
        f"thread_mapping must be one of contiguous, interleaved, balanced; got {mapping!r}"
    )
