"""What one call of a generated kernel executes, counted from the code it generates.

``perf stat`` needs hardware counters, which the VMs pattune is developed on do not
expose; the generated code, though, is fully determined by the layer and its
KernelConfig, so its work can be counted exactly: vector FMAs (lanes wasted at a
tile's edge included), input vector loads and how many of them split across two
64-byte cache lines, the lane shuffles of ``tap_shuffle``, weight broadcasts,
accumulator loads and stores per (filter, channel block, tile) visit, and the loop
work (kernel iterations, pattern loops). With the machine's FMA peak
(:mod:`codegen.peak`), ``vector_fmas * vector_width / peak`` is the time the FMAs
alone need: a kernel's measured time over that is what loads, cache refills and
loop work cost it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from codegen.config import KernelConfig, max_shift, straddles
from codegen.layout import Layout
from codegen.tiles import Variant, by_row, row_vectors, tap_reads, variants
from search_spaces.layers import PrunedLayer
from search_spaces.patterns import Pattern


@dataclass
class KernelCounts:
    """Per call of one kernel (all filters, channel blocks and tiles).

    Attributes:
        vector_fmas: Vector FMA instructions (each ``vector_width`` lanes).
        loads: Input vector loads.
        split_loads: Of those, loads that straddle two cache lines.
        shuffles: Lane shuffles (``tap_shuffle``'s shifted taps; ``shift_sums``' once per
            visit).
        broadcasts: Weight broadcasts (one per non-zero weight and tile).
        acc_loads: Accumulator vectors reloaded from the output (every channel block
            after the first).
        acc_stores: Accumulator vectors stored.
        kernel_iterations: Kernel loop iterations (alive kernels x tiles; every
            channel for the ``dense`` format, which switches on each).
        visits: (filter, channel block, tile) visits.
        pattern_loops: Pattern loops entered (``fkw``: one per used pattern per visit).
    """

    vector_fmas: int = 0
    loads: int = 0
    split_loads: int = 0
    shuffles: int = 0
    broadcasts: int = 0
    acc_loads: int = 0
    acc_stores: int = 0
    kernel_iterations: int = 0
    visits: int = 0
    pattern_loops: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


def _splits(offsets: list[int], ox_list: list[int], vl: int) -> int:
    """Loads at ``offsets`` (floats from a line-aligned row) that cross a line, over tiles."""
    return sum(1 for ox in ox_list for o in offsets if straddles(ox + o, vl))


def _per_kernel(pat: Pattern, var: Variant, lay: Layout, cfg: KernelConfig,
                ox_list: list[int]) -> tuple[int, int, int, int]:
    """(loads, split loads, shuffles, FMAs) of one kernel of ``pat`` over ``ox_list`` tiles,
    read off the same tap plan the generator emits (:func:`codegen.tiles.tap_reads`)."""
    s, vl, n = lay.spec.stride, lay.vl, len(ox_list)
    reads = tap_reads(pat, var.rows, lay.row_step)
    fmas = len(pat.offsets) * var.rows * var.vecs * n
    # Loads at row_offset: whole lines apart except under pack_rows (pitch out_w + 1);
    # planes are whole lines, so only a row's place in its plane decides a split.
    if cfg.shift_sums:  # each plane's vectors once, unshifted; no shuffles in kernels
        per_row = {row: len({dx % s for dx in cols}) * var.vecs
                   for row, cols in by_row(reads).items()}
        splits = sum(k * _splits([lay.row_offset(row)], ox_list, vl) for row, k in per_row.items())
        return sum(per_row.values()) * n, splits, 0, fmas
    if cfg.tap_shuffle:
        rows = by_row(reads)
        per_row = {row: sum(row_vectors(cols, s, var.vecs).values())
                   for row, cols in rows.items()}
        splits = sum(k * _splits([lay.row_offset(row)], ox_list, vl) for row, k in per_row.items())
        shuffles = sum(var.vecs for cols in rows.values() for dx in cols if dx // s)
        return sum(per_row.values()) * n, splits, shuffles * n, fmas
    # LRE loads each (row, column) once; without it every (tap, row) loads its own.
    if cfg.lre:
        cols = [(row, dx) for row, dx in reads]
    else:
        cols = [(row, dx) for (row, dx), users in reads.items() for _ in users]
    offs = [lay.row_offset(row) + dx // s + v * vl for row, dx in cols
            for v in range(var.vecs)]
    return len(offs) * n, _splits(offs, ox_list, vl), 0, fmas


def count(layer: PrunedLayer, cfg: KernelConfig) -> KernelCounts:
    """Count one call of ``layer``'s kernel under ``cfg`` (see :class:`KernelCounts`)."""
    lay = Layout.of(layer.spec, cfg)
    spec, out = layer.spec, KernelCounts()
    alive = layer.alive
    per_pattern = Counter(int(p) for p in layer.pattern_ids[alive])
    kernels = int(alive.sum())
    cols = {False: [tx * lay.tw for tx in range(lay.ntx - 1)], True: [(lay.ntx - 1) * lay.tw]}
    for (last_r, last_c), var in variants(lay).items():
        ty_n = 1 if last_r else lay.nty - 1
        ox_list = cols[last_c] * ty_n
        tiles = len(ox_list)
        if not tiles:
            continue
        accs = var.rows * var.vecs
        out.visits += spec.cout * lay.nblocks * tiles
        out.acc_stores += spec.cout * lay.nblocks * tiles * accs
        out.acc_loads += spec.cout * (lay.nblocks - 1) * tiles * accs
        if cfg.shift_sums:  # each offset's sums shifted into place once per visit
            out.shuffles += spec.cout * lay.nblocks * tiles * accs * max_shift(spec)
        if cfg.format == "csr":
            for pid, n in per_pattern.items():
                for dy, dx in layer.pattern_set[pid].offsets:
                    offs = [lay.row_offset(dy + r * lay.row_step) + dx // spec.stride + v * lay.vl
                            for r in range(var.rows) for v in range(var.vecs)]
                    out.loads += n * len(offs) * tiles
                    out.split_loads += n * _splits(offs, ox_list, lay.vl)
                    out.vector_fmas += n * len(offs) * tiles
            out.broadcasts += layer.nonzeros * tiles
            out.kernel_iterations += layer.nonzeros * tiles
            continue
        for pid, n in per_pattern.items():
            loads, splits, shuffles, fmas = _per_kernel(layer.pattern_set[pid], var, lay, cfg,
                                                        ox_list)
            out.loads += n * loads
            out.split_loads += n * splits
            out.shuffles += n * shuffles
            out.vector_fmas += n * fmas
            out.broadcasts += n * len(layer.pattern_set[pid].offsets) * tiles
        if cfg.format == "dense":
            out.kernel_iterations += spec.cout * spec.cin_per_group * tiles
        else:
            out.kernel_iterations += kernels * tiles
            out.pattern_loops += spec.cout * lay.nblocks * tiles * len(per_pattern)
    return out
