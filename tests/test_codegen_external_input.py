"""A kernel generated with ``external_input`` runs on its caller's padded input buffer.

A network keeps every pattern layer's padded input in its arena, where other tensors
lived before: the buffer holds anything. ``P_run_in`` must zero the borders itself, copy
the input in (or, with no input, take the interior a producer stored there) and give the
outputs of the kernel that owns its buffer, bitwise. Checked in process (ctypes) on
NaN-filled buffers, for stride 1 and 2, a fused max-pool and two threads.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from codegen import (
    BuildInput,
    LocalBuilder,
    Product,
    config_space,
    generate,
    host_target,
    random_input,
    reference_output,
    verify,
)
from codegen.layout import INPUT_SLACK, Layout
from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.projection import random_pruned_layer
from tests.codegen_support import PATTERNS8, with_pool, with_relu

_P = ctypes.c_void_p


def _interior(layer: PrunedLayer, lay: Layout) -> np.ndarray:
    """Mask of the buffer's floats that hold input values (the rest must read as zero)."""
    s = layer.spec
    mask = np.zeros(lay.input_floats + INPUT_SLACK, bool)
    for ph in range(lay.nplanes):
        cols = [j for j in range(lay.wph) if 0 <= j * s.stride + ph - s.padding < s.w]
        for y in range(s.padding, s.padding + s.h):
            for ch in range(s.cin):
                base = ch * lay.chan_stride + ph * lay.plane + y * lay.wph
                mask[[base + j for j in cols]] = True
    return mask


CASES = {
    "stride1": dict(cin=6, cout=8, h=13, w=21, stride=1),
    "stride2": dict(cin=5, cout=7, h=17, w=23, stride=2),
    "pool": dict(cin=4, cout=6, h=12, w=18, stride=1),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_run_in_on_a_nan_filled_buffer_equals_the_owned_buffer(
        case: str, threads: int, tmp_path: Path) -> None:
    target = host_target()
    layer = random_pruned_layer(LayerSpec(case, kh=3, kw=3, padding=1, **CASES[case]),
                                PATTERNS8, connectivity="2x", seed=3)
    layer = with_pool(layer) if case == "pool" else with_relu(layer)
    cfg = config_space(layer.spec, target, threads=threads).default()
    own = generate(layer, cfg, target, symbol_prefix="pto")
    ext = generate(layer, cfg, target, symbol_prefix="pte", external_input=True)
    assert ext.meta["input_floats"] == Layout.of(layer.spec, cfg).input_floats + INPUT_SLACK
    res = LocalBuilder(cache_dir=tmp_path).build(
        [BuildInput(k, target, (Product.LIBRARY,)) for k in (own, ext)])
    assert all(r.ok for r in res), [r.error for r in res]
    libs = {p: ctypes.CDLL(r.library) for p, r in zip(("pto", "pte"), res, strict=True)}
    ctxs = {}
    for p, k in (("pto", own), ("pte", ext)):
        lib, ctx = libs[p], _P()
        getattr(lib, f"{p}_create").argtypes = [ctypes.c_char_p, ctypes.c_longlong,
                                                ctypes.POINTER(_P)]
        getattr(lib, f"{p}_run").argtypes = [_P, _P, _P]
        getattr(lib, f"{p}_destroy").argtypes = [_P]
        assert getattr(lib, f"{p}_create")(k.weights, len(k.weights), ctypes.byref(ctx)) == 0
        ctxs[p] = ctx
    run_in = libs["pte"].pte_run_in
    run_in.argtypes = [_P, _P, _P, _P]
    x = random_input(layer, seed=4)
    want = np.empty(layer.output_shape, np.float32)
    assert libs["pto"].pto_run(ctxs["pto"], x.ctypes.data, want.ctypes.data) == 0
    assert verify(want, reference_output(layer, x)).ok
    buf = np.full(ext.meta["input_floats"] + 16, np.nan, np.float32)
    off = (-(buf.ctypes.data % 64) // 4) % 16
    inb = buf[off:off + ext.meta["input_floats"]]  # 64-byte aligned, as the arena's
    got = np.full(layer.output_shape, np.nan, np.float32)
    try:
        # the context owns no buffer: the two-argument run is refused, not a crash
        assert libs["pte"].pte_run(ctxs["pte"], x.ctypes.data, got.ctypes.data) == 1
        assert run_in(ctxs["pte"], x.ctypes.data, None, got.ctypes.data) == 1
        assert run_in(ctxs["pte"], x.ctypes.data, inb.ctypes.data, got.ctypes.data) == 0
        assert np.array_equal(got, want)
        # A producer stored only the interior; everything else is NaN again.
        inb[~_interior(layer, Layout.of(layer.spec, cfg))] = np.nan
        got[...] = np.nan
        assert run_in(ctxs["pte"], None, inb.ctypes.data, got.ctypes.data) == 0
        assert np.array_equal(got, want)
    finally:
        libs["pto"].pto_destroy(ctxs["pto"])
        libs["pte"].pte_destroy(ctxs["pte"])
