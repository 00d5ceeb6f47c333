"""What a tile does around its kernels: the accumulators' start (bias, or the partial
sums of earlier channel blocks), their store (plain, or 2x2 max-pooled on the registers),
and the prefetch for writing of the lines it stores (``KernelConfig.out_prefetch``).

:mod:`codegen.tiles` emits the kernels between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

from codegen.config import LINE_FLOATS
from codegen.layout import Layout


@dataclass(frozen=True)
class Variant:
    """One tile shape: rows, vecs, and valid columns when the last vector is partial."""

    rows: int
    vecs: int
    partial: int  # 0 = all vecs full; else valid columns in the tile

    @property
    def name(self) -> str:
        return f"tile_r{self.rows}_v{self.vecs}_p{self.partial}"



def acc(r: int, v: int) -> str:
    """The C name of accumulator (row r, vector v)."""
    return f"a{r}_{v}"


def _row_lines(valid: int) -> list[int]:
    """Float offsets, one per cache line ``valid`` floats from a row's start may touch
    whatever the row's alignment: every 16 floats and the last one."""
    return sorted(set(range(0, valid, LINE_FLOATS)) | {valid - 1}) if valid else []


def out_prefetch_offsets(var: Variant, lay: Layout) -> list[int]:
    """:func:`_row_lines` of a tile row's valid outputs."""
    return _row_lines(var.partial or var.vecs * lay.vl)


def out_prefetch(var: Variant, lay: Layout, pool: bool) -> list[str]:
    offs = out_prefetch_offsets(var, lay)
    lines = [f"  PFW(out + {r} * OWP + {o});" for r in range(var.rows) for o in offs]
    if not pool:
        return lines
    # The pooled rows the last channel block writes, and the scratch's partial sums
    # that the earlier blocks write (none with one block).
    offs = _row_lines(pooled_columns(var, lay))
    pooled = [f"  PFW(pout + {r} * POW + {o});" for r in range(var.rows // 2) for o in offs]
    return pooled + (lines if lay.nblocks > 1 else [])


def pools_in_tile(lay: Layout, maxpool: bool) -> bool:
    """Whether a layer's fused 2x2 max-pool runs on the tile's registers: tiles of an even
    number of rows (so no row pair straddles two tiles). Otherwise the conv writes its full
    output to a scratch buffer and a separate pass pools it."""
    return maxpool and lay.rows % 2 == 0 and lay.pack == 1


def init(var: Variant, lay: Layout, reload: bool = True) -> list[str]:
    lines = [f"  vf {', '.join(acc(r, v) for r in range(var.rows) for v in range(var.vecs))};"]
    if not reload:  # one channel block: nothing to reload
        lines.append("  const vf bb = SPLAT(c->bias[f]);")
        return lines + [f"  {acc(r, v)} = bb;" for r in range(var.rows) for v in range(var.vecs)]
    lines.append("  if (b == 0) {")
    lines.append("    const vf bb = SPLAT(c->bias[f]);")
    lines += [f"    {acc(r, v)} = bb;" for r in range(var.rows) for v in range(var.vecs)]
    lines.append("  } else {")
    for r in range(var.rows):
        for v in range(var.vecs):
            n, src = _lanes(var, v, lay.vl), f"out + {r} * OWP + {v} * VL"
            lines.append(f"    {acc(r, v)} = "
                         + (f"LD({src});" if n == lay.vl else f"LDN({src}, {n});"))
    lines.append("  }")
    return lines


def _lanes(var: Variant, v: int, vl: int) -> int:
    """Valid output columns in the tile's vector ``v``: all ``vl`` unless ``partial``
    (every vector of a variant holds at least one, :func:`codegen.tiles.variants`)."""
    return vl if not var.partial else min(vl, var.partial - v * vl)


def _store(dst: str, value: str, n: int, vl: int) -> str:
    """Store the first ``n`` lanes of ``value`` at ``dst`` (a whole vector when n is vl)."""
    return f"ST({dst}, {value});" if n == vl else f"STN({dst}, {value}, {n});"


def _plain_store(var: Variant, lay: Layout, indent: str = "  ") -> list[str]:
    vl = lay.vl
    if lay.pack > 1:
        return [indent + x for x in _packed_store(var, lay)]
    return [indent + _store(f"out + {r} * OWP + {v} * VL", acc(r, v), _lanes(var, v, vl), vl)
            for r in range(var.rows) for v in range(var.vecs)]


def _packed_store(var: Variant, lay: Layout) -> list[str]:
    """``pack_rows``: accumulator ``r`` holds output rows ``r * pack + q`` at lanes
    ``q * pitch`` on; each of them that exists is moved down to lane 0 and its ``out_w``
    valid lanes stored."""
    pitch, m, vl = lay.wph, lay.pack, lay.vl
    lines = []
    for r in range(var.rows):
        for q in range(min(m, lay.spec.out_h - r * m)):
            a = acc(r, 0)
            if q:
                lanes = ", ".join(str((q * pitch + i) % vl) for i in range(vl))
                a = f"__builtin_shuffle({a}, (vi){{{lanes}}})"
            lines.append(_store(f"out + {r * m + q} * OWP", a, lay.spec.out_w, vl))
    return lines


def pooled_columns(var: Variant, lay: Layout) -> int:
    """Pooled outputs per row of a tile (floor: an odd last column is dropped)."""
    return (var.partial or var.vecs * lay.vl) // 2


def _pooled_store(var: Variant, lay: Layout) -> list[str]:
    """The tile's 2x2/stride-2 max-pool from its registers into ``pout``: per row pair the
    vertical max, then the even and odd lanes of two neighbouring vectors (the same
    operations, in the same order, as the separate pass ``pool_channel``). An odd last row
    is dropped (it is the output's, the floor mode's)."""
    pw, vl = pooled_columns(var, lay), lay.vl
    lines = ["    const vi even = EVEN_LANES, odd = ODD_LANES;"]
    for r2 in range(var.rows // 2):
        r = 2 * r2
        lines.append("    {")
        lines += [f"      const vf m{v} = VMAX({acc(r, v)}, {acc(r + 1, v)});"
                  for v in range(var.vecs)]
        for j in range(-(-pw // vl)):
            a, b = f"m{2 * j}", f"m{min(2 * j + 1, var.vecs - 1)}"
            p = f"VMAX(__builtin_shuffle({a}, {b}, even), __builtin_shuffle({a}, {b}, odd))"
            n = min(vl, pw - j * vl)
            dst = f"pout + {r2} * POW + {j * vl}"
            lines.append("      " + _store(dst, p, n, vl))
        lines.append("    }")
    return lines


def store(var: Variant, lay: Layout, relu: bool = False, pool: bool = False) -> list[str]:
    # The output holds partial sums between channel blocks (``_init`` reloads them), so
    # the ReLU may clip only the complete sum: after the last block, never before.
    lines = []
    accs = [acc(r, v) for r in range(var.rows) for v in range(var.vecs)]
    if relu:
        lines.append(f"  if (b == NB - 1) {{ {' '.join(f'{a} = RELU({a});' for a in accs)} }}")
    if not pool:
        return lines + _plain_store(var, lay)
    # Pooled in the tile: the last block's sums go straight to the pooled output; earlier
    # blocks' partial sums to the scratch (only allocated when there are several blocks).
    lines += ["  if (b == NB - 1) {", *_pooled_store(var, lay), "  }"]
    if lay.nblocks > 1:
        lines += ["  else {", *_plain_store(var, lay, "    "), "  }"]
    return lines
