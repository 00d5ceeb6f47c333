"""A tuned pattern layer inside a network: its own translation unit behind three symbols.

Each pattern layer is a C file exporting ``P_create(blob, n, &ctx)``, ``P_run(ctx, x, y)``
and ``P_destroy(ctx)`` under a prefix ``P`` unique to the layer and the network
(``<network prefix>_l<index>``), the blob being one section of the weights file. The
network (``model.c``) creates each layer's context at model creation, runs it as one op
(input plain NCHW, output the kernel's output: pooled when it fuses the max-pool) and
adds the ReLU/ReLU6 after it when the model has one the kernel does not fuse.

Only :func:`pattern_unit` knows what the file holds. Today it is a dense direct
convolution on the layer's masked weights plus the layer's epilogue (the ops of
``pt_network_ops.h``): ``codegen.generate`` does not emit prefixed reentrant kernels yet.
When it does (``generate(layer, cfg, target, symbol_prefix=P)``), :func:`pattern_unit`
returns ``(kernel.source, kernel.weights)`` and nothing else changes.
"""

from __future__ import annotations

import numpy as np

from codegen.config import KernelConfig
from codegen.network.kernels import (
    ACT_C,
    CHUNK,
    ConvLayout,
    OpCode,
    Ptrs,
    direct_conv_body,
    pack_conv,
    par,
)
from codegen.network.ops import Conv2d
from codegen.network.tiles import conv_tile
from codegen.target import Target
from search_spaces.layers import PrunedLayer


def pattern_unit(op: Conv2d, layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                 prefix: str) -> tuple[str, bytes]:
    """The C source and weight blob of pattern layer ``layer`` under symbol prefix ``prefix``.

    Returns:
        ``(source, blob)``: a translation unit exporting ``prefix_create``,
        ``prefix_run``, ``prefix_destroy``, and the blob ``prefix_create`` takes.

    Once ``codegen.generate`` takes ``symbol_prefix``, this body becomes::

        kernel = generate(layer, cfg or config_space(layer.spec, target).default(), target,
                          symbol_prefix=prefix)
        return kernel.source, kernel.weights
    """
    return _dense_stand_in(op, layer, cfg, target, prefix)


def _dense_stand_in(op: Conv2d, layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                    p: str) -> tuple[str, bytes]:
    """The layer as a dense direct convolution (+ bias, ReLU, 2x2 max-pool) behind the API."""
    vl = target.vector_floats
    lay = ConvLayout.of(op, vl, target.vector_registers)
    bias = np.zeros(op.cout, np.float32) if layer.bias is None else np.asarray(layer.bias)
    wp, bp = pack_conv(np.asarray(layer.weights), bias, op.groups, lay.ocb)
    wbytes = np.ascontiguousarray(wp, "<f4").tobytes()
    boff = -(-len(wbytes) // 64) * 64
    blob = wbytes + bytes(boff - len(wbytes)) + np.ascontiguousarray(bp, "<f4").tobytes()
    threads = cfg.threads if cfg is not None else 1
    oh, ow = op.out_h, op.out_w
    full = op.cout * oh * ow if layer.maxpool else 0
    conv = direct_conv_body(op, lay, "relu" if layer.relu else "none", "x",
                            "c->full" if layer.maxpool else "y", "(const float*)c->blob",
                            f"(const float*)(c->blob + {boff})", "c->pad")
    pool = (par(op.cout, f"pt_maxpool(c->full, y, i, {oh}, {ow}, 2, 2, 0, {oh // 2}, {ow // 2})")
            if layer.maxpool else "")
    source = f"""/* pattune network: pattern layer {layer.spec.name!r} ({layer.weights_hash}) as a dense
   direct convolution on its masked weights{" + relu" if layer.relu else ""}\
{" + maxpool 2x2/2" if layer.maxpool else ""}: the stand-in until codegen.generate emits
   prefixed reentrant pattern kernels. Exports {p}_create, {p}_run, {p}_destroy. */
#define VL {vl}
#include <stdlib.h>
#include "pt_network_ops.h"
#define PT_KEXPORT __attribute__((visibility("default")))

{conv_tile(lay.ocb, lay.nv)}
typedef struct {p}_ctx {{ unsigned char* blob; float* pad; float* full; }} {p}_ctx;

PT_KEXPORT void {p}_destroy({p}_ctx* c) {{
  if (!c) return;
  free(c->blob); free(c->pad); free(c->full); free(c);
}}

PT_KEXPORT int {p}_create(const void* blob, long long n, {p}_ctx** out) {{
  if (!out) return 1;
  *out = 0;
  if (!blob) return 2;
  if (n != {len(blob)}LL) return 5;
  {p}_ctx* c = ({p}_ctx*)calloc(1, sizeof *c);
  if (!c) return 4;
  c->blob = (unsigned char*)aligned_alloc(64, {-(-len(blob) // 64) * 64});
  c->pad = (float*)aligned_alloc(64, {(lay.scratch(op) + 1024) * 4});
  c->full = {f"(float*)aligned_alloc(64, {(full + 1024) * 4})" if full else "0"};
  if (!c->blob || !c->pad || ({int(bool(full))} && !c->full)) {{ {p}_destroy(c); return 4; }}
  memcpy(c->blob, blob, (size_t)n);
  *out = c;
  return 0;
}}

PT_KEXPORT int {p}_run({p}_ctx* c, const float* x, float* y) {{
  if (!c || !x || !y) return 1;
  const int nt = {threads};
  {conv}
  {pool}
  return 0;
}}
"""
    return source, blob


def plan_pattern(op: Conv2d, layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                 prefix: str) -> OpCode:
    """The network side of one pattern layer: section, context, call, the ReLU after it."""
    source, blob = pattern_unit(op, layer, cfg, target, prefix)
    post = "none" if op.act == "relu" and layer.relu else op.act
    p = prefix

    def body(ptr: Ptrs) -> str:
        lines = [f"const int rc = {p}_run(({p}_ctx*){ptr.layer}, {ptr.inputs[0]}, {ptr.output});",
                 f"if (rc) return pt_fail(m->err, PT_ERRLEN, PT_ERR_LAYER, \"layer {op.module}: "
                 f"kernel failed (code %d)\", rc);"]
        if post != "none":
            lines.append(par(-(-op.out_elems // CHUNK), f"pt_act({ptr.output}, {ptr.output}, i, "
                                                         f"{op.out_elems}L, {ACT_C[post]})"))
        return "\n".join(lines)

    def create(ptr: Ptrs) -> str:
        return (f"rc = {p}_create({ptr.sections[0]}, {len(blob)}LL, ({p}_ctx**)&{ptr.layer});\n"
                f"if (rc) return pt_fail(m->err, PT_ERRLEN, PT_ERR_LAYER, \"layer {op.module}: "
                f"kernel rejected its weights (code %d)\", rc);")

    decl = (f"typedef struct {p}_ctx {p}_ctx;\n"
            f"int {p}_create(const void* blob, long long n, {p}_ctx** out);\n"
            f"int {p}_run({p}_ctx* c, const float* x, float* y);\n"
            f"void {p}_destroy({p}_ctx* c);")
    return OpCode(
        sections=(blob,), scratch_floats=0, body=body, create=create,
        destroy=lambda ptr: f"{p}_destroy(({p}_ctx*){ptr.layer}); {ptr.layer} = 0;",
        unit=(prefix, source), declarations=decl,
        info={"impl": "pattern", "symbol_prefix": prefix, "post_act": post},
    )


__all__ = ["pattern_unit", "plan_pattern"]
