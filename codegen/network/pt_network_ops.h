/* pattune network runtime: the dense ops, as always-inline C functions.
 *
 * The generated model.c defines VL (float lanes per vector) and calls each function
 * with literal shapes, so GCC specialises every call: fixed trip counts, register
 * tiles fully unrolled into registers. GCC/Clang vector extensions only, so one source
 * builds for x86-64 (AVX2, AVX-512) and aarch64 (NEON).
 *
 * Layouts: activations NCHW (batch 1). Weights are packed by the Python side
 * (codegen/network/kernels.py) into the order the inner loops read them.
 * `nt` is the thread count: OpenMP across output channels when > 1.
 */
#ifndef PT_NETWORK_OPS_H
#define PT_NETWORK_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef VL
#error "define VL (float lanes per vector) before including pt_network_ops.h"
#endif

typedef float pt_vf __attribute__((vector_size(VL * 4)));
typedef float pt_vfu __attribute__((vector_size(VL * 4), aligned(4), may_alias));
typedef int32_t pt_vi __attribute__((vector_size(VL * 4)));
#define PT_LD(p) (*(const pt_vfu*)(p))
#define PT_ST(p, v) (*(pt_vfu*)(p) = (v))
/* x - 0 is exactly x, so this folds to a broadcast (x + 0 would turn -0 into +0). */
#define PT_SPLAT(s) ((s) - (pt_vf){0})
/* Lane-wise max/min: GCC's C has no vector ?:, so mask with the comparison. */
#define PT_VMAX(a, b) ((pt_vf)(((pt_vi)(a) & ((a) > (b))) | ((pt_vi)(b) & ~((a) > (b)))))
#define PT_VMIN(a, b) ((pt_vf)(((pt_vi)(a) & ((a) < (b))) | ((pt_vi)(b) & ~((a) < (b)))))
#define PT_INLINE static inline __attribute__((always_inline))
#define PT_NEG_INF (-__builtin_inff())
/* __builtin_shuffle mask picking lanes 0, 2, 4, ... of two concatenated vectors. */
#if VL == 1
#define PT_EVEN_LANES {0}
#elif VL == 2
#define PT_EVEN_LANES {0, 2}
#elif VL == 4
#define PT_EVEN_LANES {0, 2, 4, 6}
#elif VL == 8
#define PT_EVEN_LANES {0, 2, 4, 6, 8, 10, 12, 14}
#elif VL == 16
#define PT_EVEN_LANES {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#else
#error "VL must be 1, 2, 4, 8 or 16"
#endif

enum { PT_ACT_NONE = 0, PT_ACT_RELU = 1, PT_ACT_RELU6 = 2 };

PT_INLINE pt_vf pt_act_v(pt_vf v, const int act) {
  if (act == PT_ACT_NONE) return v;
  v = PT_VMAX(v, PT_SPLAT(0.0f));
  if (act == PT_ACT_RELU6) v = PT_VMIN(v, PT_SPLAT(6.0f));
  return v;
}

PT_INLINE float pt_act_s(float v, const int act) {
  if (act == PT_ACT_NONE) return v;
  v = v > 0.0f ? v : 0.0f;
  if (act == PT_ACT_RELU6) v = v < 6.0f ? v : 6.0f;
  return v;
}

/* Store the first n (< VL) lanes of v. */
PT_INLINE void pt_store_part(float* dst, pt_vf v, int n) {
  float tmp[VL] __attribute__((aligned(64)));
  PT_ST(tmp, v);
  for (int i = 0; i < n; ++i) dst[i] = tmp[i];
}

PT_INLINE float pt_hsum(pt_vf v) {
  float s = 0.0f;
  for (int i = 0; i < VL; ++i) s += v[i];
  return s;
}

/* Every op is a function of one work item (a channel, a block of filters, a chunk):
 * the generated op function runs the items in an OpenMP loop (PT_PARALLEL) and calls
 * the item function with literal shapes. The loop must be there, not in here: GCC
 * outlines an OpenMP region before it inlines, so a region inside these functions
 * would be one generic body shared by every call, shapes unknown. */
