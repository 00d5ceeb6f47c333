"""Generate the C source of one pattern-sparse conv layer for one KernelConfig.

The source is specialised to the layer: shape constants, the patterns actually
used (one loop each, taps as constants), the filter order (FKR) and the thread
schedule are baked in, and so is the epilogue (bias, then ReLU when the
layer has one, then a 2x2/stride-2 max-pool pass when it has one; a BatchNorm is
already folded into the weights and bias); the weights travel in a separate blob (see
:mod:`codegen.fkw`).

The code is reentrant and its entry points carry a prefix ``P`` (``symbol_prefix``,
default ``pt_kernel``), so many layers, each its own translation unit (their
``#define`` s differ), link into one program::

    typedef struct P_ctx P_ctx;                                  /* opaque */
    int  P_create(const void* blob, long long n, P_ctx** out);   /* copies what it needs */
    int  P_run(P_ctx* c, const float* x, float* y);              /* NCHW (1, cin, h, w) in */
    void P_destroy(P_ctx* c);                                    /* NULL is fine */

Each context owns its weights and buffers; contexts may run at once in different
threads (see :mod:`codegen.harness` for the error codes). A network build compiles
each layer's :attr:`GeneratedKernel.source` with ``-DPT_NO_SINGLE``
(:func:`codegen.object_command`) and declares it with :attr:`GeneratedKernel.header`.
Without that macro the same source also has the single-layer interface
(``pt_init``, ``pt_run``, ``pt_free`` over one static context; the shared library
:class:`codegen.KernelLibrary` loads) and, with ``-DPT_MAIN``, is the standalone
executable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from codegen import fkw
from codegen.config import KernelConfig, config_space, max_shift
from codegen.harness import (
    DEFAULT_PREFIX,
    HARNESS_C,
    PRELUDE_C,
    api_definitions,
    api_header,
    check_prefix,
)
from codegen.layout import INPUT_SLACK, Layout, OutputLayout
from codegen.padding import PAD_C
from codegen.target import Target
from codegen.tile_io import pools_in_tile
from codegen.tiles import tile_function, variants
from search_spaces.layers import PrunedLayer

_ARRAYS = {
    "fkw": (("fstart", "int32_t"), ("rel", "uint16_t"), ("chan", "uint16_t"), ("wt", "float"),
            ("perm", "int32_t"), ("bias", "float")),
    "dense": (("wd", "float"), ("pid", "int16_t"), ("perm", "int32_t"), ("bias", "float")),
    "csr": (("off", "int32_t"), ("idx", "int32_t"), ("wt", "float"), ("perm", "int32_t"),
            ("bias", "float")),
}


@dataclass(frozen=True)
class GeneratedKernel:
    """C source plus the weight blob it reads.

    Attributes:
        name: Short identifier (layer name, format, config hash).
        source: Complete C translation unit.
        weights: The blob for ``pt_init`` / the executable's weights file.
        threads: Threads the code was generated for (OpenMP needed when > 1).
        format_bytes: Bytes of the weight format proper (FKW/dense/CSR).
        meta: Layout and schedule facts (JSON-friendly).
        symbol_prefix: ``P`` of the entry points ``P_create``, ``P_run``, ``P_destroy``.
        header: C declarations of those entry points (a header's text; the source
            has the same ones).
    """

    name: str
    source: str
    weights: bytes
    threads: int
    format_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)
    symbol_prefix: str = DEFAULT_PREFIX
    header: str = ""


def _constants(layer: PrunedLayer, cfg: KernelConfig, lay: Layout, k_used: int,
               packed: fkw.Packed, out: OutputLayout, pit: bool, ext_in: bool) -> str:
    s = layer.spec
    consts = {
        "CIN": s.cin, "H": s.h, "W": s.w, "COUT": s.cout, "OH": s.out_h, "OW": s.out_w,
        "S": s.stride, "PAD": s.padding, "KH": s.kh, "KK": s.kh * s.kw, "CIN_PG": s.cin_per_group,
        "COUT_PG": s.cout // s.groups, "WPH": lay.wph, "HP": lay.hp, "PS": lay.plane,
        "CS": lay.chan_stride, "NPLANES": lay.nplanes, "RP": lay.rphase, "NB": lay.nblocks,
        "ICB": cfg.ic_block, "KU": max(k_used, 1),
        "R": lay.rows, "TW": lay.tw, "NTX": lay.ntx, "NTY": lay.nty, "OCB": cfg.oc_block,
        "NTHREADS": cfg.threads, "NGROUPS": -(-s.cout // cfg.oc_block),
        # Fused 2x2/stride-2 max-pool: the conv writes OH x OW into a scratch buffer,
        # the pooling pass writes POH x POW (floor: an odd last row/column is dropped).
        "POOL": int(layer.maxpool), "POH": s.out_h // 2 if layer.maxpool else s.out_h,
        "POW": s.out_w // 2 if layer.maxpool else s.out_w,
        # PIT: the tiles pool their registers (tile_io.pools_in_tile); the scratch then holds
        # only partial sums between channel blocks, and there is no separate pass.
        "PIT": int(pit),
        # Where the tiles store output (c, y, x): OOFF + c * OCS + y * OWP + x.
        "OCS": out.chan_stride, "OWP": out.row_pitch, "OOFF": out.offset,
        # EXT_IN: the padded input buffer is the caller's (P_run_in), borders zeroed per run.
        "EXT_IN": int(ext_in),
        # BAND: one thread, row bands outermost: the input is padded band by band
        # (codegen.padding), just before the band's tiles read it.
        "BAND": int(cfg.loop_order == "tile_block_group" and cfg.threads == 1),
    }
    lines = [f"#define {k} {v}" for k, v in consts.items()]
    lines.append(f"#define IN_FLOATS {lay.input_floats}L")
    lines.append(f"#define IN_SLACK {INPUT_SLACK}")
    lines.append(f"#define VL {cfg.vector_width}")
    vl = cfg.vector_width
    # __builtin_shuffle masks picking the even / odd lanes of two concatenated vectors.
    lines.append(f"#define EVEN_LANES {{{', '.join(str(2 * i) for i in range(vl))}}}")
    lines.append(f"#define ODD_LANES {{{', '.join(str(2 * i + 1) for i in range(vl))}}}")
    lines.append(_shift_macros(cfg, max_shift(s)))
    for name, arr in packed.arrays:  # prefetch clamps: last valid index of chan / idx
        if name in ("chan", "idx"):
            lines.append(f"#define {'NCHAN' if name == 'chan' else 'NNZ'} {max(arr.size, 1)}")
    return "\n".join(lines)


_NATIVE_SHIFT = {16: "(vf)_mm512_alignr_epi32((__m512i)(b), (__m512i)(a), {k})",
                 8: "(vf)_mm256_alignr_epi32((__m256i)(b), (__m256i)(a), {k})"}


def _shift_macros(cfg: KernelConfig, max_k: int) -> str:
    """``SHIFTk(a, b)`` for tap_shuffle and shift_sums: lanes k..VL-1 of ``a`` then 0..k-1
    of ``b`` (what an unaligned load at +k reads). One ``valignd`` on AVX-512 and one ``ext``
    on NEON; GCC's generic shuffle picks a two-table permute that clobbers its index
    register."""
    if not (cfg.tap_shuffle or cfg.shift_sums) or max_k < 1:
        return ""
    vl, ks = cfg.vector_width, range(1, max_k + 1)
    lanes = {k: ", ".join(str(k + i) for i in range(vl)) for k in ks}
    generic = {k: f"__builtin_shuffle((a), (b), (vi){{{lanes[k]}}})" for k in ks}
    avx512 = {k: _NATIVE_SHIFT[vl].format(k=k) if vl in _NATIVE_SHIFT else generic[k]
              for k in ks}
    neon = {k: f"(vf)vextq_f32((float32x4_t)(a), (float32x4_t)(b), {k})" for k in ks}
    lines = ["#if defined(__AVX512F__) && defined(__AVX512VL__)", "#include <immintrin.h>"]
    lines += [f"#define SHIFT{k}(a, b) {avx512[k]}" for k in ks]
    lines += ["#elif defined(__ARM_NEON) && VL == 4", "#include <arm_neon.h>"]
    lines += [f"#define SHIFT{k}(a, b) {neon[k]}" for k in ks]
    lines.append("#else")
    lines += [f"#define SHIFT{k}(a, b) {generic[k]}" for k in ks]
    lines.append("#endif")
    return "\n".join(lines)


def _context(fmt: str, packed: fkw.Packed, prefix: str) -> str:
    """The context struct (everything one instance owns) and the blob's array binding."""
    lines = [
        f"typedef {prefix}_ctx kctx; /* the file's own name for it */",
        f"struct {prefix}_ctx {{",
        "  float* in;            /* zero-bordered copy of the input (codegen.padding) */",
        "  float* full;          /* POOL: the conv's OH x OW output before pooling */",
        "  unsigned char* blob;  /* 64-byte-aligned copy of the weights; arrays point into it */",
    ]
    lines += [f"  const {ctype}* {name};" for name, ctype in _ARRAYS[fmt]]
    lines.append("};")
    sizes = [str(arr.nbytes) for _, arr in packed.arrays]
    lines.append(f"#define N_ARRAYS {len(sizes)}")
    lines.append(f"static const long long EXPECT_BYTES[N_ARRAYS] = {{{', '.join(sizes)}}};")
    lines.append("static void bind_arrays(kctx* c, unsigned char** arr) {")
    lines += [f"  c->{name} = (const {ctype}*)arr[{i}];"
              for i, (name, ctype) in enumerate(_ARRAYS[fmt])]
    lines.append("}")
    return "\n".join(lines)


