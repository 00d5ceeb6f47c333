"""KernelConfig: the code-generation parameters of one layer's kernel (a record).

:mod:`codegen.config` derives each field's valid range for a layer and a target.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from pattune_common import Record


@dataclass(frozen=True)
class KernelConfig(Record):
    """Tuning parameters of one generated conv kernel (all numeric or enum-like).

    Attributes:
        oc_block: Filters processed together per spatial tile (they share the
            input tile in L1: load reuse across the filters of a group).
        tile_rows: Output rows of the register tile.
        tile_vecs: Vectors along the output width of the register tile.
        ic_block: Input channels (per group) per pass; the input working set of
            one pass is ``ic_block`` padded channel planes.
        unroll: Kernels of one pattern handled per loop iteration.
        loop_order: Nesting of channel blocks, filter groups, spatial tiles and
            filters; one of :data:`LOOP_ORDERS`.
        threads: Worker threads (OpenMP).
        thread_mapping: How filter groups are dealt to threads: ``contiguous``
            chunks, ``interleaved`` round robin, or ``balanced`` by non-zero work.
        vector_width: Float lanes per vector (<= the target's widest).
        fkr: Filter kernel reordering: sort filters by kernel count and pattern
            histogram so groups are alike (thread balance, loop regularity).
        lre: Load redundancy elimination: load each input vector once per kernel
            and reuse it for every tap and output row that needs it.
        format: Weight format and inner loop: ``fkw`` (compressed, kernels sorted by
            pattern, pattern-specialised loops), ``dense`` (FKW off: dense weights,
            per-kernel switch on the pattern id) or ``csr`` (unstructured sparse:
            per-weight offset loads, no pattern specialisation; the baseline).
        shifted: Input layout: one 64-byte-aligned copy of each channel per kernel
            column (aligned loads, ``kw`` x copying) instead of ``stride`` phase
            planes (unaligned loads).
        prefetch: Software prefetch distance in kernels (weights for ``csr``): while
            one kernel is computed, the input lines of the tile that the kernel
            ``prefetch`` places ahead reads are requested into L1. The input channels a
            sparse filter visits jump irregularly, which hardware prefetchers do not
            follow; worth it when a channel block's input tile does not stay in L1.
            0 = off.
        tap_shuffle: Build the taps right of a kernel's first column from aligned loads:
            per input row the tile's vectors plus one more are loaded aligned and the
            ``dx``-shifted vectors are lane shuffles of neighbours (``valignd`` on
            AVX-512, ``ext`` on NEON) instead of unaligned loads, each of which splits
            across two cache lines with the widest vectors. Needs ``lre`` and the
            phase-plane layout (not ``shifted``); results are bitwise those of the
            unaligned loads.
        out_prefetch: When a tile starts, prefetch its output lines for writing (one
            prefetch per cache line of the tile's valid outputs). A large layer's output
            is written once and has left the caches, so otherwise its stores miss and back
            up the store queue at the end of every (filter, tile) visit; the prefetch
            fetches the lines while the visit's kernels run. Results are bitwise those
            without it.
        shift_sums: Shift sums instead of inputs: the taps at column offset ``k`` (plane
            column ``dx // stride``) of every kernel add aligned input vectors into their own
            accumulators, and the tile shifts those ``k`` lanes into place once, before it
            stores, instead of shuffling or loading shifted inputs in every kernel. Needs
            ``lre``, phase planes and no ``tap_shuffle``, a tile spanning the output row with
            the shifted lanes inside it, and ``1 + (kw - 1) // stride`` times the tile's
            accumulators in registers. Reassociates each output's sum, so it is checked
            against torch, not bitwise against its off state.
        pack_rows: Rows packed into vectors: a plane too narrow for a vector (7 wide, in
            16-float vectors) is stored at pitch ``out_w + 1``, each row's right padding
            column being the next row's left one, so one vector holds ``vector_width //
            (out_w + 1)`` whole output rows and a tap is one load at ``pitch * (row + dy)
            + dx``. One tile of ``tile_rows`` such vectors covers the output. At stride 2
            (an even-sized input) the planes are split by row parity too, so a phase
            plane's rows are consecutive in the same way. Needs a 3 x 3, padding 1 layer at
            stride 1 or 2 whose ``out_w + 1`` divides ``vector_width`` at least twice, one
            channel block, ``tile_vecs`` 1, not ``shifted`` or ``out_prefetch``.
            Same sums in the same order, so bitwise those of the unpacked layout.
    """

    oc_block: int = 1
    tile_rows: int = 4
    tile_vecs: int = 2
    ic_block: int = 0
    unroll: int = 1
    loop_order: str = "block_group_tile"
    threads: int = 1
    thread_mapping: str = "contiguous"
    vector_width: int = 8
    fkr: bool = True
    lre: bool = True
    format: str = "fkw"
    shifted: bool = False
    prefetch: int = 0
    tap_shuffle: bool = False
    out_prefetch: bool = False
    shift_sums: bool = False
    pack_rows: bool = False

    schema = "kernel_config"
    # Fields added after the first schema, omitted from the stable form while they
    # hold their default: records, recorded sets and hashes written before the field
    # existed still name the same configs (and the same generated code).
    _added_later: ClassVar[dict[str, Any]] = {"prefetch": 0, "tap_shuffle": False,
                                               "out_prefetch": False, "shift_sums": False,
                                               "pack_rows": False}

    def to_dict(self) -> dict[str, Any]:
        """The stable form; later-added fields appear only when not at their default."""
        d = super().to_dict()
        for name, default in self._added_later.items():
            if d[name] == default:
                del d[name]
        return d

    def replace(self, **changes: Any) -> KernelConfig:
        """A copy with some fields changed (not validated: use ConfigSpace.validate)."""
        return dataclasses.replace(self, **changes)