#define PT_PARALLEL _Pragma("omp parallel for num_threads(nt) if (nt > 1) schedule(static)")
/* Two loops of one op (pad, then convolve) share one region: one thread wake-up, not two. */
#define PT_REGION _Pragma("omp parallel num_threads(nt) if (nt > 1)")
#define PT_FOR _Pragma("omp for schedule(static)")

/* Channel c of x (C x H x W), zero-bordered and split into S phase planes: plane ph
 * holds padded columns ph, ph + S, ... (rows HP, WPH floats each), so every tap of a
 * strided conv is a contiguous vector load. Columns and rows past the padded input are
 * zero too (the last vector of a row reads into them). */
PT_INLINE void pt_pad_planes(const float* restrict x, float* restrict dst, const int c,
                             const int H, const int W, const int S, const int P, const int HP,
                             const int WPH, const int PLANE) {
  const float* restrict src = x + (size_t)c * H * W;
  for (int ph = 0; ph < S; ++ph) {
    float* restrict pl = dst + ((size_t)c * S + ph) * PLANE;
    int j0 = 0; /* first plane column inside the input */
    while (j0 * S + ph - P < 0) ++j0;
    int j1 = j0; /* one past the last */
    while (j1 < WPH && j1 * S + ph - P < W) ++j1;
    for (int r = 0; r < HP; ++r) {
      float* restrict row = pl + (size_t)r * WPH;
      const int sy = r - P;
      if (sy < 0 || sy >= H) { memset(row, 0, sizeof(float) * WPH); continue; }
      const float* restrict srow = src + (size_t)sy * W;
      for (int j = 0; j < j0; ++j) row[j] = 0.0f;
      if (S == 1) {
        memcpy(row + j0, srow + (j0 - P), sizeof(float) * (j1 - j0));
      } else {
        for (int j = j0; j < j1; ++j) row[j] = srow[j * S + ph - P];
      }
      for (int j = j1; j < WPH; ++j) row[j] = 0.0f;
    }
    memset(pl + (size_t)HP * WPH, 0, sizeof(float) * (PLANE - (size_t)HP * WPH));
  }
}

/* The register-tiled convolution and matrix product are generated per tile shape
 * (codegen/network/tiles.py): pt_conv_<O>x<N>, pt_gemm_<M>x<N>. */

/* Channel c: every S-th pixel of every S-th row (a strided 1x1 conv's input). */
PT_INLINE void pt_subsample(const float* restrict x, float* restrict y, const int c,
                            const int H, const int W, const int S, const int OH, const int OW) {
  for (int oy = 0; oy < OH; ++oy)
    for (int ox = 0; ox < OW; ++ox)
      y[((size_t)c * OH + oy) * OW + ox] = x[((size_t)c * H + oy * S) * W + ox * S];
}

/* Channel c of a K x K / S max pooling, padding P (-inf), floor mode. Per output row the
 * vertical max of its input rows goes to a -inf-bordered row buffer, then the horizontal
 * max is one vector per VL outputs (stride 1: shifted loads; stride 2: the even lanes of
 * two loads; other strides: scalar). */
