"""C text shared by every generated kernel: prelude, runtime entry points, device harness.

Every kernel is reentrant: its state (the weight arrays, the zero-bordered input
buffer, the pooling scratch) lives in a context struct passed down to the tile
functions, and the file holds no mutable static state besides the single-layer
interface below. The entry points carry a prefix ``P`` chosen at generation time
(:func:`api_header` declares them; they return 0 on success):

* ``int P_create(const void* blob, long long n, P_ctx** out)`` checks and copies the
  weight blob and allocates the context's buffers; on failure ``*out`` is NULL and the
  code says why: 1 a NULL ``out``, 2 not a weight blob (NULL, short, bad magic), 3 wrong
  array count, 4 out of memory, 5 an array of the wrong size (the blob of another layer
  or config), 6 truncated;
* ``int P_run(P_ctx* c, const float* x, float* y)`` computes one convolution (NCHW,
  batch 1) and its epilogue; with a fused max-pool (``POOL``) the conv writes its full
  OH x OW output into the context's scratch buffer and a vectorised pass per output
  channel (parallel over channels when threaded) writes the pooled POH x POW to ``y``;
  1 for a NULL argument. A context runs one call at a time; different contexts (of one
  kernel or of several) may run at once in different threads;
* ``void P_destroy(P_ctx* c)`` frees it (NULL is fine).

Unless compiled with ``-DPT_NO_SINGLE`` (as a network's objects must be: every layer
would define it), the file also has the single-layer interface over one static
context: ``int pt_init(const void* blob, long long n)`` (same codes),
``int pt_run(const float* x, float* y)`` (1 before ``pt_init``), ``void pt_free(void)``.
Only these entry points have default visibility; everything else is ``static``.

Compiled with ``-DPT_MAIN`` the same file is the standalone executable::

    kernel INPUT.bin WEIGHTS.bin WARMUP REPEATS [OUTPUT.bin]

It prints one JSON line ``{"times_s": [...], "checksum": ..., "nonfinite": N, ...}``
on stdout (the checksums are ``null`` when N outputs are NaN or infinite) and needs
nothing but libc (and libgomp when threaded).
"""

from __future__ import annotations

import re

