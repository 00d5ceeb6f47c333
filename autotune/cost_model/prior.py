"""Analytic cost prior: estimated cycles of a generated conv kernel, before any measurement.

A cold cost model knows nothing, but the shape of the generated code is known
(``codegen.generator``/``codegen.tiles``): for every (filter, channel block,
spatial tile) a *visit* loads ``tile_rows x tile_vecs`` vector accumulators
from the output (after the first block), runs the filter's alive kernels of
the block (one broadcast weight and one input vector load per tap, output row
and vector: an FMA each), and stores the accumulators back. The estimate adds
the classic roofline terms of that code, each from the layer shape, the
pruning statistics and the config alone, never from measured latencies:

* **FMA issue**: vector FMAs (lanes wasted at the width's edge included) over
  the FMA throughput; a core sustains ``fma_ports`` per cycle only with
  ``fma_ports x fma_latency`` independent accumulator chains (8 on current
  x86 and Arm cores), so fewer accumulators leave the pipes idle.
* **Loads**: one input vector per FMA (LRE saves nothing for 4-tap patterns:
  their taps rarely share an input vector across rows, and the compiler
  already shares identical loads) and one weight broadcast per tap and tile,
  over ``load_ports``. With ``tap_shuffle`` a kernel loads each input row of its tile
  once, aligned (``tile_vecs + 1`` vectors), and shuffles the shifted taps out of
  those on the shuffle port; with ``shift_sums`` it loads ``tile_vecs`` and shuffles
  only once per visit.
* **Visit overhead**: accumulator load + store and loop/dispatch work per
  visit; visits scale with ``ceil(cin / ic_block)`` and the tile count.
* **Cache refills**: the bytes that must come from the next level because a
  working set outgrows a cache, following the loop nest of ``loop_order``:
  the tile's input across the ``oc_block`` filters of a group (L1), the
  channel block's input planes across groups or filters (L2), and the output
  planes revisited once per channel block (L2); ``tile_block_group`` shares a
  tile's channel block across every filter and revisits only that tile's outputs.
* **First writes**: an output larger than L2 has left the caches when the
  kernel writes it, so every line's first store misses and stalls the visit that
  stores it, unless ``out_prefetch`` fetched the tile's output lines for writing
  when the visit began (then only the prefetches' issue cost remains).
* **Prefetch**: sparse filters jump between input channels, which hardware
  prefetchers do not follow, so L2 -> L1 refills add to the core's time; with
  ``prefetch`` they overlap it (the larger of the two counts) at the issue cost
  of one prefetch per cache line of each kernel's tile.

Capacities and rates are those of a generic modern core (:class:`CoreModel`);
they decide where the cache terms switch on, so the prior's ranking rather
than its absolute cycles is what the filter uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_FLOAT = 4  # bytes


@dataclass(frozen=True)
class CoreModel:
    """Throughputs and capacities of one CPU core (defaults: a generic modern core).

    Attributes:
        fma_ports: Vector FMAs issued per cycle.
        fma_latency: Cycles from an FMA's issue to its result.
        load_ports: Vector loads per cycle (from L1).
        l1_bytes: L1 data cache per core.
        l2_bytes: L2 cache per core.
        l2_bytes_per_cycle: Refill bandwidth from L2 into L1.
        l3_bytes_per_cycle: Refill bandwidth from L3/memory into L2.
        visit_cycles: Loop and dispatch work per tile visit, besides its loads.
        pattern_loop_cycles: Work per pattern loop per visit (FKW runs one loop per
            used pattern, most of them a few iterations long: setup and a
            mispredicted exit branch).
        kernel_cycles: Work per alive kernel and tile besides its FMAs (index, pointers).
        write_miss_cycles: Stall per output line whose first store misses every cache
            (no ``out_prefetch``); about 23 on VGG-16's features.2 (Zen 4).
    """

    fma_ports: int = 2
    fma_latency: int = 4
    load_ports: int = 2
    l1_bytes: int = 32 * 1024
    l2_bytes: int = 1024 * 1024
    l2_bytes_per_cycle: float = 64.0
    l3_bytes_per_cycle: float = 8.0
    visit_cycles: float = 12.0
    pattern_loop_cycles: float = 6.0
    kernel_cycles: float = 2.0
    write_miss_cycles: float = 23.0


GENERIC_CORE = CoreModel()


@dataclass(frozen=True)
class _Shape:
    """The quantities of one (layer, pruning, config) that the cost terms use."""

    cout: int
    patterns: int
    taps: float  # non-zero weights per alive kernel
    alive_fraction: float
    nnz: float
    tiles: int
    accumulators: int
    vector_bytes: int
    blocks: int
    groups: int
    icb: int
    tile_in_bytes: float  # one channel block's input under one tile
    block_in_bytes: float  # one channel block's input planes
    in_bytes: float  # the whole input
    out_bytes: float  # the whole output
    loop_order: str
    prefetch: int
    # tap_shuffle (shift_sums): per kernel and tile, each input row's vectors (and one more
    # to shift from) loaded once, aligned (0 without either: one load per FMA)
    row_loads: int
    out_prefetch: bool
    rows: int


def _shape(spec: dict[str, Any], stats: dict[str, Any], cfg: dict[str, Any]) -> _Shape:
    kh, kw = int(spec.get("kh", 3)), int(spec.get("kw", 3))
    stride, pad = int(spec.get("stride", 1)), int(spec.get("padding", 1))
    oh = (int(spec["h"]) + 2 * pad - kh) // stride + 1
    ow = (int(spec["w"]) + 2 * pad - kw) // stride + 1
    cout = int(spec["cout"])
    cin_g = int(spec["cin"]) // int(spec.get("groups", 1))
    alive = float(stats.get("kernels_alive", cout * cin_g))
    nnz = float(stats.get("nonzeros", alive * kh * kw))
    vl, rows, vecs = (
        int(cfg.get(k, d)) for k, d in (("vector_width", 8), ("tile_rows", 1), ("tile_vecs", 1))
    )
    tw = vl * vecs
    icb = min(cin_g, int(cfg.get("ic_block", 0) or cin_g))
    # Padded plane as codegen.layout lays it out (row pitch rounded to 16 floats).
    plane = (-(-(math.ceil(ow / tw) * tw + kw - 1) // 16) * 16) * ((oh - 1) * stride + kh)
    # pack_rows: one tile; vector r starts stride * vl // (ow + 1) padded rows after vector
    # r - 1; planes at pitch ow + 1, at stride 2 split by row and column parity
    # (codegen.layout.Layout._packed).
    packed = bool(cfg.get("pack_rows"))
    m = max(1, vl // (ow + 1))
    step = stride * m if packed else stride
    if packed:
        prow = oh + kh if stride == 1 else -(-oh // m) * m + 1
        plane, tw = stride * stride * (-(-(ow + 1) * prow // 16) * 16), ow
    return _Shape(
        cout=cout,
        patterns=int(stats.get("patterns", 1)) if cfg.get("format", "fkw") == "fkw" else 1,
        taps=nnz / max(1.0, alive),
        alive_fraction=alive / max(1.0, cout * cin_g),
        nnz=nnz,
        tiles=1 if packed else math.ceil(ow / tw) * math.ceil(oh / rows),
        accumulators=rows * vecs,
        vector_bytes=vl * _FLOAT,
        blocks=math.ceil(cin_g / icb),
        groups=math.ceil(cout / max(1, int(cfg.get("oc_block", 1)))),
        icb=icb,
        tile_in_bytes=float(icb * ((rows - 1) * step + kh) * (tw + kw - 1) * _FLOAT),
        block_in_bytes=float(icb * plane * _FLOAT),
        in_bytes=float(int(spec["cin"]) * plane * _FLOAT),
        out_bytes=float(cout * oh * ow * _FLOAT),
        loop_order=str(cfg.get("loop_order", "block_group_tile")),
        prefetch=int(cfg.get("prefetch", 0)),
        row_loads=((rows - 1) * step + kh) * (vecs + (0 if cfg.get("shift_sums") else 1))
        if cfg.get("tap_shuffle") or cfg.get("shift_sums") else 0,
        out_prefetch=bool(cfg.get("out_prefetch", False)),
        rows=rows,
    )


def _miss(working_set: float, capacity: float) -> float:
    """Share of a cyclically reused working set that misses a cache (soft LRU)."""
    return max(0.0, 1.0 - capacity / working_set) if working_set > 0 else 0.0


def _core_cycles(s: _Shape, core: CoreModel) -> float:
    fmas = s.nnz * s.tiles * s.accumulators
    chains = core.fma_ports * core.fma_latency
    fma_rate = core.fma_ports * min(1.0, s.accumulators / chains)
    kernels = s.nnz / max(1.0, s.taps) * s.tiles
    # input vectors (one per FMA, or tap_shuffle's aligned rows) plus weight broadcasts
    inputs = kernels * min(s.taps * s.accumulators, s.row_loads) if s.row_loads else fmas
    loads = inputs + s.nnz * s.tiles
    return max(fmas / fma_rate, loads / core.load_ports) + kernels * core.kernel_cycles


def _visit_cycles(s: _Shape, core: CoreModel) -> float:
    visits = s.cout * s.blocks * s.tiles
    per_visit = (
        2.0 * s.accumulators / core.load_ports
        + core.visit_cycles
        + s.patterns * core.pattern_loop_cycles
    )
    return visits * per_visit


def _refill_cycles(s: _Shape, core: CoreModel) -> tuple[float, float]:
    """(L2 -> L1 refill cycles, L3 -> L2 refill cycles)."""
    filters_per_group = s.cout / s.groups
    alive_in = s.alive_fraction  # a filter reads only its alive kernels' channels
    if s.loop_order == "tile_block_group":
        # One tile for all filters: its channel block's input is shared by every
        # filter from L1 when it fits; the input comes from L3 once; the tile's partial
        # outputs for all filters are revisited once per channel block.
        per_tile = 1.0 + (s.cout * alive_in - 1.0) * _miss(s.tile_in_bytes, core.l1_bytes)
        l1_fill = s.in_bytes * max(1.0, per_tile)
        l2_fill = s.in_bytes
        out_set = s.out_bytes / max(1, s.tiles)
    elif s.loop_order == "block_group_filter":
        # One filter sweeps a whole channel block before the next: L1 keeps only
        # the rows of one tile; the block is reused across filters and groups from L2.
        l1_fill = s.cout * s.in_bytes * alive_in
        l2_fill = s.cout * s.in_bytes * alive_in * _miss(s.block_in_bytes, core.l2_bytes)
        out_set = s.out_bytes
    else:
        # A tile's input is shared by the group's filters from L1 when it fits.
        per_group = 1.0 + (filters_per_group * alive_in - 1.0) * _miss(
            s.tile_in_bytes, core.l1_bytes
        )
        l1_fill = s.groups * s.in_bytes * max(1.0, per_group)
        reused = s.block_in_bytes if s.loop_order == "block_group_tile" else s.in_bytes
        l2_fill = s.in_bytes * (1.0 + (s.groups - 1) * _miss(reused, core.l2_bytes))
        out_set = s.out_bytes if s.loop_order == "block_group_tile" else s.out_bytes / s.groups
    # Accumulators are read and written once per channel block.
    out_fill = 2.0 * s.out_bytes * s.blocks * _miss(out_set, core.l2_bytes)
    return l1_fill / core.l2_bytes_per_cycle, (l2_fill + out_fill) / core.l3_bytes_per_cycle


def _prefetch_cycles(s: _Shape, core: CoreModel) -> float:
    """Issue cost of software prefetch: one instruction per cache line of a kernel's tile."""
    if not s.prefetch:
        return 0.0
    kernels = s.nnz / max(1.0, s.taps) * s.tiles
    lines = s.tile_in_bytes / max(1, s.icb) / 64.0
    return kernels * lines / core.load_ports


