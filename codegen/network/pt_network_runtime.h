/* pattune network runtime: the C API of pattune_model.h over one generated network.
 *
 * Included once by the generated model.c after it defined the network's constants
 * (PT_PREFIX, PT_FINGERPRINT, PT_N_SECTIONS, PT_SECTION_BYTES, PT_N_LAYERS, PT_N_OPS,
 * PT_ARENA_FLOATS, PT_IN_NDIM/PT_IN_DIMS/PT_IN_ELEMS, PT_OUT_*) and before it defines
 * pt_net_create_layers, pt_net_destroy_layers and pt_net_run. Everything here is
 * static except the API; there is no mutable global state: a model is its struct.
 */
#ifndef PT_NETWORK_RUNTIME_H
#define PT_NETWORK_RUNTIME_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PT_CAT_(a, b) a##b
#define PT_CAT(a, b) PT_CAT_(a, b)
#define PT_MODEL PT_CAT(PT_PREFIX, _model)
#define PT_API(name) PT_CAT(PT_PREFIX, PT_CAT(_model_, name))
#define PT_EXPORT_API __attribute__((visibility("default")))
#define PT_ERRLEN 256
/* Slack past the arena: the last vector of a row may read (never store) past a tensor. */
#define PT_ARENA_SLACK_FLOATS 1024

struct PT_MODEL {
  unsigned char* blob;                                   /* the weights file, 64-aligned */
  const float* sec[PT_N_SECTIONS > 0 ? PT_N_SECTIONS : 1];  /* section payloads */
  float* arena;                                          /* every activation and scratch */
  void* layer[PT_N_LAYERS > 0 ? PT_N_LAYERS : 1];        /* pattern kernels' contexts */
  int threads;
  double op_seconds[PT_N_OPS > 0 ? PT_N_OPS : 1];      /* per op, summed over runs */
  char err[PT_ERRLEN];
};

/* Per-op timing costs two clock reads per op (tens of ns against ops of microseconds
 * to milliseconds), so it is always on: the benchmark's per-op breakdown reads it. */
static double pt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int pt_net_create_layers(struct PT_MODEL* m);
static void pt_net_destroy_layers(struct PT_MODEL* m);
static int pt_net_run(struct PT_MODEL* m, const float* in, float* out);