def _schedule(layer: PrunedLayer, cfg: KernelConfig, order: Any) -> tuple[str, list[int]]:
    work = fkw.group_work(layer, order, cfg.oc_block)
    sched = fkw.thread_schedule(work, cfg.threads, cfg.thread_mapping)
    flat = [g for t in sched for g in t]
    starts = [0]
    for t in sched:
        starts.append(starts[-1] + len(t))
    per_thread = [sum(work[g] for g in t) for t in sched]
    src = (
        f"static const int32_t SCHED_START[NTHREADS + 1] = {{{', '.join(map(str, starts))}}};\n"
        f"static const int32_t SCHED[NGROUPS] = {{{', '.join(map(str, flat))}}};"
    )
    return src, per_thread


def _dispatch(lay: Layout) -> str:
    var = variants(lay)
    lines = ["static inline void do_tile(const kctx* restrict c, float* y, int i, int b, int ty,"
             " int tx) {",
             "  const int oy = ty * R, ox = tx * TW;",
             "  const int last_r = (ty == NTY - 1), last_c = (tx == NTX - 1);"]
    for last_r in (False, True):
        for last_c in (False, True):
            v = var[(last_r, last_c)]
            cond = f"last_r == {int(last_r)} && last_c == {int(last_c)}"
            lines.append(f"  if ({cond}) {{ {v.name}(c, y, i, b, oy, ox); return; }}")
    lines.append("}")
    return "\n".join(lines)