PT_INLINE void pt_maxpool(const float* restrict x, float* restrict y, const int c, const int H,
                          const int W, const int K, const int S, const int P, const int OH,
                          const int OW) {
  const int NXV = (OW + VL - 1) / VL;
  const int RW = S * NXV * VL + K + 2 * VL;
  float vrow[RW] __attribute__((aligned(64)));
  for (int i = 0; i < RW; ++i) vrow[i] = PT_NEG_INF;
  const float* restrict src = x + (size_t)c * H * W;
  float* restrict dst = y + (size_t)c * OH * OW;
  for (int oy = 0; oy < OH; ++oy) {
    const int y0 = oy * S - P;
    const int r0 = y0 < 0 ? 0 : y0, r1 = y0 + K > H ? H : y0 + K;
    int i = 0;
    for (; i + VL <= W; i += VL) {
      pt_vf m = PT_LD(src + (size_t)r0 * W + i);
      for (int r = r0 + 1; r < r1; ++r) m = PT_VMAX(m, PT_LD(src + (size_t)r * W + i));
      PT_ST(vrow + P + i, m);
    }
    for (; i < W; ++i) {
      float m = src[(size_t)r0 * W + i];
      for (int r = r0 + 1; r < r1; ++r) m = src[(size_t)r * W + i] > m ? src[(size_t)r * W + i] : m;
      vrow[P + i] = m;
    }
    float* restrict d = dst + (size_t)oy * OW;
    if (S == 1 || S == 2) {
      for (int xv = 0; xv < NXV; ++xv) {
        const int ox = xv * VL;
        pt_vf m = PT_SPLAT(PT_NEG_INF);
        for (int kx = 0; kx < K; ++kx) {
          pt_vf v;
          if (S == 1) {
            v = PT_LD(vrow + ox + kx);
          } else {
            const pt_vi even = PT_EVEN_LANES;
            v = __builtin_shuffle(PT_LD(vrow + 2 * ox + kx), PT_LD(vrow + 2 * ox + kx + VL), even);
          }
          m = PT_VMAX(m, v);
        }
        if (ox + VL <= OW) PT_ST(d + ox, m);
        else pt_store_part(d + ox, m, OW - ox);
      }
    } else {
      for (int ox = 0; ox < OW; ++ox) {
        float m = PT_NEG_INF;
        for (int kx = 0; kx < K; ++kx) m = vrow[ox * S + kx] > m ? vrow[ox * S + kx] : m;
        d[ox] = m;
      }
    }
  }
}

/* Channel c of a K x K / S average pooling, padding P, floor mode, torch's divisors. */
PT_INLINE void pt_avgpool(const float* restrict x, float* restrict y, const int c, const int H,
                          const int W, const int K, const int S, const int P, const int OH,
                          const int OW, const int include_pad) {
  const float* restrict src = x + (size_t)c * H * W;
  for (int oy = 0; oy < OH; ++oy) {
    for (int ox = 0; ox < OW; ++ox) {
      int hs = oy * S - P, ws = ox * S - P;
      int he = hs + K < H + P ? hs + K : H + P, we = ws + K < W + P ? ws + K : W + P;
      const int pool = (he - hs) * (we - ws);
      hs = hs < 0 ? 0 : hs; ws = ws < 0 ? 0 : ws;
      he = he < H ? he : H; we = we < W ? we : W;
      float s = 0.0f;
      for (int r = hs; r < he; ++r)
        for (int q = ws; q < we; ++q) s += src[(size_t)r * W + q];
      const int div = include_pad ? pool : (he - hs) * (we - ws);
      y[((size_t)c * OH + oy) * OW + ox] = s / (float)div;
    }
  }
}

/* Channel c of an adaptive average pooling to OH x OW, torch's windows
 * [floor(i H / OH), ceil((i + 1) H / OH)). */
PT_INLINE void pt_adaptive_avg(const float* restrict x, float* restrict y, const int c,
                               const int H, const int W, const int OH, const int OW) {
  const float* restrict src = x + (size_t)c * H * W;
  for (int oy = 0; oy < OH; ++oy) {
    const int hs = oy * H / OH, he = ((oy + 1) * H + OH - 1) / OH;
    for (int ox = 0; ox < OW; ++ox) {
      const int ws = ox * W / OW, we = ((ox + 1) * W + OW - 1) / OW;
      float s = 0.0f;
      for (int r = hs; r < he; ++r)
        for (int q = ws; q < we; ++q) s += src[(size_t)r * W + q];
      y[((size_t)c * OH + oy) * OW + ox] = s / (float)((he - hs) * (we - ws));
    }
  }
}

/* Channel c of a global average pooling. */
PT_INLINE void pt_global_avg(const float* restrict x, float* restrict y, const int c,
                             const int HW) {
  const float* restrict src = x + (size_t)c * HW;
  pt_vf a0 = PT_SPLAT(0.0f), a1 = PT_SPLAT(0.0f);
  int i = 0;
  for (; i + 2 * VL <= HW; i += 2 * VL) { a0 += PT_LD(src + i); a1 += PT_LD(src + i + VL); }
  float s = pt_hsum(a0 + a1);
  for (; i < HW; ++i) s += src[i];
  y[c] = s / (float)HW;
}

