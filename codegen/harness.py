"""C text shared by every generated kernel: prelude, runtime entry points, device harness.

Entry points of the shared library (all return 0 on success):

* ``int pt_init(const void* blob, long long n)`` copies and checks the weight blob
  and allocates the zero-bordered input buffer;
* ``int pt_run(const float* x, float* y)`` computes one convolution (NCHW, batch 1)
  and its epilogue; with a fused max-pool (``POOL``) the conv writes its full
  OH x OW output into a scratch buffer and a vectorised pass per output channel
  (parallel over channels when threaded) writes the pooled POH x POW to ``y``;
* ``void pt_free(void)``.

Compiled with ``-DPT_MAIN`` the same file is the standalone executable::

    kernel INPUT.bin WEIGHTS.bin WARMUP REPEATS [OUTPUT.bin]

It prints one JSON line ``{"times_s": [...], "checksum": ..., "nonfinite": N, ...}``
on stdout (the checksums are ``null`` when N outputs are NaN or infinite) and needs
nothing but libc (and libgomp when threaded).
"""

from __future__ import annotations

PRELUDE_C = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
typedef float vf __attribute__((vector_size(VL * 4)));
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4), may_alias));
#define LD(p) (*(const vfu*)(p))
#define LDA(p) (*(const vf*)(p))
/* x - 0 is exactly x, so this folds to a plain broadcast (x + 0 would not: -0 + 0 = +0). */
#define SPLAT(s) ((s) - (vf){0})
#define ST(p, v) (*(vfu*)(p) = (v))
/* max(v, 0) per lane; GCC's C (unlike C++) has no vector ?:, so mask with the comparison. */
typedef int32_t vi __attribute__((vector_size(VL * 4)));
#define RELU(v) ((vf)((vi)(v) & ((v) > (vf){0})))
/* Lane-wise max(a, b), same masking trick. */
#define VMAX(a, b) ((vf)(((vi)(a) & ((a) > (b))) | ((vi)(b) & ~((a) > (b)))))
/* Read prefetch into all cache levels; never faults, so a line past the buffer is harmless. */
#define PF(p) __builtin_prefetch((p), 0, 3)
#define PT_EXPORT __attribute__((visibility("default")))
"""

HARNESS_C = r"""
static void pad_channel(const float* restrict x, int c) {
  const float* restrict src = x + (size_t)c * H * W;
  float* restrict dst = g_in + (size_t)c * CS;
  for (int ph = 0; ph < NPLANES; ++ph) {
    int j0 = 0;
    while (j0 * S + ph - PAD < 0) ++j0;
    const int sx0 = j0 * S + ph - PAD;
    for (int y = 0; y < HP; ++y) {
      const int sy = y - PAD;
      if (sy < 0 || sy >= H) continue;
      float* restrict drow = dst + (size_t)ph * PS + (size_t)y * WPH;
      const float* restrict srow = src + (size_t)sy * W;
      if (S == 1) {
        int n = W - sx0; if (j0 + n > WPH) n = WPH - j0;
        if (n > 0) memcpy(drow + j0, srow + sx0, (size_t)n * sizeof(float));
      } else {
        for (int j = j0; j < WPH; ++j) {
          const int sx = j * S + ph - PAD;
          if (sx >= W) break;
          drow[j] = srow[sx];
        }
      }
    }
  }
}

#define OUT_ELEMS ((long)COUT * POH * POW)
#if POOL
static float* g_full; /* the conv's OH x OW output, pooled into y */

static void pool_channel(float* restrict y, int c) {
  const vi even = EVEN_LANES, odd = ODD_LANES;
  const float* restrict src = g_full + (size_t)c * OH * OW;
  float* restrict dst = y + (size_t)c * POH * POW;
  for (int py = 0; py < POH; ++py) {
    const float* restrict r0 = src + (size_t)(2 * py) * OW;
    const float* restrict r1 = r0 + OW;
    float* restrict d = dst + (size_t)py * POW;
    int px = 0;
    for (; px + VL <= POW; px += VL) {
      const vf a = VMAX(LD(r0 + 2 * px), LD(r1 + 2 * px));
      const vf b = VMAX(LD(r0 + 2 * px + VL), LD(r1 + 2 * px + VL));
      ST(d + px, VMAX(__builtin_shuffle(a, b, even), __builtin_shuffle(a, b, odd)));
    }
    for (; px < POW; ++px) {
      const float u = r0[2 * px] > r0[2 * px + 1] ? r0[2 * px] : r0[2 * px + 1];
      const float v = r1[2 * px] > r1[2 * px + 1] ? r1[2 * px] : r1[2 * px + 1];
      d[px] = u > v ? u : v;
    }
  }
}
#endif

PT_EXPORT int pt_run(const float* x, float* y) {
  if (!g_in) return 1;
#if POOL
  g_out = g_full;
#else
  g_out = y;
#endif
#if NTHREADS > 1
#pragma omp parallel num_threads(NTHREADS)
  {
    const int t = omp_get_thread_num();
#pragma omp for schedule(static)
    for (int c = 0; c < CIN; ++c) pad_channel(x, c);
    compute(t);
#if POOL
#pragma omp barrier
#pragma omp for schedule(static)
    for (int c = 0; c < COUT; ++c) pool_channel(y, c);
#endif
  }
#else
  for (int c = 0; c < CIN; ++c) pad_channel(x, c);
  compute(0);
#if POOL
  for (int c = 0; c < COUT; ++c) pool_channel(y, c);
#endif
#endif
  return 0;
}

