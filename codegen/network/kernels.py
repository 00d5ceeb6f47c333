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
from typing import Any

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
from codegen.network.tiles import conv_tile, gemm_tile
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
        padded: Its padded input buffer in the arena (pattern ops only).
        next_padded: The next op's padded input buffer, when it has one (a handoff's
            destination).
    """

    inputs: tuple[str, ...]
    output: str
    scratch: str = ""
    sections: tuple[str, ...] = ()
    layer: str = ""
    padded: str = ""
    next_padded: str = ""


@dataclass(frozen=True)
class OpCode:
    """What one op becomes in C.

    Attributes:
        sections: Its weights, packed, as the bytes of its weights-file sections.
        scratch_floats: Arena scratch it needs while it runs.
        input_floats: Its padded input buffer in the arena (pattern kernels; 0: none).
            It lives from this op, or from the op before when that one stores its output
            there (``info["padded_input"]``), to this op.
        body: Writes the op's C statements (run inside ``pt_net_run``; ``nt`` is the
            thread count, ``m`` the model) given its pointers.
        create: Writes C statements creating its context (pattern kernels), or None.
        destroy: Writes C statements freeing it, or None.
        unit: ``(file stem, C source)`` of a translation unit of its own, or None.
        declarations: C declarations ``model.c`` needs for it (prototypes).
        info: Blocking and layout choices, for ``model.json`` and the docs.
        tiles: C of the generated tile functions it calls (:mod:`.tiles`).
    """

    sections: tuple[bytes, ...]
    scratch_floats: int
    body: Callable[[Ptrs], str]
    input_floats: int = 0
    create: Callable[[Ptrs], str] | None = None
    destroy: Callable[[Ptrs], str] | None = None
    unit: tuple[str, str] | None = None
    declarations: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    tiles: tuple[str, ...] = ()


#: Floats per work item of the elementwise ops (``PT_CHUNK`` in ``pt_network_ops.h``).
CHUNK = 4096


def par(items: int, call: str) -> str:
    """C: ``call`` (which uses ``i``) for every work item, across threads (``PT_PARALLEL``)."""
    return f"PT_PARALLEL\nfor (int i = 0; i < {items}; ++i) {call};"


#: Work items an op is cut into at least (where its filter blocks are fewer), so that up to
#: 8 threads get even shares; one thread runs them in order at no extra cost.
MIN_ITEMS = 16


def split(blocks: int, parts: int) -> int:
    """How many pieces to cut each of ``blocks`` filter blocks into (at most ``parts``)."""
    return 1 if blocks >= MIN_ITEMS else max(1, min(parts, _ceil(MIN_ITEMS, blocks)))


def par_steps(*steps: tuple[int, str]) -> str:
    """C: several :func:`par` loops in one parallel region, one after the other (the
    implicit barrier of each ``omp for`` orders them): waking the threads once per op
    instead of once per loop matters at a few microseconds per op."""
    loops = [f"  PT_FOR\n  for (int i = 0; i < {n}; ++i) {call};" for n, call in steps]
    return "PT_REGION\n{\n" + "\n".join(loops) + "\n}"


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
        ocb, nv = register_tile(op.cout // op.groups, op.out_w, vl, regs)
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
    hp, oh = op.h + 2 * op.padding, op.out_h
    coutpg = op.cout // op.groups
    blocks = op.groups * _ceil(coutpg, lay.ocb)
    k = split(blocks, oh)  # rows of a block in k shares: item i = block i / k, share i % k
    return par_steps(
        (op.cin, f"pt_pad_planes({x}, {scratch}, i, {op.h}, {op.w}, {op.stride}, "
                 f"{op.padding}, {hp}, {lay.wph}, {lay.plane})"),
        (blocks * k, f"pt_conv_{lay.ocb}x{lay.nv}({scratch}, {y}, {w}, {b}, i / {k}, "
                     f"{op.cin // op.groups}, {coutpg}, {oh}, {op.out_w}, {op.kh}, "
                     f"{op.kw}, {op.stride}, {lay.wph}, {lay.plane}, {ACT_C[act]}, "
                     f"i % {k} * {oh} / {k}, (i % {k} + 1) * {oh} / {k})"),
    )


def register_tile(rows: int, cols: int, vl: int, regs: int) -> tuple[int, int]:
    """``(r, v)``: a tile of ``r`` filters x ``v`` vectors of ``vl`` columns for ``rows``
    filters and ``cols`` columns on ``regs`` vector registers.

    The tile's accumulators, its ``v`` loaded vectors and a broadcast must fit the
    registers; among those tiles, the one with the most useful FMAs per load
    (``r v / (r + v)`` times the share of computed lanes that are not padding: a 49-wide
    row in tiles of 48 computes 96 columns, in one tile of 64 only 64) wins.
    """
    best, best_score = (1, 1), -1.0
    for v in range(1, 5):
        for r in range(1, 17):
            if r * v + v + 2 > regs or r > rows:
                continue
            done = _ceil(rows, r) * r * _ceil(cols, v * vl) * v * vl
            score = rows * cols / done * (r * v) / (r + v)
            if score > best_score + 1e-9:
                best, best_score = (r, v), score
    return best


def _conv(op: Conv2d, w: np.ndarray, b: np.ndarray, t: Target) -> OpCode:
    vl, regs = t.vector_floats, t.vector_registers
    if op.is_pointwise:
        m, k, n = op.cout, op.cin, op.out_h * op.out_w
        mr, nv = register_tile(m, n, vl, regs)
        nmb = _ceil(m, mr)
        nnb = _ceil(n, nv * vl)
        ks = split(nmb, nnb)  # pixel blocks of a filter block in ks shares
        wp = np.zeros((nmb * mr, k), np.float32)
        wp[:m] = w.reshape(m, k)
        bp = np.zeros(nmb * mr, np.float32)
        bp[:m] = b
        packed = wp.reshape(nmb, mr, k).transpose(0, 2, 1)
        strided = op.stride > 1

        def gemm(p: Ptrs) -> str:
            x = p.scratch if strided else p.inputs[0]
            main = (nmb * ks, f"pt_gemm_{mr}x{nv}({x}, {p.output}, {p.sections[0]}, "
                              f"{p.sections[1]}, i / {ks}, {m}, {k}, {n}, {ACT_C[op.act]}, "
                              f"i % {ks} * {nnb} / {ks}, (i % {ks} + 1) * {nnb} / {ks})")
            if not strided:
                return par(*main)
            return par_steps((op.cin, f"pt_subsample({p.inputs[0]}, {p.scratch}, i, {op.h}, "
                                      f"{op.w}, {op.stride}, {op.out_h}, {op.out_w})"), main)

        return OpCode(sections=(_f32(packed), _f32(bp)),
                      scratch_floats=op.cin * n if strided else 0, body=gemm,
                      info={"impl": "gemm", "mr": mr, "nv": nv}, tiles=(gemm_tile(mr, nv),))
    lay = ConvLayout.of(op, vl, regs)
    wp, bp = pack_conv(w, b, op.groups, lay.ocb)
    return OpCode(
        sections=(_f32(wp), _f32(bp)), scratch_floats=lay.scratch(op),
        body=lambda p: direct_conv_body(op, lay, op.act, p.inputs[0], p.output, p.sections[0],
                                        p.sections[1], p.scratch),
        info={"impl": "depthwise" if op.is_depthwise else "direct", "ocb": lay.ocb,
              "nv": lay.nv},
        tiles=(conv_tile(lay.ocb, lay.nv),),
    )


def _pool(op: Pool2d) -> OpCode:
    oh, ow = op.out_shape[2], op.out_shape[3]
    if op.mode == "max":
        def body(p: Ptrs) -> str:
            return par(op.c, f"pt_maxpool({p.inputs[0]}, {p.output}, i, {op.h}, {op.w}, "
                             f"{op.k}, {op.stride}, {op.padding}, {oh}, {ow})")
    else:
        def body(p: Ptrs) -> str:
            return par(op.c, f"pt_avgpool({p.inputs[0]}, {p.output}, i, {op.h}, {op.w}, "
                             f"{op.k}, {op.stride}, {op.padding}, {oh}, {ow}, "
                             f"{int(op.count_include_pad)})")
    return OpCode(sections=(), scratch_floats=0, body=body, info={"impl": op.mode + "pool"})


def _adaptive(op: AdaptiveAvgPool2d) -> OpCode:
    if op.is_global:
        def body(p: Ptrs) -> str:
            return par(op.c, f"pt_global_avg({p.inputs[0]}, {p.output}, i, {op.h * op.w})")
    else:
        def body(p: Ptrs) -> str:
            return par(op.c, f"pt_adaptive_avg({p.inputs[0]}, {p.output}, i, {op.h}, {op.w}, "
                             f"{op.oh}, {op.ow})")
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
    chunks = _ceil(op.out_elems, CHUNK)
    if isinstance(op, Add):
        return OpCode(sections=(), scratch_floats=0, info={"impl": "add"},
                      body=lambda p: par(chunks, f"pt_add({p.inputs[0]}, {p.inputs[1]}, "
                                                 f"{p.output}, i, {op.out_elems}L, "
                                                 f"{ACT_C[op.act]})"))
    if isinstance(op, Activation):
        return OpCode(sections=(), scratch_floats=0, info={"impl": "activation"},
                      body=lambda p: par(chunks, f"pt_act({p.inputs[0]}, {p.output}, i, "
                                                 f"{op.out_elems}L, {ACT_C[op.act]})"))
    if isinstance(op, Flatten):
        return OpCode(sections=(), scratch_floats=0, body=lambda p: "/* same memory */",
                      info={"impl": "alias"})
    if isinstance(op, Linear):
        w, b = params[op.name]
        return OpCode(sections=(_f32(w), _f32(b)), scratch_floats=0, info={"impl": "gemv"},
                      body=lambda p: par(_ceil(op.out_features, 8),
                                         f"pt_linear({p.inputs[0]}, {p.output}, "
                                         f"{p.sections[0]}, {p.sections[1]}, i, "
                                         f"{op.in_features}, {op.out_features}, "
                                         f"{ACT_C[op.act]})"))
    raise TypeError(f"no C for op {op.name!r} of kind {op.kind!r}")


__all__ = ["ACT_C", "CHUNK", "ConvLayout", "OpCode", "Ptrs", "direct_conv_body", "pack_conv", "par", "par_steps", "plan_op",
           "register_tile"]