/* Elementwise ops run in chunks of PT_CHUNK floats (a multiple of every VL). */
#define PT_CHUNK 4096

/* Chunk i of y = act(a + b) over n floats. */
PT_INLINE void pt_add(const float* restrict a, const float* restrict b, float* restrict y,
                      const long i, const long n, const int act) {
  const long lo = i * PT_CHUNK, hi = lo + PT_CHUNK < n ? lo + PT_CHUNK : n;
  long k = lo;
  for (; k + VL <= hi; k += VL) PT_ST(y + k, pt_act_v(PT_LD(a + k) + PT_LD(b + k), act));
  for (; k < hi; ++k) y[k] = pt_act_s(a[k] + b[k], act);
}

/* Chunk i of y = act(x) over n floats; x may be y (in place). */
PT_INLINE void pt_act(const float* x, float* y, const long i, const long n, const int act) {
  const long lo = i * PT_CHUNK, hi = lo + PT_CHUNK < n ? lo + PT_CHUNK : n;
  long k = lo;
  for (; k + VL <= hi; k += VL) PT_ST(y + k, pt_act_v(PT_LD(x + k), act));
  for (; k < hi; ++k) y[k] = pt_act_s(x[k], act);
}

/* Rows 8 blk .. 8 blk + 7 of y[o] = act(w[o] . x + bias[o]); w row-major [OUT][IN]
 * (torch's layout). Eight rows share each loaded x vector: the weights stream once
 * (memory bound at batch 1, about 20 GB/s here, as torch's). Eight rows against four:
 * 19.6 against 22.1 ms on VGG-16's 25088 x 4096 layer once, within the noise of a
 * loaded machine in other runs; software prefetch was slower (23.6 ms). */
PT_INLINE void pt_linear(const float* restrict x, float* restrict y, const float* restrict w,
                         const float* restrict bias, const int blk, const int IN, const int OUT,
                         const int act) {
  const int IV = IN / VL * VL;
  const int o0 = blk * 8, rows = OUT - o0 < 8 ? OUT - o0 : 8;
  const float* restrict w0 = w + (size_t)o0 * IN;
  if (rows == 8) {
    pt_vf a0 = PT_SPLAT(0.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int i = 0; i < IV; i += VL) {
      const pt_vf xv = PT_LD(x + i);
      a0 += PT_LD(w0 + i) * xv;
      a1 += PT_LD(w0 + (size_t)IN + i) * xv;
      a2 += PT_LD(w0 + 2 * (size_t)IN + i) * xv;
      a3 += PT_LD(w0 + 3 * (size_t)IN + i) * xv;
      a4 += PT_LD(w0 + 4 * (size_t)IN + i) * xv;
      a5 += PT_LD(w0 + 5 * (size_t)IN + i) * xv;
      a6 += PT_LD(w0 + 6 * (size_t)IN + i) * xv;
      a7 += PT_LD(w0 + 7 * (size_t)IN + i) * xv;
    }
    const pt_vf acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int r = 0; r < 8; ++r) {
      float s = pt_hsum(acc[r]);
      for (int i = IV; i < IN; ++i) s += w0[(size_t)r * IN + i] * x[i];
      y[o0 + r] = pt_act_s(s + bias[o0 + r], act);
    }
    return;
  }
  for (int r = 0; r < rows; ++r) {
    const float* restrict wr = w0 + (size_t)r * IN;
    pt_vf a = PT_SPLAT(0.0f);
    for (int i = 0; i < IV; i += VL) a += PT_LD(wr + i) * PT_LD(x + i);
    float s = pt_hsum(a);
    for (int i = IV; i < IN; ++i) s += wr[i] * x[i];
    y[o0 + r] = pt_act_s(s + bias[o0 + r], act);
  }
}

#endif /* PT_NETWORK_OPS_H */
