"""Each dense op as C: register blocking for the target, packed weights, scratch, the call.

:func:`plan_op` turns one op of a :class:`~.graph.Graph` into an :class:`OpCode`: the
sections of the weights file it reads (packed in the order its inner loop reads them),
the scratch floats it needs in the arena, and a function that writes its C statements
once the arena offsets are known. The C functions themselves are in
``pt_network_ops.h``; the generated call passes literal shapes so GCC specialises each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from codegen.network.ops import (
    Activation,
    AdaptiveAvgPool2d,
    Add,
    Conv2d,
    Flatten,
    Linear,
    Op,
    Pool2d,
)
from codegen.target import Target

ACT_C = {"none": "PT_ACT_NONE", "relu": "PT_ACT_RELU", "relu6": "PT_ACT_RELU6"}


@dataclass(frozen=True)
class Ptrs:
    """C expressions an op's code uses.

    Attributes:
        inputs: One ``const float*`` expression per input tensor.
        output: The ``float*`` expression of the output tensor.
        scratch: The op's scratch space (``""`` when it has none).
        sections: One ``const float*`` expression per section of the op.
        layer: Its pattern kernel's context slot (``m->layer[i]``), pattern ops only.
    """

    inputs: tuple[str, ...]
    output: str
    scratch: str = ""
    sections: tuple[str, ...] = ()
    layer: str = ""


@dataclass(frozen=True)
class OpCode:
    """What one op becomes in C.

    Attributes:
        sections: Its weights, packed, as the bytes of its weights-file sections.
        scratch_floats: Arena scratch it needs while it runs.
        body: Writes the op's C statements (run inside ``pt_net_run``; ``nt`` is the
            thread count, ``m`` the model) given its pointers.
        create: Writes C statements creating its context (pattern kernels), or None.
        destroy: Writes C statements freeing it, or None.
        unit: ``(file stem, C source)`` of a translation unit of its own, or None.
        declarations: C declarations ``model.c`` needs for it (prototypes).
        info: Blocking and layout choices, for ``model.json`` and the docs.
    """

    sections: tuple[bytes, ...]
    scratch_floats: int
    body: Callable[[Ptrs], str]
    create: Callable[[Ptrs], str] | None = None
    destroy: Callable[[Ptrs], str] | None = None
    unit: tuple[str, str] | None = None
    declarations: str = ""
    info: dict[str, int | str] = field(default_factory=dict)


def _f32(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class ConvLayout:
    """Blocking and padded-plane geometry of a direct convolution.

    Attributes:
        ocb: Output channels per register tile.
        nv: Vectors of one output row per register tile.
        wph: Floats per padded plane row.
        plane: Floats per phase plane (rows x wph, rounded to 64 bytes).
    """

    ocb: int
    nv: int
    wph: int
    plane: int

    @classmethod
    def of(cls, op: Conv2d, vl: int, regs: int) -> ConvLayout:
        """Choose the register tile for ``op`` on vectors of ``vl`` floats and ``regs`` registers."""
        coutpg = op.cout // op.groups
        nxv = _ceil(op.out_w, vl)
        if coutpg == 1:  # depthwise: one filter, all of its row
            nv = min(nxv, max(1, regs // 2 - 2), 8)
            ocb = 1
        else:
            nv = min(nxv, 4 if regs >= 32 else 2)
            ocb = min(coutpg, max(1, (regs - nv - 2) // nv), 8 if regs >= 32 else 6)
        s = op.stride
        wph = max(_ceil(op.w + 2 * op.padding, s),
                  _ceil(op.out_w, nv * vl) * nv * vl + (op.kw - 1) // s)
        plane = _ceil((op.h + 2 * op.padding) * wph, 16) * 16
        return cls(ocb=ocb, nv=nv, wph=wph, plane=plane)

    def scratch(self, op: Conv2d) -> int:
        """Floats of the padded phase planes."""
        return op.cin * op.stride * self.plane


def pack_conv(w: np.ndarray, b: np.ndarray, groups: int, ocb: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights ``(cout, cin/g, kh, kw)`` as ``[g][blocks][cin/g][kh][kw][ocb]``, bias as
    ``[g][blocks][ocb]``; zero filters pad each group's last block."""
    cout, cinpg, kh, kw = w.shape
    coutpg = cout // groups
    nob = _ceil(coutpg, ocb)
    wg = np.zeros((groups, nob * ocb, cinpg, kh, kw), np.float32)
    wg[:, :coutpg] = w.reshape(groups, coutpg, cinpg, kh, kw)
    bg = np.zeros((groups, nob * ocb), np.float32)
    bg[:, :coutpg] = b.reshape(groups, coutpg)
    packed = wg.reshape(groups, nob, ocb, cinpg, kh, kw).transpose(0, 1, 3, 4, 5, 2)
    return packed, bg


def direct_conv_body(op: Conv2d, lay: ConvLayout, act: str, x: str, y: str, w: str, b: str,
                     scratch: str) -> str:
    """C statements: pad ``x`` into ``scratch``, convolve into ``y``."""
    hp = op.h + 2 * op.padding
    return (
        f"pt_pad_planes({x}, {scratch}, {op.cin}, {op.h}, {op.w}, {op.stride}, {op.padding}, "
        f"{hp}, {lay.wph}, {lay.plane}, nt);\n"
        f"pt_conv_direct({scratch}, {y}, {w}, {b}, {op.groups}, {op.cin // op.groups}, "
        f"{op.cout // op.groups}, {op.out_h}, {op.out_w}, {op.kh}, {op.kw}, {op.stride}, "
        f"{lay.wph}, {lay.plane}, {lay.ocb}, {lay.nv}, {ACT_C[act]}, nt);"
    )


