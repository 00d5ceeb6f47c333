"""The C that fills a kernel's zero-bordered input buffer (see :mod:`codegen.layout`).

``prepare_rows(in, x, ch, y0, y1)`` readies padded rows ``[y0, y1)`` of channel ``ch``:
with ``EXT_IN`` (the buffer is the caller's, of any content) it first zeroes their
padding columns and each row's tail (whole rows in the padding above and below), then
copies x's rows in (x NULL: a producer already stored them). A buffer the context owns
was zeroed once at creation and only its interior is ever written.

With ``BAND`` (loop order ``tile_block_group`` on one thread: the tiles run row band by
row band) the compute loop calls ``pad_band`` before each band's first tile, which
readies only the rows that band reads and no earlier band did. The rows are then in L2
when the tiles read them, where padding the whole input first leaves a large layer's
buffer in memory (VGG-16's features.2 pads 13.9 MB). Same values, so the outputs are
bitwise those of padding first.
"""

from __future__ import annotations

PAD_C = r"""
/* Padded row ``y`` of column phase plane ``ph`` within a channel: RP row phase planes
   (2 for a stride-2 layer's packed rows, see codegen.layout), NPLANES column phases in
   each. */
#define PROW(y, ph) ((size_t)(((y) % RP) * NPLANES + (ph)) * PS + (size_t)((y) / RP) * WPH)

/* Columns [j0, j1) of plane ``ph`` hold input columns; the rest of a row is padding
   (and, past the last input column, the row's tail up to WPH). */
static inline void plane_cols(int ph, int* j0, int* j1) {
  int a = 0, b = 0;
  while (a * S + ph - PAD < 0) ++a;
  while (b < WPH && b * S + ph - PAD < W) ++b;
  *j0 = a;
  *j1 = b;
}

/* Padded rows [y0, y1) of channel ``ch`` of x copied into the input buffer ``in`` (only
   the interior: the borders are prepare_rows's). */
static void pad_rows(float* restrict in, const float* restrict x, int ch, int y0, int y1) {
  const float* restrict src = x + (size_t)ch * H * W;
  float* restrict dst = in + (size_t)ch * CS;
  for (int ph = 0; ph < NPLANES; ++ph) {
    int j0, j1;
    plane_cols(ph, &j0, &j1);
    const int sx0 = j0 * S + ph - PAD;
    for (int y = y0; y < y1; ++y) {
      const int sy = y - PAD;
      if (sy < 0 || sy >= H) continue;
      float* restrict drow = dst + PROW(y, ph);
      const float* restrict srow = src + (size_t)sy * W;
      if (S == 1) {
        if (j1 > j0) memcpy(drow + j0, srow + sx0, (size_t)(j1 - j0) * sizeof(float));
      } else {
        for (int j = j0; j < j1; ++j) drow[j] = srow[j * S + ph - PAD];
      }
    }
  }
}

/* Zeroes what pad_rows does not write in rows [y0, y1) of channel ``ch`` of an input
   buffer the context does not own: the padding rows and columns, each row's tail. */
static void border_rows(float* restrict in, int ch, int y0, int y1) {
  float* restrict dst = in + (size_t)ch * CS;
  for (int ph = 0; ph < NPLANES; ++ph) {
    int j0, j1;
    plane_cols(ph, &j0, &j1);
    for (int y = y0; y < y1; ++y) {
      float* restrict drow = dst + PROW(y, ph);
      const int inside = y >= PAD && y - PAD < H, head = inside ? j0 : WPH;
      memset(drow, 0, (size_t)head * sizeof(float));
      if (inside) memset(drow + j1, 0, (size_t)(WPH - j1) * sizeof(float));
    }
  }
}

static void prepare_rows(float* restrict in, const float* restrict x, int ch, int y0, int y1) {
  if (EXT_IN) border_rows(in, ch, y0, y1);
  if (x) pad_rows(in, x, ch, y0, y1);
}

static void prepare_channel(float* restrict in, const float* restrict x, int ch) {
  prepare_rows(in, x, ch, 0, HP);
}

/* One past the last padded row the tiles of row band ``ty`` read. */
static inline int band_end(int ty) {
  const int oy1 = (ty + 1) * R < OH ? (ty + 1) * R : OH;
  const int end = (oy1 - 1) * S + KH;
  return ty == NTY - 1 || end > HP ? HP : end;
}

/* BAND: the rows band ``ty`` reads that no earlier band did, every channel. */
static void pad_band(float* restrict in, const float* restrict x, int ty) {
  const int y0 = ty ? band_end(ty - 1) : 0, y1 = band_end(ty);
  for (int ch = 0; ch < CIN; ++ch) prepare_rows(in, x, ch, y0, y1);
}
"""

__all__ = ["PAD_C"]
