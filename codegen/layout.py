"""Geometry of one generated kernel: padded input planes, tiles, remainders.

Borders and padding are handled once per call by copying the input into a
zero-bordered buffer, so the inner loops never branch. For stride ``s`` each
channel is split into ``s`` *phase planes* (plane ``ph`` holds padded columns
``ph, ph + s, ph + 2s, ...``), which makes every tap of a strided convolution a
contiguous vector load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from codegen.config import LINE_FLOATS, KernelConfig, max_shift, pack_factor
from search_spaces.layers import LayerSpec

# Planes of fewer floats (4 KiB) are stored back to back, larger ones skewed off 4 KiB.
_SMALL_PLANE = 1024
# Zeroed floats after the padded input buffer: a partial last vector's junk lanes (and
# tap_shuffle's extra vector) read past the last channel's last row, never further.
INPUT_SLACK = 64


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@dataclass(frozen=True)
class OutputLayout:
    """Where a kernel stores output element (c, y, x): ``offset + c * chan_stride +
    y * row_pitch + x`` floats from its output pointer (plain NCHW: ``(oh * ow, ow, 0)``)."""

    chan_stride: int
    row_pitch: int
    offset: int = 0


@dataclass(frozen=True)
class Layout:
    """Derived sizes (all in floats) for one layer and config."""

    spec: LayerSpec
    vl: int
    rows: int
    vecs: int
    tw: int
    ntx: int
    nty: int
    rows_last: int
    vecs_last: int
    valid_last: int
    wph: int
    hp: int
    plane: int
    chan_stride: int
    nblocks: int
    nplanes: int
    shifted: bool
    pack: int = 1  # output rows per vector (KernelConfig.pack_rows), else 1
    rphase: int = 1  # row phase planes: 2 for a stride-2 layer's packed rows, else 1

    @classmethod
    def of(cls, spec: LayerSpec, cfg: KernelConfig) -> Layout:
        """Compute the layout of ``spec`` under ``cfg``."""
        if cfg.pack_rows:
            return cls._packed(spec, cfg)
        s, vl = spec.stride, cfg.vector_width
        oh, ow = spec.out_h, spec.out_w
        tw = cfg.tile_vecs * vl
        ntx, nty = math.ceil(ow / tw), math.ceil(oh / cfg.tile_rows)
        valid_last = ow - (ntx - 1) * tw
        vecs_last = math.ceil(valid_last / vl)
        # A row holds what the valid outputs read (and every input column), in whole
        # cache lines. The junk lanes of a partial last vector read on into the next
        # row (or the buffer's zeroed INPUT_SLACK); they are never stored. Rows no wider than
        # that keep a 14x14 plane in 16 lines instead of 32: the input of a deep layer
        # then stays in L2 beside its streamed weights (22% on VGG-16's features.24).
        wph = max(ow + max_shift(spec), math.ceil((spec.padding + spec.w) / s))
        wph = _round_up(wph, 16)
        hp = (oh - 1) * s + spec.kh
        nplanes = spec.kw if cfg.shifted else s
        if hp * wph >= _SMALL_PLANE:
            # Skew planes and channels by a few cache lines off 4 KiB multiples: otherwise
            # the same rows of many channels fall into the same L1 sets (conflict misses).
            plane = _round_up(hp * wph, 1024) + 48
            chan_stride = _round_up(nplanes * plane, 1024) + 16
        else:
            # Small planes (7x7, 14x14) back to back: rounding each to 4 KiB spread the
            # touched lines over 8x the pages and cost 10-13% on those layers.
            plane = hp * wph
            chan_stride = nplanes * plane
        return cls(
            spec=spec, vl=vl, rows=cfg.tile_rows, vecs=cfg.tile_vecs, tw=tw, ntx=ntx, nty=nty,
            rows_last=oh - (nty - 1) * cfg.tile_rows, vecs_last=vecs_last,
            valid_last=valid_last, wph=wph, hp=hp, plane=plane, chan_stride=chan_stride,
            nblocks=math.ceil(spec.cin_per_group / cfg.ic_block), nplanes=nplanes,
            shifted=cfg.shifted,
        )

    @classmethod
    def _packed(cls, spec: LayerSpec, cfg: KernelConfig) -> Layout:
        """``pack_rows``: planes of pitch ``out_w + 1``, ``pack`` output rows per vector, one
        tile of ``tile_rows`` vectors over the whole output.

        At stride 1, one plane: a row's right padding column is the next row's left one.
        The bottom padding row's right column is the first of one more row, zeroed with the
        padding (a caller's buffer holds anything there). At stride 2 (an even-sized input)
        each channel is split by row parity as well as by column parity: plane ``(py, px)``
        holds padded rows ``py, py + 2, ...`` of column phase ``px``, each ``out_w + 1``
        wide, so a vector's output rows read consecutive rows of one plane, as at stride 1.
        Planes are rounded to whole lines."""
        s, m, pitch = spec.stride, pack_factor(spec, cfg.vector_width), spec.out_w + 1
        # Rows per plane; at stride 2 read up to tile_rows * m + 1, the last by junk lanes only.
        rows = spec.out_h + spec.kh if s == 1 else cfg.tile_rows * m + 1
        plane = _round_up(rows * pitch, LINE_FLOATS)
        return cls(
            spec=spec, vl=cfg.vector_width, rows=cfg.tile_rows, vecs=1, tw=cfg.vector_width,
            ntx=1, nty=1, rows_last=cfg.tile_rows, vecs_last=1, valid_last=spec.out_w,
            wph=pitch, hp=s * rows, plane=plane, chan_stride=s * s * plane, nblocks=1, nplanes=s,
            shifted=False, pack=m, rphase=s,
        )

    @property
    def row_step(self) -> int:
        """Padded input rows between a tile's consecutive accumulator rows: the stride, or
        the rows one vector's output rows read under ``pack_rows`` (vector ``r`` starts at
        padded input row ``r * pack * stride``)."""
        return self.pack * self.spec.stride

    def row_offset(self, row: int, ph: int = 0) -> int:
        """Offset (floats) of padded input ``row`` of column phase plane ``ph`` from a
        channel's base (row phase planes follow each other, column phases within them)."""
        rp = self.rphase
        return ((row % rp) * self.nplanes + ph) * self.plane + (row // rp) * self.wph

    def tap_offset(self, dy: int, dx: int) -> int:
        """Offset (floats) of tap (dy, dx) from a channel's tile base, output row 0."""
        if self.shifted:
            return dx * self.plane + dy * self.wph
        s = self.spec.stride
        return self.row_offset(dy, dx % s) + dx // s

    def input_as_output(self) -> OutputLayout:
        """This kernel's zero-bordered input buffer as a producer's :class:`OutputLayout`:
        a layer that stores its output there saves this kernel the padding copy.

        Raises:
            ValueError: The buffer is not one plane per channel (stride > 1 or ``shifted``):
                a producer would have to scatter its rows.
        """
        if self.nplanes != 1:
            raise ValueError(f"layer {self.spec.name!r}: only a one-plane input (stride 1, "
                             f"not shifted) can be written by its producer; it has "
                             f"{self.nplanes} planes")
        pad = self.spec.padding
        return OutputLayout(self.chan_stride, self.wph, pad * self.wph + pad)

    def plane_offsets(self) -> dict[int, int]:
        """Flat tap index -> offset, plus key -1 -> channel stride (for CSR packing)."""
        k = self.spec.kw
        out = {t: self.tap_offset(*divmod(t, k)) for t in range(self.spec.kh * k)}
        out[-1] = self.chan_stride
        return out

    @property
    def input_floats(self) -> int:
        """Size of the padded input buffer."""
        return self.spec.cin * self.chan_stride
