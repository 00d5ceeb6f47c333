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
"""

from __future__ import annotations

from codegen.config import KernelConfig, config_space
from codegen.generator import generate
from codegen.network.kernels import ACT_C, CHUNK, OpCode, Ptrs, par
from codegen.network.ops import Conv2d
from codegen.target import Target
from search_spaces.layers import PrunedLayer


def pattern_unit(layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                 prefix: str) -> tuple[str, bytes, KernelConfig]:
    """The C source, weight blob and config of pattern layer ``layer`` under ``prefix``.

    Returns:
        ``(source, blob, config)``: a translation unit exporting ``prefix_create``,
        ``prefix_run``, ``prefix_destroy``, the blob ``prefix_create`` takes, and the
        KernelConfig it was generated with (``cfg``, or the target's default).

    Raises:
        ConfigError: ``cfg`` is not a valid config of the layer on ``target``.
    """
    cfg = cfg or config_space(layer.spec, target).default()
    kernel = generate(layer, cfg, target, symbol_prefix=prefix)
    return kernel.source, kernel.weights, cfg


def plan_pattern(op: Conv2d, layer: PrunedLayer, cfg: KernelConfig | None, target: Target,
                 prefix: str) -> OpCode:
    """The network side of one pattern layer: section, context, call, the ReLU after it."""
    source, blob, used = pattern_unit(layer, cfg, target, prefix)
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
        info={"impl": "pattern", "symbol_prefix": prefix, "post_act": post,
              "config": used.to_dict()},
    )


__all__ = ["pattern_unit", "plan_pattern"]