_LOOPS = {
    "block_group_tile": (
        "for (int b = 0; b < NB; ++b) for (int gi = g0; gi < g1; ++gi) {{ {grp}"
        " for (int ty = 0; ty < NTY; ++ty) for (int tx = 0; tx < NTX; ++tx)"
        " for (int i = i0; i < i1; ++i) do_tile(c, y, i, b, ty, tx); }}"
    ),
    "group_block_tile": (
        "for (int gi = g0; gi < g1; ++gi) {{ {grp} for (int b = 0; b < NB; ++b)"
        " for (int ty = 0; ty < NTY; ++ty) for (int tx = 0; tx < NTX; ++tx)"
        " for (int i = i0; i < i1; ++i) do_tile(c, y, i, b, ty, tx); }}"
    ),
    "block_group_filter": (
        "for (int b = 0; b < NB; ++b) for (int gi = g0; gi < g1; ++gi) {{ {grp}"
        " for (int i = i0; i < i1; ++i) for (int ty = 0; ty < NTY; ++ty)"
        " for (int tx = 0; tx < NTX; ++tx) do_tile(c, y, i, b, ty, tx); }}"
    ),
    # One tile at a time for every filter: its input block stays in L1 and its partial
    # outputs in L2 while all of the thread's filters pass over it.
    "tile_block_group": (
        "for (int ty = 0; ty < NTY; ++ty) {{ if (x) pad_band(c->in, x, ty);"
        " for (int tx = 0; tx < NTX; ++tx)"
        " for (int b = 0; b < NB; ++b) for (int gi = g0; gi < g1; ++gi) {{ {grp}"
        " for (int i = i0; i < i1; ++i) do_tile(c, y, i, b, ty, tx); }} }}"
    ),
}


def _compute(cfg: KernelConfig) -> str:
    grp = ("const int g = SCHED[gi]; const int i0 = g * OCB;"
           " const int i1 = (i0 + OCB < COUT) ? i0 + OCB : COUT;")
    loop = _LOOPS[cfg.loop_order].format(grp=grp)
    # y: where the tiles store (the output, or the context's scratch when pooling);
    # x: the input still to pad into c->in band by band (BAND), else NULL.
    return ("static void compute(const kctx* restrict c, float* y, int t,"
            " const float* restrict x) {\n"
            "  const int g0 = SCHED_START[t], g1 = SCHED_START[t + 1];\n  (void)x;\n"
            f"  {loop}\n}}")