def _gemm_blocking(m: int, n: int, vl: int, regs: int) -> tuple[int, int]:
    nv = min(_ceil(n, vl), 3 if regs >= 32 else 2)
    mr = min(m, max(1, (regs - nv - 2) // nv), 8 if regs >= 32 else 6)
    return mr, nv


def _conv(op: Conv2d, w: np.ndarray, b: np.ndarray, t: Target) -> OpCode:
    vl, regs = t.vector_floats, t.vector_registers
    if op.is_pointwise:
        m, k, n = op.cout, op.cin, op.out_h * op.out_w
        mr, nv = _gemm_blocking(m, n, vl, regs)
        nmb = _ceil(m, mr)
        wp = np.zeros((nmb * mr, k), np.float32)
        wp[:m] = w.reshape(m, k)
        bp = np.zeros(nmb * mr, np.float32)
        bp[:m] = b
        packed = wp.reshape(nmb, mr, k).transpose(0, 2, 1)
        strided = op.stride > 1

        def gemm(p: Ptrs) -> str:
            x = p.scratch if strided else p.inputs[0]
            pre = (f"pt_subsample({p.inputs[0]}, {p.scratch}, {op.cin}, {op.h}, {op.w}, "
                   f"{op.stride}, {op.out_h}, {op.out_w}, nt);\n" if strided else "")
            return pre + (f"pt_gemm({x}, {p.output}, {p.sections[0]}, {p.sections[1]}, {m}, "
                          f"{k}, {n}, {mr}, {nv}, {ACT_C[op.act]}, nt);")

        return OpCode(sections=(_f32(packed), _f32(bp)),
                      scratch_floats=op.cin * n if strided else 0, body=gemm,
                      info={"impl": "gemm", "mr": mr, "nv": nv})
    lay = ConvLayout.of(op, vl, regs)
    wp, bp = pack_conv(w, b, op.groups, lay.ocb)
    return OpCode(
        sections=(_f32(wp), _f32(bp)), scratch_floats=lay.scratch(op),
        body=lambda p: direct_conv_body(op, lay, op.act, p.inputs[0], p.output, p.sections[0],
                                        p.sections[1], p.scratch),
        info={"impl": "depthwise" if op.is_depthwise else "direct", "ocb": lay.ocb,
              "nv": lay.nv},
    )


def _pool(op: Pool2d) -> OpCode:
    oh, ow = op.out_shape[2], op.out_shape[3]
    if op.mode == "max":
        def body(p: Ptrs) -> str:
            return (f"pt_maxpool({p.inputs[0]}, {p.output}, {op.c}, {op.h}, {op.w}, {op.k}, "
                    f"{op.stride}, {op.padding}, {oh}, {ow}, nt);")
    else:
        def body(p: Ptrs) -> str:
            return (f"pt_avgpool({p.inputs[0]}, {p.output}, {op.c}, {op.h}, {op.w}, {op.k}, "
                    f"{op.stride}, {op.padding}, {oh}, {ow}, {int(op.count_include_pad)}, nt);")
    return OpCode(sections=(), scratch_floats=0, body=body, info={"impl": op.mode + "pool"})


def _adaptive(op: AdaptiveAvgPool2d) -> OpCode:
    if op.is_global:
        def body(p: Ptrs) -> str:
            return f"pt_global_avg({p.inputs[0]}, {p.output}, {op.c}, {op.h * op.w}, nt);"
    else:
        def body(p: Ptrs) -> str:
            return (f"pt_adaptive_avg({p.inputs[0]}, {p.output}, {op.c}, {op.h}, {op.w}, "
                    f"{op.oh}, {op.ow}, nt);")
    return OpCode(sections=(), scratch_floats=0, body=body,
                  info={"impl": "global_avg" if op.is_global else "adaptive_avg"})


def plan_op(op: Op, params: dict[str, tuple[np.ndarray, np.ndarray]], target: Target) -> OpCode:
    """The C of dense op ``op`` (pattern convs go through :mod:`.pattern_kernel`).

    Raises:
        TypeError: ``op`` is a pattern conv or of an unknown kind.
    """
    if isinstance(op, Conv2d) and not op.pattern:
        w, b = params[op.name]
        return _conv(op, w, b, target)
    if isinstance(op, Pool2d):
        return _pool(op)
    if isinstance(op, AdaptiveAvgPool2d):
        return _adaptive(op)
    if isinstance(op, Add):
        return OpCode(sections=(), scratch_floats=0, info={"impl": "add"},
                      body=lambda p: (f"pt_add({p.inputs[0]}, {p.inputs[1]}, {p.output}, "
                                      f"{op.out_elems}L, {ACT_C[op.act]}, nt);"))
    if isinstance(op, Activation):
        return OpCode(sections=(), scratch_floats=0, info={"impl": "activation"},
                      body=lambda p: (f"pt_act({p.inputs[0]}, {p.output}, {op.out_elems}L, "
                                      f"{ACT_C[op.act]}, nt);"))
    if isinstance(op, Flatten):
        return OpCode(sections=(), scratch_floats=0, body=lambda p: "/* same memory */",
                      info={"impl": "alias"})
    if isinstance(op, Linear):
        w, b = params[op.name]
        return OpCode(sections=(_f32(w), _f32(b)), scratch_floats=0, info={"impl": "gemv"},
                      body=lambda p: (f"pt_linear({p.inputs[0]}, {p.output}, {p.sections[0]}, "
                                      f"{p.sections[1]}, {op.in_features}, {op.out_features}, "
                                      f"{ACT_C[op.act]}, nt);"))
    raise TypeError(f"no C for op {op.name!r} of kind {op.kind!r}")


__all__ = ["ACT_C", "ConvLayout", "OpCode", "Ptrs", "direct_conv_body", "pack_conv", "plan_op"]
