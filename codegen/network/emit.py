"""A graph as C sources: ``model.c``, the public header, ``run_model.c`` and a Makefile.

:func:`generate_network` plans every op (:mod:`.kernels`, :mod:`.pattern_kernel`), lays
out the arena (:mod:`.arena`), numbers the weight sections and writes the files. The
static C (``pt_network_ops.h``, ``pt_network_runtime.h``) is copied beside them, so the
folder builds on its own with the Makefile.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from codegen.layout import Layout, OutputLayout
from codegen.network.arena import ArenaPlan, network_buffers, plan_arena
from codegen.network.graph import Graph
from codegen.network.kernels import OpCode, Ptrs, plan_op
from codegen.network.ops import Conv2d, Op
from codegen.network.pattern_kernel import layer_config, plan_pattern, post_activation
from codegen.network.templates import check_prefix, export_map, header, makefile, run_model
from codegen.target import Target

#: Static C files every network folder holds (package data of this package).
STATIC_FILES = ("pt_network_ops.h", "pt_network_runtime.h")


@dataclass(frozen=True)
class NetworkSources:
    """Everything generated for one network, before compiling.

    Attributes:
        files: File name -> text (C sources, headers, Makefile, export map).
        units: The ``.c`` files of the library, in link order.
        sections: The weights file's sections, in order.
        arena: The activation arena's plan.
        fingerprint: The network's fingerprint (in the weights file and in ``model.c``).
        prefix: The API's symbol prefix.
        op_info: Per op, its record plus how it runs (implementation, blocking, sections).
    """

    files: dict[str, str]
    units: tuple[str, ...]
    sections: tuple[bytes, ...]
    arena: ArenaPlan
    fingerprint: int
    prefix: str
    op_info: tuple[dict[str, Any], ...]


def _dims(shape: tuple[int, ...]) -> str:
    return "{" + ", ".join(str(d) for d in shape) + "}"


def _describe(op: Op) -> str:
    fused = getattr(op, "fused", ())
    geo = ""
    if isinstance(op, Conv2d):
        geo = (f", {op.kh}x{op.kw}/{op.stride} pad {op.padding}"
               f"{f' groups {op.groups}' if op.groups > 1 else ''}"
               f"{' pattern' if op.pattern else ''}")
    act = getattr(op, "act", "none")
    text = f"{op.kind} {op.name} (module {op.module}): -> {'x'.join(map(str, op.out_shape))}{geo}"
    text += f", {act}" if act != "none" else ""
    text += "; fused " + ", ".join(fused) if fused else ""
    return text.replace("*/", "* /")


def _handoff(graph: Graph, i: int, target: Target) -> OutputLayout | None:
    """The input layout of op ``i + 1`` when op ``i`` may store its output straight there.

    Both must be (non-depthwise) pattern layers, the second the only reader of the
    first's output (which is not the network's output) and reading it through one plane
    per channel (stride 1, not ``shifted``); the first fuses no max-pool and needs no
    activation after it.
    """
    if i + 1 >= len(graph.ops):
        return None
    a, b = graph.ops[i], graph.ops[i + 1]
    if not all(isinstance(o, Conv2d) and o.pattern and not o.is_depthwise for o in (a, b)):
        return None
    assert isinstance(a, Conv2d) and isinstance(b, Conv2d)
    readers = [o for o in graph.ops if a.output in o.inputs]
    if readers != [b] or b.inputs != (a.output,) or a.output == graph.output:
        return None
    layer_a, _ = graph.patterns[a.name]
    if layer_a.maxpool or post_activation(a, layer_a) != "none":
        return None
    layer_b, cfg_b = graph.patterns[b.name]
    lay = Layout.of(layer_b.spec, layer_config(layer_b, cfg_b, target))
    return lay.input_as_output() if lay.nplanes == 1 else None


def _plan(graph: Graph, target: Target, prefix: str, handoff: bool) -> list[OpCode]:
    codes, layers, fed = [], 0, False
    for i, op in enumerate(graph.ops):
        if isinstance(op, Conv2d) and op.pattern:
            layer, cfg = graph.patterns[op.name]
            out = _handoff(graph, i, target) if handoff else None
            codes.append(plan_pattern(
                op, layer, cfg, target, f"{prefix}_l{layers}",
                handoff=(f"{prefix}_l{layers + 1}", out) if out else None, padded_input=fed))
            layers += 1
            fed = out is not None
        else:
            codes.append(plan_op(op, dict(graph.params), target))
            fed = False
    return codes


def _ptrs(graph: Graph, arena: ArenaPlan, codes: list[OpCode]) -> list[Ptrs]:
    def padded(i: int) -> str:
        ok = 0 <= i < len(codes) and codes[i].input_floats
        return f"(A + {arena.offset('input:' + graph.ops[i].name)}L)" if ok else ""

    out, sec, layer = [], 0, 0
    for i, (op, code) in enumerate(zip(graph.ops, codes, strict=True)):
        n = len(code.sections)
        out.append(Ptrs(
            inputs=tuple(f"(A + {arena.offset(t)}L)" for t in op.inputs),
            output=f"(A + {arena.offset(op.output)}L)",
            scratch=f"(A + {arena.offset('scratch:' + op.name)}L)" if code.scratch_floats else "",
            sections=tuple(f"m->sec[{sec + i}]" for i in range(n)),
            layer=f"m->layer[{layer}]" if code.create else "",
            padded=padded(i),
            next_padded=padded(i + 1) if code.info.get("output_to") else "",
        ))
        sec += n
        layer += 1 if code.create else 0
    return out


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + ln if ln else ln for ln in text.splitlines())


def _model_c(graph: Graph, target: Target, prefix: str, fingerprint: int, arena: ArenaPlan,
             codes: list[OpCode], ptrs: list[Ptrs]) -> str:
    sections = [s for c in codes for s in c.sections]
    n_layers = sum(1 for c in codes if c.create)
    in_elems = 1
    for d in graph.input_shape:
        in_elems *= d
    out_elems = 1
    for d in graph.output_shape:
        out_elems *= d
    head = [
        f"/* pattune network, generated for target {target.name} ({target.isa}): "
        f"{len(graph.ops)} ops, arena {arena.bytes} bytes. Do not edit. */",
        f"#define VL {target.vector_floats}",
        f"#define PT_PREFIX {prefix}",
        f"#define PT_FINGERPRINT 0x{fingerprint:016x}ULL",
        f"#define PT_N_SECTIONS {len(sections)}",
        f"#define PT_N_LAYERS {n_layers}",
        f"#define PT_N_OPS {len(graph.ops)}",
        f"#define PT_ARENA_FLOATS {arena.floats}LL",
        f"#define PT_IN_NDIM {len(graph.input_shape)}",
        f"#define PT_IN_DIMS {_dims(graph.input_shape)}",
        f"#define PT_IN_ELEMS {in_elems}LL",
        f"#define PT_OUT_NDIM {len(graph.output_shape)}",
        f"#define PT_OUT_DIMS {_dims(graph.output_shape)}",
        f"#define PT_OUT_ELEMS {out_elems}LL",
        '#include "pt_network_ops.h"',
        '#include "pattune_model.h"',
        "static const long long PT_SECTION_BYTES[PT_N_SECTIONS > 0 ? PT_N_SECTIONS : 1] = "
        f"{{{', '.join(str(len(s)) for s in sections) or '0'}}};",
        '#include "pt_network_runtime.h"',
        "",
    ]
    head += list(dict.fromkeys(t for c in codes for t in c.tiles))  # each tile shape once
    head += [c.declarations for c in codes if c.declarations]
    body, calls = [], []
    for i, (op, code, p) in enumerate(zip(graph.ops, codes, ptrs, strict=True)):
        if op.aliases_input:
            calls.append(f"  /* op {i}: {_describe(op)}: same memory */")
            continue
        body += [f"/* op {i}: {_describe(op)} */",
                 f"static __attribute__((noinline)) int pt_op_{i}(struct PT_MODEL* m, "
                 "float* restrict A, const int nt) {",
                 "  (void)m; (void)A; (void)nt;", _indent(code.body(p)), "  return PT_OK;", "}",
                 ""]
        calls += ["  t0 = pt_now();",
                  f"  if ((rc = pt_op_{i}(m, A, nt))) return rc;",
                  f"  m->op_seconds[{i}] += pt_now() - t0;"]
    run = [
        "static int pt_net_run(struct PT_MODEL* m, const float* in, float* out) {",
        "  float* const A = m->arena;",
        "  const int nt = m->threads;",
        "  int rc;",
        "  double t0;",
        f"  memcpy(A + {arena.offset(graph.input)}L, in, sizeof(float) * PT_IN_ELEMS);",
        *calls,
        f"  memcpy(out, A + {arena.offset(graph.output)}L, sizeof(float) * PT_OUT_ELEMS);",
        "  return PT_OK;",
        "}",
        "",
        "static int pt_net_create_layers(struct PT_MODEL* m) {",
        "  int rc = 0;",
        "  (void)m;",
        *[_indent(c.create(p)) for c, p in zip(codes, ptrs, strict=True) if c.create],
        "  return rc;",
        "}",
        "",
        "static void pt_net_destroy_layers(struct PT_MODEL* m) {",
        "  (void)m;",
        *[_indent(c.destroy(p)) for c, p in zip(codes, ptrs, strict=True) if c.destroy],
        "}",
    ]
    return "\n".join(head + [""] + body + run) + "\n"


def generate_network(graph: Graph, target: Target, *, prefix: str = "pt",
                     handoff: bool = True) -> NetworkSources:
    """All sources of ``graph`` for ``target``, its weight sections and its arena.

    Args:
        graph: The network.
        target: Compiler and vector width (``Target.vector_floats``) to generate for.
        prefix: The API's symbol prefix: ``<prefix>_model_create_from_file`` etc.
        handoff: Where a pattern layer's only reader is the next pattern layer (stride 1,
            one input plane), store its output straight into that layer's padded input
            buffer (in the arena, like every pattern layer's), which then skips its
            padding copy (the outputs are bitwise those without it).

    Raises:
        ValueError: ``prefix`` is not a C identifier.
    """
    check_prefix(prefix)
    codes = _plan(graph, target, prefix, handoff)
    scratch = {op.name: c.scratch_floats for op, c in zip(graph.ops, codes, strict=True)}
    handed = frozenset(op.output for op, c in zip(graph.ops, codes, strict=True)
                       if c.info.get("output_to"))
    padded = {op.name: (c.input_floats, bool(c.info.get("padded_input")))
              for op, c in zip(graph.ops, codes, strict=True) if c.input_floats}
    buffers, aliases = network_buffers(graph, scratch, handed, padded)
    arena = plan_arena(buffers, aliases=aliases)
    if arena.overlapping_live_pairs():
        raise AssertionError(f"arena plan overlaps: {arena.overlapping_live_pairs()[:3]}")
    ptrs = _ptrs(graph, arena, codes)
    fingerprint = graph.fingerprint()
    units = ["model.c"] + [f"{c.unit[0]}.c" for c in codes if c.unit]
    files = {name: resources.files("codegen.network").joinpath(name).read_text()
             for name in STATIC_FILES}
    files["model.c"] = _model_c(graph, target, prefix, fingerprint, arena, codes, ptrs)
    files.update({f"{c.unit[0]}.c": c.unit[1] for c in codes if c.unit})
    files["pattune_model.h"] = header(prefix)
    files["run_model.c"] = run_model(prefix)
    files["exports.map"] = export_map(prefix)
    files["Makefile"] = makefile(target, units)
    sec = 0
    info = []
    for op, code in zip(graph.ops, codes, strict=True):
        n = len(code.sections)
        info.append({**op.to_dict(), "impl": code.info,
                     "sections": list(range(sec, sec + n)),
                     "weights_bytes": sum(len(s) for s in code.sections),
                     "scratch_bytes": code.scratch_floats * 4,
                     "padded_input_bytes": code.input_floats * 4})
        sec += n
    return NetworkSources(
        files=files, units=tuple(units), sections=tuple(s for c in codes for s in c.sections),
        arena=arena, fingerprint=fingerprint, prefix=prefix, op_info=tuple(info),
    )


__all__ = ["STATIC_FILES", "NetworkSources", "generate_network"]