def generate(layer: PrunedLayer, cfg: KernelConfig, target: Target, *,
             symbol_prefix: str = DEFAULT_PREFIX, output_layout: OutputLayout | None = None,
             external_input: bool = False, pool_in_tile: bool = True) -> GeneratedKernel:
    """Emit the C source and weight blob of ``layer`` under ``cfg`` for ``target``.

    Args:
        layer: The pruned layer (weights, patterns, fused epilogue).
        cfg: The kernel config.
        target: What the code is compiled for.
        symbol_prefix: ``P`` of the entry points ``P_create``/``P_run``/``P_destroy``:
            one per layer when several link into one program (e.g. ``"ptl3"``).
        output_layout: Store the output there instead of plain NCHW: the next layer's
            zero-bordered input buffer (:meth:`Layout.input_as_output`), so that layer
            runs without its padding copy. Only the valid outputs are written; not with
            a fused max-pool.
        external_input: The context owns no padded input buffer; ``P_run_in`` runs on
            the caller's, which a producer may have filled (a network's arena; see
            :func:`codegen.harness.api_definitions`).
        pool_in_tile: With a fused max-pool, pool on the tile's registers where the tile
            has an even number of rows (:func:`codegen.tile_io.pools_in_tile`) instead of
            storing the full output and pooling it in a separate pass. Bitwise the same
            result; False only to compare the two.

    Raises:
        ConfigError: ``cfg`` is outside :func:`codegen.config_space` of the layer and
            target (checked here, before anything is compiled).
        ValueError: ``symbol_prefix`` is not a C identifier (see
            :func:`codegen.harness.check_prefix`), or ``output_layout`` is given for a
            layer with a fused max-pool.
    """
    check_prefix(symbol_prefix)
    if output_layout is not None and layer.maxpool:
        raise ValueError(f"layer {layer.spec.name!r}: a fused max-pool writes plain NCHW; "
                         "output_layout needs a layer without one")
    s = layer.spec
    out = output_layout or OutputLayout(s.out_h * s.out_w, s.out_w, 0)
    config_space(layer.spec, target).validate(cfg)
    lay = Layout.of(layer.spec, cfg)
    packed = fkw.pack(layer, cfg, lay.plane_offsets() if cfg.format == "csr" else None)
    pats = [layer.pattern_set[p] for p in packed.used_patterns]
    sched_src, per_thread = _schedule(layer, cfg, packed.order)
    var = sorted(set(variants(lay).values()), key=lambda v: v.name)
    pit = pool_in_tile and pools_in_tile(lay, layer.maxpool)
    header = api_header(symbol_prefix, (
        f"pattune kernel {s.name!r}: x (1, {s.cin}, {s.h}, {s.w}) -> y {layer.output_shape}, "
        f"float32 NCHW; conv2d + bias{' + relu' if layer.relu else ''}"
        f"{' + maxpool 2x2/2' if layer.maxpool else ''}; {cfg.threads} thread(s)"),
        external_input=external_input)
    parts = [
        (
            f"/* pattune codegen: layer {layer.spec.name!r} {layer.spec.signature()}\n"
            f"   computes conv2d + bias{' + relu' if layer.relu else ''}"
            f"{' + maxpool 2x2/2' if layer.maxpool else ''}"
            " (any BatchNorm folded into weights and bias)\n"
            f"   weights {layer.weights_hash} target {target.name} ({target.isa})\n"
            f"   config {cfg.to_json()} */"
        ),
        _constants(layer, cfg, lay, len(pats), packed, out, pit, external_input),
        PRELUDE_C,
        header,
        _context(cfg.format, packed, symbol_prefix),
        sched_src,
        *(tile_function(v, lay, cfg, pats, relu=layer.relu, pool=pit) for v in var),
        _dispatch(lay),
        PAD_C,
        _compute(cfg),
        HARNESS_C,
        api_definitions(symbol_prefix, external_input=external_input),
    ]
    epilogue = ("-relu" if layer.relu else "") + ("-pool" if layer.maxpool else "")
    name = f"{layer.spec.name or 'layer'}{epilogue}-{cfg.format}-{cfg.stable_hash()[:8]}"
    meta = {
        "layout": {"wph": lay.wph, "hp": lay.hp, "ntx": lay.ntx, "nty": lay.nty,
                   "rows_last": lay.rows_last, "valid_last": lay.valid_last},
        "used_patterns": list(packed.used_patterns),
        "relu": layer.relu,
        "maxpool": layer.maxpool,
        "pool_in_tile": pit,
        "work_per_thread": per_thread,
        "output_layout": None if output_layout is None else dataclasses.asdict(output_layout),
        "external_input": external_input,
        "input_floats": lay.input_floats + INPUT_SLACK,
    }
    return GeneratedKernel(
        name=name.replace("/", "_"), source="\n\n".join(parts) + "\n", weights=fkw.blob(packed),
        threads=cfg.threads, format_bytes=packed.format_bytes, meta=meta,
        symbol_prefix=symbol_prefix, header=header,
    )