DEFAULT_PREFIX = "pt_kernel"
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` when it can name a kernel's entry points, else raise.

    Raises:
        ValueError: ``prefix`` is not a C identifier of 1-64 letters, digits and
            underscores starting with a letter, or is ``pt`` (``pt_run`` is the
            single-layer entry point, with another signature).
    """
    if not isinstance(prefix, str) or not _IDENTIFIER.fullmatch(prefix) or prefix == "pt":
        raise ValueError(
            "symbol_prefix must be a C identifier of 1-64 letters, digits and '_' starting "
            f"with a letter, and not 'pt' (the single-layer pt_run); got {prefix!r}"
        )
    return prefix


def api_header(prefix: str, comment: str = "", *, external_input: bool = False) -> str:
    """Declarations of a kernel's prefixed entry points: a C header's text.

    Args:
        prefix: The kernel's symbol prefix (see :func:`check_prefix`).
        comment: What the kernel computes, put in a comment at the top.
        external_input: Also declare ``P_run_in`` (see :func:`api_definitions`).
    """
    p = check_prefix(prefix)
    guard = f"PATTUNE_KERNEL_{p}_H"
    lines = [f"/* {comment.replace('*/', '* /')} */"] if comment else []
    lines += [
        f"#ifndef {guard}", f"#define {guard}", "#ifdef __cplusplus", 'extern "C" {', "#endif",
        f"typedef struct {p}_ctx {p}_ctx;",
        f"int {p}_create(const void* blob, long long n, {p}_ctx** out);",
        f"int {p}_run({p}_ctx* c, const float* x, float* y);",
        f"void {p}_destroy({p}_ctx* c);",
        *([f"int {p}_run_in({p}_ctx* c, const float* x, float* in, float* y);"]
          if external_input else []),
        "#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */",
    ]
    return "\n".join(lines) + "\n"


def api_definitions(prefix: str, *, external_input: bool = False) -> str:
    """The prefixed entry points, over the file's static ``ctx_*`` functions.

    With ``external_input`` (a network's layers) the context owns no padded input
    buffer and ``int P_run_in(P_ctx*, const float* x, float* in, float* y)`` runs on the
    caller's: ``in`` holds ``IN_FLOATS + IN_SLACK`` floats, 64-byte aligned, of any
    content (a network arena's memory, shared with other tensors over time); the run
    zeroes its borders and copies ``x`` into it, or with ``x`` NULL takes the interior
    a producer already stored there (:meth:`codegen.layout.Layout.input_as_output`);
    ``P_run`` then fails with code 1."""
    p = check_prefix(prefix)
    return "\n".join([
        f"PT_EXPORT int {p}_create(const void* blob, long long n, {p}_ctx** out) {{",
        "  return ctx_create(blob, n, out);", "}",
        f"PT_EXPORT int {p}_run({p}_ctx* c, const float* x, float* y) {{",
        "  return ctx_run(c, x, y);", "}",
        f"PT_EXPORT void {p}_destroy({p}_ctx* c) {{ ctx_destroy(c); }}",
    ] + ([
        f"PT_EXPORT int {p}_run_in({p}_ctx* c, const float* x, float* in, float* y) {{",
        "  return in ? ctx_run_from(c, x, in, y) : 1;", "}",
    ] if external_input else []))

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
/* The first n lanes of v to p (STN), or of p with the other lanes zero (LDN): AVX-512
   and AVX masked moves, which touch nothing past the n floats. Elsewhere (NEON) lane by
   lane (n is a constant: st1/ld1 of single lanes). Not through a stack scratch and
   memcpy: with one, GCC 12 kept accumulators of such a tile on the stack (2x on a 7-wide
   layer's unstructured kernel on x86; 15 to 85 stack moves in NEON tile code). */
#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>
#if VL == 16
#define STN(p, v, n) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1), (__m512)(v))
#define LDN(p, n) ((vf)_mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), (p)))
#elif VL == 8
#define STN(p, v, n) _mm256_mask_storeu_ps((p), (__mmask8)((1u << (n)) - 1), (__m256)(v))
#define LDN(p, n) ((vf)_mm256_maskz_loadu_ps((__mmask8)((1u << (n)) - 1), (p)))
#else
#define STN(p, v, n) _mm_mask_storeu_ps((p), (__mmask8)((1u << (n)) - 1), (__m128)(v))
#define LDN(p, n) ((vf)_mm_maskz_loadu_ps((__mmask8)((1u << (n)) - 1), (p)))
#endif
#elif defined(__AVX__) && (VL == 8 || VL == 4)
#include <immintrin.h>
/* AVX's maskstore/maskload by a lane mask (lane < n): lanes off the mask are not touched. */
#if VL == 8
#define LANES_LT(n) ((vi){0, 1, 2, 3, 4, 5, 6, 7} < ((n) + (vi){0}))
#define STN(p, v, n) _mm256_maskstore_ps((p), (__m256i)LANES_LT(n), (__m256)(v))
#define LDN(p, n) ((vf)_mm256_maskload_ps((p), (__m256i)LANES_LT(n)))
#else
#define LANES_LT(n) ((vi){0, 1, 2, 3} < ((n) + (vi){0}))
#define STN(p, v, n) _mm_maskstore_ps((p), (__m128i)LANES_LT(n), (__m128)(v))
#define LDN(p, n) ((vf)_mm_maskload_ps((p), (__m128i)LANES_LT(n)))
#endif
#else
static inline void stn_(float* p, vf v, int n) {
  for (int i = 0; i < n; ++i) p[i] = v[i];
}
static inline vf ldn_(const float* p, int n) {
  vf t = {0};
  for (int i = 0; i < n; ++i) t[i] = p[i];
  return t;
}
#define STN(p, v, n) stn_((p), (v), (n))
#define LDN(p, n) ldn_((p), (n))
#endif
/* Read prefetch into all cache levels; never faults, so a line past the buffer is harmless. */
#define PF(p) __builtin_prefetch((p), 0, 3)
/* Prefetch for writing (prefetchw, PRFM PSTL1KEEP): the line arrives owned, so stores hit. */
#define PFW(p) __builtin_prefetch((p), 1, 3)
#define PT_EXPORT __attribute__((visibility("default")))
"""

HARNESS_C = r"""
#define OUT_ELEMS ((long)COUT * POH * POW)
/* The scratch for the conv's full output: the separate pooling pass reads it; pooled in
   the tiles (PIT), it holds only partial sums between channel blocks. */
#define HAS_FULL (POOL && (!PIT || NB > 1))
#if POOL && !PIT
/* Channel ``ch`` of the conv's OH x OW output ``full``, max-pooled 2x2/2 into y. */
static void pool_channel(const float* restrict full, float* restrict y, int ch) {
  const vi even = EVEN_LANES, odd = ODD_LANES;
  const float* restrict src = full + (size_t)ch * OH * OW;
  float* restrict dst = y + (size_t)ch * POH * POW;
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

/* One call: writes only ``in`` and y (and c's scratch), so contexts may run in different
   threads. ``in``: the padded input buffer (c->in, or the caller's with EXT_IN).
   x NULL: ``in`` already holds the input's interior (a producer stored it there). */
static int ctx_run_from(kctx* c, const float* x, float* in, float* y) {
  if (!c || !y || !in) return 1;
  /* Another buffer goes into a copy of the context (the tiles read c->in), on lines of
     its own (every tile call of every thread reads it). */
  union { kctx k; unsigned char lines[(sizeof(kctx) + 63) / 64 * 64]; }
      view __attribute__((aligned(64)));
  if (in != c->in) { view.k = *c; view.k.in = in; c = &view.k; }
#if POOL && !PIT
  float* const out = c->full;
#else
  float* const out = y;
#endif
#if NTHREADS > 1
#pragma omp parallel num_threads(NTHREADS)
  {
    const int t = omp_get_thread_num();
    if (x || EXT_IN) {
#pragma omp for schedule(static)
      for (int ch = 0; ch < CIN; ++ch) prepare_channel(in, x, ch);
    }
    compute(c, out, t, 0);
#if POOL && !PIT
#pragma omp barrier
#pragma omp for schedule(static)
    for (int ch = 0; ch < COUT; ++ch) pool_channel(out, y, ch);
#endif
  }
#else
  const float* const lazy = BAND ? x : 0;  /* BAND: compute pads band by band */
  if (!lazy && (x || EXT_IN))
    for (int ch = 0; ch < CIN; ++ch) prepare_channel(in, x, ch);
  compute(c, out, 0, lazy);
#if POOL && !PIT
  for (int ch = 0; ch < COUT; ++ch) pool_channel(out, y, ch);
#endif
#endif
  return 0;
}

static int ctx_run(kctx* c, const float* x, float* y) {
  return x && c ? ctx_run_from(c, x, c->in, y) : 1;
}

static void ctx_destroy(kctx* c) {
  if (!c) return;
  free(c->full);
  free(c->in);
  free(c->blob);
  free(c);
}

/* Checks the blob against the array sizes this code was generated for and copies it
   (64-byte aligned: the arrays are read with vector loads), so the caller may free it. */
static int ctx_create(const void* blob, long long n, kctx** out) {
  if (!out) return 1;
  *out = 0;
  if (!blob || n < 16 || memcmp(blob, "PTWBLOB1", 8) != 0) return 2;
  long long count; memcpy(&count, (const char*)blob + 8, 8);
  if (count != N_ARRAYS || n < 16 + 8 * count) return 3;
  /* Cache lines of its own: every tile call of every thread reads it, and whatever the
     allocator would put beside it (another layer's state, say) may be written meanwhile. */
  const size_t ctx_bytes = (sizeof(kctx) + 63) / 64 * 64;
  kctx* c = (kctx*)aligned_alloc(64, ctx_bytes);
  if (!c) return 4;
  memset(c, 0, ctx_bytes);
  const long long size = (n + 63) / 64 * 64;
  c->blob = (unsigned char*)aligned_alloc(64, (size_t)size);
  if (!c->blob) { ctx_destroy(c); return 4; }
  memcpy(c->blob, blob, (size_t)n);
  unsigned char* arr[N_ARRAYS + 1];
  long long pos = 16 + 8 * count;
  for (int i = 0; i < N_ARRAYS; ++i) {
    long long nb; memcpy(&nb, c->blob + 16 + 8 * i, 8);
    if (nb != EXPECT_BYTES[i]) { ctx_destroy(c); return 5; }
    pos = (pos + 63) / 64 * 64;
    if (pos + nb > n) { ctx_destroy(c); return 6; }
    arr[i] = c->blob + pos;
    pos += nb;
  }
  bind_arrays(c, arr);
#if !EXT_IN
  const size_t in_bytes = ((size_t)IN_FLOATS + IN_SLACK) * sizeof(float);
  c->in = (float*)aligned_alloc(64, (in_bytes + 63) / 64 * 64);
  if (!c->in) { ctx_destroy(c); return 4; }
  /* The borders stay zero for good: pad_rows writes only the interior. */
  memset(c->in, 0, in_bytes);
#endif
#if HAS_FULL
  c->full = (float*)aligned_alloc(64, ((size_t)COUT * OH * OW * sizeof(float) + 63) / 64 * 64);
  if (!c->full) { ctx_destroy(c); return 4; }
#endif
  *out = c;
  return 0;
}

#ifndef PT_NO_SINGLE
/* The single-layer interface (KernelLibrary, export's per-layer libraries): one
   process-wide context. It is the only mutable static state in this file, and
   -DPT_NO_SINGLE leaves it out (a network links many layers, each would define pt_run). */
static kctx* pt_single;

PT_EXPORT void pt_free(void) {
  ctx_destroy(pt_single);
  pt_single = 0;
}

PT_EXPORT int pt_init(const void* blob, long long n) {
  pt_free();
  return ctx_create(blob, n, &pt_single);
}

PT_EXPORT int pt_run(const float* x, float* y) { return ctx_run(pt_single, x, y); }
#endif

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
  kctx* ctx = 0;
  const int rc = ctx_create(wb, nw, &ctx);
  if (rc) { fprintf(stderr, "kernel: weights file rejected (code %d)\n", rc); return 3; }
  const int warmup = atoi(argv[3]), repeats = atoi(argv[4]);
  float* y = (float*)aligned_alloc(64, ((size_t)OUT_ELEMS * 4 + 63) / 64 * 64);
  double* times = (double*)malloc(sizeof(double) * (repeats > 0 ? repeats : 1));
  for (int r = 0; r < warmup; ++r) ctx_run(ctx, x, y);
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now_s(); ctx_run(ctx, x, y); times[r] = now_s() - t0;
  }
  if (repeats < 1) ctx_run(ctx, x, y);
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
  ctx_destroy(ctx);
  return 0;
}
#endif
"""