def _first_write_cycles(s: _Shape, core: CoreModel) -> float:
    """Stalls of the first store to output lines that are in no cache, or with
    ``out_prefetch`` the issue cost of its prefetches (one per row and line of each visit)."""
    if s.out_prefetch:
        lines = s.rows * (s.accumulators // max(1, s.rows) * s.vector_bytes / 64.0 + 1.0)
        return s.cout * s.blocks * s.tiles * lines / core.load_ports
    return s.out_bytes * _miss(s.out_bytes, core.l2_bytes) / 64.0 * core.write_miss_cycles


def estimated_cycles(
    spec: dict[str, Any],
    stats: dict[str, Any],
    cfg: dict[str, Any],
    core: CoreModel = GENERIC_CORE,
) -> float:
    """Estimated cycles of one run of the layer's kernel under ``cfg`` (one thread's share).

    Args:
        spec: ``LayerSpec.to_dict()``.
        stats: Pruning statistics (``kernels_alive``, ``nonzeros``); dense when absent.
        cfg: ``KernelConfig.to_dict()``.
        core: The core's throughputs and cache sizes.
    """
    s = _shape(spec, stats, cfg)
    compute = _core_cycles(s, core) + _prefetch_cycles(s, core)
    l1_refill, l2_refill = _refill_cycles(s, core)
    # Sparse kernels jump between input channels, which hardware prefetchers do not
    # follow: L2 -> L1 refills stall the core unless software prefetch overlaps them.
    near = max(compute, l1_refill) if s.prefetch else compute + l1_refill
    total = near + _visit_cycles(s, core) + l2_refill + _first_write_cycles(s, core)
    if cfg.get("format", "fkw") != "fkw":
        total *= 1.5  # no pattern-specialised loops: per-kernel switch or per-weight offsets
    threads = max(1, int(cfg.get("threads", 1)))
    # Filter groups are dealt whole to threads: the busiest thread sets the time.
    return total * math.ceil(s.groups / threads) / s.groups


def prior_score(
    spec: dict[str, Any],
    stats: dict[str, Any],
    cfg: dict[str, Any],
    core: CoreModel = GENERIC_CORE,
) -> float:
    """Higher = expected faster: minus the log of :func:`estimated_cycles`."""
    return -math.log(estimated_cycles(spec, stats, cfg, core))
