"""Emit the register-tiled inner kernels (one C function per tile shape variant).

A tile is ``rows x vecs`` vector accumulators held in registers across every
kernel of one filter (one channel block). Three bodies share that frame:

* ``fkw``: one loop per pattern; the pattern's taps are compile-time constants,
  the channel index and tap weights come from the FKW arrays;
* ``dense``: FKW off; walks every channel and switches on the kernel's pattern id;
* ``csr``: unstructured; per weight an input offset and a value are loaded.

With LRE every distinct input vector of a kernel is loaded once and used for all
taps and output rows that read it; accumulation order per output is the same
with and without LRE, so results are bitwise equal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from codegen.config import KernelConfig, max_shift
from codegen.layout import Layout
from codegen.tile_io import LINE_FLOATS, Variant, acc, init, out_prefetch, store
from search_spaces.patterns import Pattern


def variants(lay: Layout) -> dict[tuple[bool, bool], Variant]:
    """(last row tile?, last column tile?) -> the Variant it uses."""
    out: dict[tuple[bool, bool], Variant] = {}
    for last_r in (False, True):
        for last_c in (False, True):
            rows = lay.rows_last if last_r else lay.rows
            if last_c:
                partial = 0 if lay.valid_last == lay.vecs_last * lay.vl else lay.valid_last
                out[(last_r, last_c)] = Variant(rows, lay.vecs_last, partial)
            else:
                out[(last_r, last_c)] = Variant(rows, lay.vecs, 0)
    return out




def prefetch_offsets(var: Variant, lay: Layout, rows: int, planes: int) -> list[int]:
    """Float offsets, one per cache line, covering what a tile reads from one channel:
    ``rows`` input rows of ``planes`` planes, every vector plus the one that the
    taps right of the first spill into."""
    lines: dict[int, int] = {}
    for ph in range(planes):
        for row in range(rows):
            for v in range(var.vecs + 1):
                off = lay.row_offset(row, ph) + v * lay.vl
                lines.setdefault(off // LINE_FLOATS, off)
    return sorted(lines.values())


def _prefetch(ptr: str, offsets: list[int]) -> list[str]:
    return [f"PF({ptr} + {off});" for off in offsets]


def channel_lines(var: Variant, lay: Layout) -> list[int]:
    """Lines one tile reads from one input channel (every tap of a 3x3 kernel)."""
    rows = (var.rows - 1) * lay.row_step + lay.spec.kh
    planes = lay.nplanes if lay.shifted else min(lay.spec.stride, lay.spec.kw)
    return prefetch_offsets(var, lay, rows, planes)


def tap_reads(pat: Pattern, rows: int, stride: int) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """Input (row, column) -> the (tap, output row) pairs of a ``rows``-row tile that read
    it, in (row, column) order: LRE loads each key once, and an accumulator's taps come
    in this order (so every form of the code sums in the same order)."""
    users: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for t, (dy, dx) in enumerate(pat.offsets):
        for r in range(rows):
            users[(r * stride + dy, dx)].append((t, r))
    return dict(sorted(users.items()))


def by_row(reads: dict[tuple[int, int], list[tuple[int, int]]]
           ) -> dict[int, dict[int, list[tuple[int, int]]]]:
    """:func:`tap_reads` grouped by input row: row -> column -> (tap, output row)."""
    out: dict[int, dict[int, list[tuple[int, int]]]] = defaultdict(dict)
    for (row, dx), users in reads.items():
        out[row][dx] = users
    return dict(out)


def row_vectors(cols: Iterable[int], stride: int, vecs: int) -> dict[int, int]:
    """tap_shuffle: plane -> aligned vectors loaded from one input row whose taps sit in
    columns ``cols`` (the tile's ``vecs``, plus one to shift from when a column is
    right of the plane's first)."""
    cols = list(cols)
    return {ph: vecs + (1 if any(dx // stride for dx in cols if dx % stride == ph) else 0)
            for ph in sorted({dx % stride for dx in cols})}


def pattern_taps(pat: Pattern, var: Variant, lay: Layout, lre: bool, wname: str, *,
                 shuffle: bool = False, shift_sums: bool = False) -> list[str]:
    """FMAs of one kernel with pattern ``pat``: weights ``{wname}{t}``, input pointer ``ip``.

    With ``shuffle`` (``KernelConfig.tap_shuffle``) or ``shift_sums`` (LRE implied) see
    :func:`_shuffled_taps`.
    """
    if shuffle or shift_sums:
        return _shuffled_taps(pat, var, lay, wname, shift_sums=shift_sums)
    ld = "LDA" if lay.shifted else "LD"
    lines = []
    if not lre:
        for t, (dy, dx) in enumerate(pat.offsets):
            for r in range(var.rows):
                for v in range(var.vecs):
                    off = lay.tap_offset(r * lay.row_step + dy, dx) + v * lay.vl
                    lines.append(f"{acc(r, v)} += {wname}{t} * {ld}(ip + {off});")
        return lines
    for (row, dx), users in tap_reads(pat, var.rows, lay.row_step).items():
        for v in range(var.vecs):
            off = lay.tap_offset(row, dx) + v * lay.vl
            fmas = " ".join(f"{acc(r, v)} += {wname}{t} * x;" for t, r in users)
            lines.append(f"{{ const vf x = {ld}(ip + {off}); {fmas} }}")
    return lines


def _shuffled_taps(pat: Pattern, var: Variant, lay: Layout, wname: str, *,
                   shift_sums: bool = False) -> list[str]:
    """LRE with aligned loads only: tap column ``dx`` reads plane ``dx % s`` at column
    offset ``k = dx // s``. Per input row, each plane's vectors (:func:`row_vectors`) are
    loaded aligned, and the vector at offset ``k`` is ``SHIFT{k}(a_v, a_{v+1})``, a lane
    shuffle of two neighbours. With ``shift_sums`` the aligned vector itself goes into the
    offset-``k`` accumulator (:func:`sum_acc`); :func:`shift_sums_in` adds it in at the end.

    Vector by vector along the row, each loaded where it is first used: a 3 x 7 tile's 21
    accumulators and 4 weights leave 7 registers, too few for a whole row's 8 vectors
    loaded up front, and gcc spilled accumulators in every kernel (4-5% slower on VGG-16's
    112-wide layers; no spills and the same time elsewhere). Each accumulator still
    receives its taps in :func:`tap_reads` order, as the plain LRE code adds them, so the
    results are bitwise equal."""
    s = lay.spec.stride
    lines = []
    for row, cols in by_row(tap_reads(pat, var.rows, lay.row_step)).items():
        body: list[str] = []
        loaded: set[str] = set()
        for v in range(var.vecs):
            for dx, users in cols.items():
                ph, k = dx % s, dx // s
                a = _load_once(body, loaded, lay, ph, row, v)
                if shift_sums:
                    body += [f"{sum_acc(k, r, v)} += {wname}{t} * {a};" for t, r in users]
                    continue
                x = a if k == 0 else f"SHIFT{k}({a}, {_load_once(body, loaded, lay, ph, row, v + 1)})"
                fmas = " ".join(f"{acc(r, v)} += {wname}{t} * x;" for t, r in users)
                body.append(f"{{ const vf x = {x}; {fmas} }}")
        lines.append("{ " + " ".join(body) + " }")
    return lines


def sum_acc(k: int, r: int, v: int) -> str:
    """shift_sums: the accumulator of taps at plane column offset ``k`` (the tile's own at 0)."""
    return acc(r, v) if k == 0 else f"s{k}_{r}_{v}"


def shift_sums_in(var: Variant, lay: Layout) -> tuple[list[str], list[str]]:
    """shift_sums: the offset accumulators' declaration (zeroed) and, for the tile's end,
    each added into place: output column ``x`` takes lane ``x + k`` of the offset-``k`` sums
    (``SHIFTk`` of a vector and the next; past the tile's last vector only lanes beyond the
    output row, so zeros)."""
    ks = range(1, max_shift(lay.spec) + 1)
    names = [sum_acc(k, r, v) for k in ks
             for r in range(var.rows) for v in range(var.vecs)]
    head = [f"  vf {', '.join(names)};", *(f"  {n} = (vf){{0}};" for n in names)]
    tail = [f"  {acc(r, v)} += SHIFT{k}({sum_acc(k, r, v)}, "
            f"{sum_acc(k, r, v + 1) if v + 1 < var.vecs else '(vf){0}'});"
            for k in ks for r in range(var.rows) for v in range(var.vecs)]
    return head, tail


def _load_once(body: list[str], loaded: set[str], lay: Layout, ph: int, row: int,
               v: int) -> str:
    """The name of plane ``ph``'s vector ``v`` of input ``row``, its aligned load appended
    to ``body`` the first time it is asked for."""
    name = f"p{ph}_{v}"
    if name not in loaded:
        loaded.add(name)
        # pack_rows: a row starts every pitch (8) floats, so half the rows are not aligned.
        ld = "LD" if lay.pack > 1 else "LDA"
        body.append(f"const vf {name} = {ld}(ip + {lay.row_offset(row, ph) + v * lay.vl});")
    return name


def _fkw_kernel(pat: Pattern, var: Variant, lay: Layout, cfg: KernelConfig,
                kexpr: str) -> list[str]:
    n = pat.n
    head = [
        "{",
        f"  const float* restrict ip = base + (size_t)chan[{kexpr}] * CS;",
        f"  const float* restrict w = wt + (size_t)({kexpr}) * {n};",
    ]
    if cfg.prefetch:
        # chan is this filter's slice of the context's chan; clamp to the array's last entry.
        nxt = f"({kexpr}) + {cfg.prefetch}"
        head.append(f"  const float* pf = base + (size_t)chan[k0 + {nxt} < NCHAN ? {nxt} : "
                    "NCHAN - 1 - k0] * CS;")
        head += ["  " + x for x in _prefetch("pf", channel_lines(var, lay))]
    head += [f"  const vf w{t} = SPLAT(w[{t}]);" for t in range(n)]
    taps = pattern_taps(pat, var, lay, cfg.lre, "w", shuffle=cfg.tap_shuffle,
                        shift_sums=cfg.shift_sums)
    return head + ["  " + x for x in taps] + ["}"]


def _body_fkw(var: Variant, lay: Layout, cfg: KernelConfig, pats: list[Pattern]) -> list[str]:
    k_used = len(pats)
    lines = [
        "  const uint16_t* restrict ro = c->rel + (size_t)i * (NB * KU + 1) + (size_t)b * KU;",
        "  const int32_t k0 = c->fstart[i];",
        "  const uint16_t* restrict chan = c->chan + k0;",
        f"  const float* restrict wt = c->wt + (size_t)k0 * {pats[0].n if pats else 1};",
    ]
    for slot, pat in enumerate(pats):
        end = f"ro[{slot + 1}]" if slot + 1 < k_used else f"ro[{k_used}]"
        lines.append(f"  {{ /* pattern taps {list(pat.taps)} */")
        lines.append(f"    int k = ro[{slot}]; const int ke = {end};")
        if cfg.unroll > 1:
            lines.append(f"    for (; k + {cfg.unroll} <= ke; k += {cfg.unroll}) {{")
            for u in range(cfg.unroll):
                lines += ["      " + x for x in _fkw_kernel(pat, var, lay, cfg, f"k + {u}")]
            lines.append("    }")
        lines.append("    for (; k < ke; ++k) {")
        lines += ["      " + x for x in _fkw_kernel(pat, var, lay, cfg, "k")]
        lines += ["    }", "  }"]
    return lines


def _body_dense(var: Variant, lay: Layout, cfg: KernelConfig, pats: list[Pattern]) -> list[str]:
    lines = [
        "  const int16_t* restrict pid = c->pid + (size_t)f * CIN_PG;",
        "  const float* restrict wd = c->wd + (size_t)f * CIN_PG * KK;",
        "  const float* restrict basec = base + (size_t)((f / COUT_PG) * CIN_PG) * CS;",
        "  const int c0 = b * ICB, c1 = (c0 + ICB < CIN_PG) ? c0 + ICB : CIN_PG;",
        "  for (int ch = c0; ch < c1; ++ch) {",
        "    const float* restrict ip = basec + (size_t)ch * CS;",
        "    const float* restrict w = wd + (size_t)ch * KK;",
    ]
    if cfg.prefetch:
        lines.append(f"    const float* pf = basec + (size_t)(ch + {cfg.prefetch} < CIN_PG ? "
                     f"ch + {cfg.prefetch} : CIN_PG - 1) * CS;")
        lines += ["    " + x for x in _prefetch("pf", channel_lines(var, lay))]
    lines.append("    switch (pid[ch]) {")
    for slot, pat in enumerate(pats):
        lines.append(f"    case {slot}: {{")
        lines += [f"      const vf w{t} = SPLAT(w[{tap}]);" for t, tap in enumerate(pat.taps)]
        taps = pattern_taps(pat, var, lay, cfg.lre, "w", shuffle=cfg.tap_shuffle,
                            shift_sums=cfg.shift_sums)
        lines += ["      " + x for x in taps]
        lines += ["    } break;"]
    lines += ["    default: break;", "    }", "  }"]
    return lines


def _csr_weight(var: Variant, lay: Layout, cfg: KernelConfig, kexpr: str) -> list[str]:
    ld = "LDA" if lay.shifted else "LD"
    lines = [f"{{ const float* restrict ip = base + idx[{kexpr}];",
             f"  const vf w0 = SPLAT(wt[{kexpr}]);"]
    if cfg.prefetch:
        # A 3x3 kernel holds up to 9 weights: look about ``prefetch`` kernels ahead.
        nxt = f"({kexpr}) + {4 * cfg.prefetch}"
        lines.append(f"  const float* pf = base + idx[{nxt} < NNZ ? {nxt} : NNZ - 1];")
        # idx already points at the weight's plane, row and column: its own rows only.
        lines += ["  " + x for x in _prefetch(
            "pf", prefetch_offsets(var, lay, (var.rows - 1) * lay.row_step + 1, 1))]
    for r in range(var.rows):
        for v in range(var.vecs):
            off = lay.row_offset(r * lay.row_step) + v * lay.vl
            lines.append(f"  {acc(r, v)} += w0 * {ld}(ip + {off});")
    return lines + ["}"]


def _body_csr(var: Variant, lay: Layout, cfg: KernelConfig) -> list[str]:
    lines = [
        "  const int32_t* restrict idx = c->idx;",
        "  const float* restrict wt = c->wt;",
        "  const int32_t* restrict off = c->off + (size_t)i * NB + b;",
        "  int k = off[0]; const int ke = off[1];",
    ]
    if cfg.unroll > 1:
        lines.append(f"  for (; k + {cfg.unroll} <= ke; k += {cfg.unroll}) {{")
        for u in range(cfg.unroll):
            lines += ["    " + x for x in _csr_weight(var, lay, cfg, f"k + {u}")]
        lines.append("  }")
    lines.append("  for (; k < ke; ++k) {")
    lines += ["    " + x for x in _csr_weight(var, lay, cfg, "k")]
    return lines + ["  }"]


def tile_function(var: Variant, lay: Layout, cfg: KernelConfig, pats: list[Pattern], *,
                  relu: bool = False, pool: bool = False) -> str:
    """C source of one tile function ``void name(c, y, int i, int b, int oy, int ox)``.

    ``c`` is the kernel's context (weights, padded input; ``const kctx* restrict``,
    so its array pointers load once into locals), ``y`` the conv's output. With
    ``relu`` the tile's outputs are clipped at zero when the last channel block
    stores them (the layer's fused epilogue). With ``pool`` (:func:`pools_in_tile`) the
    last channel block stores the tile's 2x2 max-pool to ``y`` (plain pooled NCHW) and
    earlier blocks their partial sums to the context's scratch ``c->full``.
    """
    lines = [
        f"static void {var.name}(const kctx* restrict c, float* y, int i, int b, int oy, int ox) {{",
        "  const int f = c->perm[i];",
    ]
    if pool:
        lines.append("  float* restrict pout = y + (size_t)f * POH * POW"
                     " + (size_t)(oy / 2) * POW + ox / 2;")
        lines.append("  float* restrict out = " + (
            "c->full + (size_t)f * OCS + (size_t)oy * OWP + ox;" if lay.nblocks > 1 else "0;"))
    else:
        lines.append("  float* restrict out = y + OOFF + (size_t)f * OCS + (size_t)oy * OWP + ox;")
    lines.append("  const float* restrict base = c->in + (size_t)oy * S * WPH + ox;")
    if cfg.out_prefetch:
        lines += out_prefetch(var, lay, pool)
    lines += init(var, lay, reload=(not pool or lay.nblocks > 1) and lay.pack == 1)
    sums_head, sums_tail = shift_sums_in(var, lay) if cfg.shift_sums else ([], [])
    lines += sums_head
    if cfg.format == "fkw":
        lines += _body_fkw(var, lay, cfg, pats)
    elif cfg.format == "dense":
        lines += _body_dense(var, lay, cfg, pats)
    else:
        lines += _body_csr(var, lay, cfg)
    lines += sums_tail
    lines += store(var, lay, relu, pool)
    lines.append("}")
    return "\n".join(lines)
