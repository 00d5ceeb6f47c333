"""A tuned pattern layer inside a network: its own translation unit behind three symbols.

Each pattern layer is the generated pattern kernel of :func:`codegen.generate` for the
layer and its tuned KernelConfig (the target's default config when it has none), under a
symbol prefix ``P`` unique to the layer and the network (``<network prefix>_l<index>``):
``P_create(blob, n, &ctx)``, ``P_run(ctx, x, y)``, ``P_destroy(ctx)``, the blob (the
kernel's FKW weights) being one section of the weights file. The kernel computes the conv
and its fused epilogue (BatchNorm folded, ReLU, 2x2 max-pool). The network (``model.c``)
creates each layer's context at model creation, runs it as one op (input plain NCHW,
output the kernel's output: pooled when it fuses the max-pool) and adds the ReLU/ReLU6
after it when the model has one the kernel does not fuse. Every unit is compiled with
``-DPT_NO_SINGLE``, so the kernels' single-layer entry points are left out.

A depthwise pattern layer (MobileNet's, patterns only) is the exception: it runs the
network's own depthwise op on its pattern-masked weights behind the same three symbols
(:func:`depthwise_unit`), which was about 20 times faster than the generated kernel.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from codegen.config import KernelConfig, config_space
from codegen.generator import generate
from codegen.layout import OutputLayout
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


def layer_config(layer: PrunedLayer, cfg: KernelConfig | None, target: Target) -> KernelConfig:
    """The config a pattern layer is generated with: its tuned one, else the target's default."""
    return cfg or config_space(layer.spec, target).default()


def pattern_unit(layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                 prefix: str, *, output_layout: OutputLayout | None = None
                 ) -> tuple[str, bytes, KernelConfig, int]:
    """The C source, weight blob and config of pattern layer ``layer`` under ``prefix``.

    Returns:
        ``(source, blob, config, input_floats)``: a translation unit exporting
        ``prefix_create``, ``prefix_run_in``, ``prefix_destroy`` (its padded input buffer
        is the caller's: :func:`codegen.generate`'s ``external_input``), the blob
        ``prefix_create`` takes, the KernelConfig it was generated with (``cfg``, or the
        target's default) and the floats of that buffer. ``output_layout`` is
        :func:`codegen.generate`'s: the handoff between two pattern layers (see
        :func:`plan_pattern`).

    Raises:
        ConfigError: ``cfg`` is not a valid config of the layer on ``target``.
    """
    cfg = layer_config(layer, cfg, target)
    kernel = generate(layer, cfg, target, symbol_prefix=prefix, output_layout=output_layout,
                      external_input=True)
    return kernel.source, kernel.weights, cfg, int(kernel.meta["input_floats"])


def depthwise_unit(op: Conv2d, layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                   p: str) -> tuple[str, bytes]:
    """A depthwise pattern layer as the network's depthwise op on its pattern-masked weights.

    The generated pattern kernel is built for filters over many input channels; on a
    depthwise layer (one input channel per filter, 4 of 9 taps kept) its per-tile
    overhead dominates and it ran about 20 times slower than the network's depthwise op
    (a 1-filter register tile over 4 vectors) on the same, masked, weights. Same
    numbers, same API (``p_create``/``p_run``/``p_destroy``), the epilogue fused (bias,
    ReLU; ReLU6 runs after it as for every pattern layer).
    """
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
    source = f"""/* pattune network: depthwise pattern layer {layer.spec.name!r} ({layer.weights_hash})
   as the network's depthwise op on its pattern-masked weights{" + relu" if layer.relu else ""}\
{" + maxpool 2x2/2" if layer.maxpool else ""}. Exports {p}_create, {p}_run, {p}_destroy. */
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


def with_fused_relu(op: Conv2d, layer: PrunedLayer) -> PrunedLayer:
    """``layer`` with the kernel's ReLU epilogue on when the graph applies a ReLU after it.

    ResNet reuses one ReLU module, so pruning leaves those layers' ``relu`` off and the
    network would run the ReLU as a pass of its own over the output; the kernel clips at
    its last store instead (the same numbers: ``max(0, x)`` is exact).
    """
    if op.act == "relu" and not layer.relu:
        return dataclasses.replace(layer, relu=True)
    return layer


def post_activation(op: Conv2d, layer: PrunedLayer) -> str:
    """The activation the network applies after the kernel (one it does not fuse)."""
    return "none" if op.act == "relu" and with_fused_relu(op, layer).relu else op.act


def plan_pattern(op: Conv2d, layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                 prefix: str, *, handoff: tuple[str, OutputLayout] | None = None,
                 padded_input: bool = False) -> OpCode:
    """The network side of one pattern layer: section, context, call, the ReLU after it.

    A (non-depthwise) pattern layer's padded input buffer is arena memory
    (``OpCode.input_floats``), shared over time with other tensors like any activation:
    the kernel zeroes its borders on each run and copies its input in.

    Args:
        handoff: ``(consumer prefix, its input layout)``: store the output straight into
            the next pattern layer's padded input buffer, which then runs without its
            padding copy.
        padded_input: This layer is such a consumer: it runs ``P_run_in`` with no input.
    """
    layer = with_fused_relu(op, layer)
    floats = 0
    if op.is_depthwise:
        source, blob = depthwise_unit(op, layer, cfg, target, prefix)
        impl: dict[str, Any] = {"impl": "pattern_depthwise", "config": None}
    else:
        source, blob, used, floats = pattern_unit(
            layer, cfg, target, prefix, output_layout=handoff[1] if handoff else None)
        impl = {"impl": "pattern", "config": used.to_dict()}
    post = post_activation(op, layer)
    if handoff and post != "none":
        raise ValueError(f"layer {op.module}: an activation after the kernel ({post}) "
                         "cannot run on a handed-off output")
    p = prefix

    def body(ptr: Ptrs) -> str:
        out = ptr.next_padded if handoff else ptr.output
        if op.is_depthwise:
            call = f"{p}_run(({p}_ctx*){ptr.layer}, {ptr.inputs[0]}, {out})"
        else:
            x = "0" if padded_input else ptr.inputs[0]
            call = f"{p}_run_in(({p}_ctx*){ptr.layer}, {x}, {ptr.padded}, {out})"
        lines = [f"const int rc = {call};",
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
            f"void {p}_destroy({p}_ctx* c);"
            + ("" if op.is_depthwise else
               f"\nint {p}_run_in({p}_ctx* c, const float* x, float* in, float* y);"))
    return OpCode(
        sections=(blob,), scratch_floats=0, body=body, create=create, input_floats=floats,
        destroy=lambda ptr: f"{p}_destroy(({p}_ctx*){ptr.layer}); {ptr.layer} = 0;",
        unit=(prefix, source), declarations=decl,
        info={**impl, "symbol_prefix": prefix, "post_act": post,
              "output_to": handoff[0] if handoff else None, "padded_input": padded_input},
    )


__all__ = ["depthwise_unit", "layer_config", "pattern_unit", "plan_pattern", "post_activation"]