static int pt_fail(char* buf, size_t len, int code, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int pt_fail(char* buf, size_t len, int code, const char* fmt, ...) {
  if (buf && len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
  }
  return code;
}

static uint32_t pt_u32(const unsigned char* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t pt_u64(const unsigned char* p) {
  return (uint64_t)pt_u32(p) | (uint64_t)pt_u32(p + 4) << 32;
}

/* zlib's CRC32, slicing by 8 over a table built per call (8 KiB, microseconds): no
 * global state, and fast enough for a few hundred MB of weights. */
static uint32_t pt_crc32(uint32_t crc, const unsigned char* p, uint64_t n) {
  uint32_t t[8][256];
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][i] = c;
  }
  for (int k = 1; k < 8; ++k)
    for (int i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  crc = ~crc;
  while (n >= 8) {
    const uint32_t a = pt_u32(p) ^ crc, b = pt_u32(p + 4);
    crc = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^
          t[3][b & 0xff] ^ t[2][(b >> 8) & 0xff] ^ t[1][(b >> 16) & 0xff] ^ t[0][b >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* The checks of codegen/network/weights.py's decode_weights, in the same order. */
static int pt_check_weights(const unsigned char* b, uint64_t size, uint64_t* payload,
                            char* err, size_t len) {
  if (size >= 8 && memcmp(b, "PTNETWTS", 8) != 0)
    return pt_fail(err, len, PT_ERR_MAGIC, "not a pattune weights file (bad magic)");
  if (size < 64)
    return pt_fail(err, len, PT_ERR_TRUNCATED,
                   "weights file truncated: %llu bytes, the header alone is 64",
                   (unsigned long long)size);
  const uint32_t version = pt_u32(b + 8);
  if (version != 1)
    return pt_fail(err, len, PT_ERR_VERSION,
                   "weights format version %u; this runtime reads version 1: export the "
                   "weights again", version);
  const uint64_t n = pt_u32(b + 24);
  if (pt_u32(b + 12) != 64 || n > (1u << 20))
    return pt_fail(err, len, PT_ERR_FORMAT, "weights header is malformed");
  const uint64_t table_end = 64 + 16 * n;
  if (size < table_end)
    return pt_fail(err, len, PT_ERR_TRUNCATED,
                   "weights file truncated: %llu bytes, its section table ends at %llu",
                   (unsigned long long)size, (unsigned long long)table_end);
  unsigned char head[64];
  memcpy(head, b, 64);
  memset(head + 28, 0, 4);
  if (pt_crc32(pt_crc32(0, head, 64), b + 64, table_end - 64) != pt_u32(b + 28))
    return pt_fail(err, len, PT_ERR_CHECKSUM,
                   "weights header checksum mismatch: the file is corrupted");
  const uint64_t fp = pt_u64(b + 16);
  if (fp != (uint64_t)PT_FINGERPRINT)
    return pt_fail(err, len, PT_ERR_NETWORK,
                   "weights belong to another network (fingerprint %016llx, this network is "
                   "%016llx)", (unsigned long long)fp, (unsigned long long)PT_FINGERPRINT);
  if (n != PT_N_SECTIONS)
    return pt_fail(err, len, PT_ERR_NETWORK,
                   "weights have %llu sections, this network has %d", (unsigned long long)n,
                   PT_N_SECTIONS);
  const uint64_t off = pt_u64(b + 32), bytes = pt_u64(b + 40);
  if (off != (table_end + 63) / 64 * 64 || bytes > size)
    return pt_fail(err, len, PT_ERR_FORMAT, "weights header is malformed");
  if (size < off + bytes)
    return pt_fail(err, len, PT_ERR_TRUNCATED, "weights file truncated: %llu bytes, expected %llu",
                   (unsigned long long)size, (unsigned long long)(off + bytes));
  if (size > off + bytes)
    return pt_fail(err, len, PT_ERR_FORMAT, "weights file has %llu bytes past its payload",
                   (unsigned long long)(size - off - bytes));
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t so = pt_u64(b + 64 + 16 * i), sb = pt_u64(b + 72 + 16 * i);
    if (so % 64 || so > bytes || sb > bytes - so)
      return pt_fail(err, len, PT_ERR_FORMAT, "weights section %llu lies outside the payload",
                     (unsigned long long)i);
    if ((long long)sb != PT_SECTION_BYTES[i])
      return pt_fail(err, len, PT_ERR_NETWORK,
                     "weights section %llu has %llu bytes, this network needs %lld",
                     (unsigned long long)i, (unsigned long long)sb, PT_SECTION_BYTES[i]);
  }
  if (pt_crc32(0, b + off, bytes) != pt_u32(b + 48))
    return pt_fail(err, len, PT_ERR_CHECKSUM,
                   "weights payload checksum mismatch: the file is corrupted");
  *payload = off;
  return PT_OK;
}

PT_EXPORT_API void PT_API(destroy)(PT_MODEL* m) {
  if (!m) return;
  pt_net_destroy_layers(m);
  free(m->arena);
  free(m->blob);
  free(m);
}

/* Takes ownership of buf (64-byte aligned, size bytes of weights file). */
static int pt_create_owned(unsigned char* buf, uint64_t size, PT_MODEL** out, char* err,
                           size_t len) {
  uint64_t payload = 0;
  const int rc = pt_check_weights(buf, size, &payload, err, len);
  if (rc) { free(buf); return rc; }
  PT_MODEL* m = (PT_MODEL*)calloc(1, sizeof(PT_MODEL));
  if (!m) { free(buf); return pt_fail(err, len, PT_ERR_MEMORY, "out of memory (model)"); }
  m->blob = buf;
  m->threads = 1;
  for (int i = 0; i < PT_N_SECTIONS; ++i)
    m->sec[i] = (const float*)(buf + payload + pt_u64(buf + 64 + 16 * i));
  const size_t arena = ((size_t)PT_ARENA_FLOATS + PT_ARENA_SLACK_FLOATS) * sizeof(float);
  m->arena = (float*)aligned_alloc(64, (arena + 63) / 64 * 64);
  if (!m->arena) {
    PT_API(destroy)(m);
    return pt_fail(err, len, PT_ERR_MEMORY, "out of memory (arena of %zu bytes)", arena);
  }
#ifdef PT_ARENA_POISON
  /* Checking builds (-DPT_ARENA_POISON): the arena starts as NaNs, so an op that reads
     memory no op of this run wrote (a padding border, a scratch) shows in the output. */
  memset(m->arena, 0xff, arena);
#else
  memset(m->arena, 0, arena);
#endif
  const int lrc = pt_net_create_layers(m);
  if (lrc) {
    pt_fail(err, len, lrc, "%s", m->err);
    PT_API(destroy)(m);
    return lrc;
  }
  *out = m;
  return PT_OK;
}

PT_EXPORT_API int PT_API(create_from_memory)(const void* data, size_t size, PT_MODEL** out,
                                             char* err, size_t len) {
  if (err && len) err[0] = 0;
  if (!out) return pt_fail(err, len, PT_ERR_ARGUMENT, "out must not be NULL");
  *out = NULL;
  if (!data && size) return pt_fail(err, len, PT_ERR_ARGUMENT, "data is NULL but size is %zu", size);
  unsigned char* buf = (unsigned char*)aligned_alloc(64, (size + 63) / 64 * 64 + 64);
  if (!buf) return pt_fail(err, len, PT_ERR_MEMORY, "out of memory (%zu bytes of weights)", size);
  if (size) memcpy(buf, data, size);
  return pt_create_owned(buf, size, out, err, len);
}

PT_EXPORT_API int PT_API(create_from_file)(const char* path, PT_MODEL** out, char* err,
                                           size_t len) {
  if (err && len) err[0] = 0;
  if (!out) return pt_fail(err, len, PT_ERR_ARGUMENT, "out must not be NULL");
  *out = NULL;
  if (!path) return pt_fail(err, len, PT_ERR_ARGUMENT, "path must not be NULL");
  FILE* fp = fopen(path, "rb");
  if (!fp)
    return pt_fail(err, len, PT_ERR_IO, "cannot open weights file %s: %s", path, strerror(errno));
  long long size = -1;
  if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
  if (size < 0 || fseek(fp, 0, SEEK_SET) != 0) {
    fclose(fp);
    return pt_fail(err, len, PT_ERR_IO, "cannot read weights file %s", path);
  }
  unsigned char* buf = (unsigned char*)aligned_alloc(64, ((size_t)size + 63) / 64 * 64 + 64);
  if (!buf) {
    fclose(fp);
    return pt_fail(err, len, PT_ERR_MEMORY, "out of memory (%lld bytes of weights)", size);
  }
  const size_t got = fread(buf, 1, (size_t)size, fp);
  fclose(fp);
  if (got != (size_t)size) {
    free(buf);
    return pt_fail(err, len, PT_ERR_IO, "cannot read weights file %s", path);
  }
  return pt_create_owned(buf, (uint64_t)size, out, err, len);
}

PT_EXPORT_API int PT_API(input_shape)(const PT_MODEL* m, int* ndim, long long* dims) {
  static const long long d[PT_IN_NDIM] = PT_IN_DIMS;
  if (!m || !ndim) return PT_ERR_ARGUMENT;
  *ndim = PT_IN_NDIM;
  if (dims) memcpy(dims, d, sizeof d);
  return PT_OK;
}

PT_EXPORT_API int PT_API(output_shape)(const PT_MODEL* m, int* ndim, long long* dims) {
  static const long long d[PT_OUT_NDIM] = PT_OUT_DIMS;
  if (!m || !ndim) return PT_ERR_ARGUMENT;
  *ndim = PT_OUT_NDIM;
  if (dims) memcpy(dims, d, sizeof d);
  return PT_OK;
}

PT_EXPORT_API size_t PT_API(input_size)(const PT_MODEL* m) { return m ? (size_t)PT_IN_ELEMS : 0; }

PT_EXPORT_API size_t PT_API(output_size)(const PT_MODEL* m) { return m ? (size_t)PT_OUT_ELEMS : 0; }

PT_EXPORT_API int PT_API(set_threads)(PT_MODEL* m, int n) {
  if (!m) return PT_ERR_ARGUMENT;
#ifdef _OPENMP
  if (n < 1)
    return pt_fail(m->err, PT_ERRLEN, PT_ERR_ARGUMENT, "threads must be >= 1; got %d", n);
#else
  if (n != 1)
    return pt_fail(m->err, PT_ERRLEN, PT_ERR_ARGUMENT,
                   "this library was built without OpenMP: threads must be 1; got %d", n);
#endif
  m->threads = n;
  return PT_OK;
}

PT_EXPORT_API int PT_API(run)(PT_MODEL* m, const float* in, float* out) {
  if (!m) return PT_ERR_ARGUMENT;
  if (!in || !out)
    return pt_fail(m->err, PT_ERRLEN, PT_ERR_ARGUMENT, "input and output must not be NULL");
  return pt_net_run(m, in, out);
}

PT_EXPORT_API int PT_API(op_seconds)(PT_MODEL* m, double* seconds, int n, int reset) {
  if (!m || (n > 0 && !seconds)) return -PT_ERR_ARGUMENT;
  for (int i = 0; i < n && i < PT_N_OPS; ++i) seconds[i] = m->op_seconds[i];
  if (reset) memset(m->op_seconds, 0, sizeof m->op_seconds);
  return PT_N_OPS;
}

PT_EXPORT_API const char* PT_API(last_error)(const PT_MODEL* m) {
  return m ? m->err : "model is NULL";
}

#endif /* PT_NETWORK_RUNTIME_H */