PT_EXPORT void pt_free(void) {
#if POOL
  free(g_full); g_full = 0;
#endif
  free(g_in); g_in = 0;
  free(g_blob); g_blob = 0;
}

PT_EXPORT int pt_init(const void* blob, long long n) {
  pt_free();
  if (n < 16 || memcmp(blob, "PTWBLOB1", 8) != 0) return 2;
  long long count; memcpy(&count, (const char*)blob + 8, 8);
  if (count != N_ARRAYS || n < 16 + 8 * count) return 3;
  const long long size = (n + 63) / 64 * 64;
  g_blob = (unsigned char*)aligned_alloc(64, (size_t)size);
  if (!g_blob) return 4;
  memcpy(g_blob, blob, (size_t)n);
  unsigned char* arr[N_ARRAYS + 1];
  long long pos = 16 + 8 * count;
  for (int i = 0; i < N_ARRAYS; ++i) {
    long long nb; memcpy(&nb, g_blob + 16 + 8 * i, 8);
    if (nb != EXPECT_BYTES[i]) { pt_free(); return 5; }
    pos = (pos + 63) / 64 * 64;
    if (pos + nb > n) { pt_free(); return 6; }
    arr[i] = g_blob + pos;
    pos += nb;
  }
  bind_arrays(arr);
  const size_t in_bytes = ((size_t)IN_FLOATS + 64) * sizeof(float);
  g_in = (float*)aligned_alloc(64, (in_bytes + 63) / 64 * 64);
  if (!g_in) { pt_free(); return 4; }
  memset(g_in, 0, in_bytes);
#if POOL
  g_full = (float*)aligned_alloc(64, ((size_t)COUT * OH * OW * sizeof(float) + 63) / 64 * 64);
  if (!g_full) { pt_free(); return 4; }
#endif
  return 0;
}

#ifdef PT_MAIN
static void* read_file(const char* path, long long* n) {
  FILE* fp = fopen(path, "rb");
  if (!fp) return 0;
  fseek(fp, 0, SEEK_END); *n = ftell(fp); fseek(fp, 0, SEEK_SET);
  void* buf = malloc((size_t)*n + 1);
  if (buf && fread(buf, 1, (size_t)*n, fp) != (size_t)*n) { free(buf); buf = 0; }
  fclose(fp);
  return buf;
}

static double now_s(void) {
  struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s INPUT.bin WEIGHTS.bin WARMUP REPEATS [OUTPUT.bin]\n", argv[0]);
    return 2;
  }
  long long nin = 0, nw = 0;
  float* x = (float*)read_file(argv[1], &nin);
  void* wb = read_file(argv[2], &nw);
  if (!x || nin != (long long)CIN * H * W * 4) {
    fprintf(stderr, "kernel: input %s must hold %d float32 values\n", argv[1], CIN * H * W);
    return 3;
  }
  if (!wb) { fprintf(stderr, "kernel: cannot read weights %s\n", argv[2]); return 3; }
  const int rc = pt_init(wb, nw);
  if (rc) { fprintf(stderr, "kernel: weights file rejected (code %d)\n", rc); return 3; }
  const int warmup = atoi(argv[3]), repeats = atoi(argv[4]);
  float* y = (float*)aligned_alloc(64, ((size_t)OUT_ELEMS * 4 + 63) / 64 * 64);
  double* times = (double*)malloc(sizeof(double) * (repeats > 0 ? repeats : 1));
  for (int r = 0; r < warmup; ++r) pt_run(x, y);
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now_s(); pt_run(x, y); times[r] = now_s() - t0;
  }
  if (repeats < 1) pt_run(x, y);
  double sum = 0, asum = 0;
  long nonfinite = 0; /* by the exponent bits: -ffast-math may fold isnan/isinf away */
  for (long i = 0; i < OUT_ELEMS; ++i) {
    uint32_t bits; memcpy(&bits, &y[i], 4);
    if ((bits & 0x7f800000u) == 0x7f800000u) { ++nonfinite; continue; }
    sum += y[i]; asum += y[i] < 0 ? -y[i] : y[i];
  }
  if (argc > 5) {
    FILE* fp = fopen(argv[5], "wb");
    if (!fp || fwrite(y, 4, (size_t)OUT_ELEMS, fp) != (size_t)OUT_ELEMS) {
      fprintf(stderr, "kernel: cannot write %s\n", argv[5]); return 4;
    }
    fclose(fp);
  }
  printf("{\"times_s\": [");
  for (int r = 0; r < repeats; ++r) printf("%s%.9g", r ? ", " : "", times[r]);
  /* JSON has no NaN or Infinity: with non-finite outputs the sums are null, and counted. */
  if (nonfinite) printf("], \"checksum\": null, \"abs_checksum\": null");
  else printf("], \"checksum\": %.17g, \"abs_checksum\": %.17g", sum, asum);
  printf(", \"nonfinite\": %ld, \"out_elems\": %ld, \"threads\": %d}\n",
         nonfinite, OUT_ELEMS, NTHREADS);
  pt_free();
  return 0;
}
#endif
"""
