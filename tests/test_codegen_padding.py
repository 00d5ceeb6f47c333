"""How a kernel fills its zero-bordered input buffer (:mod:`codegen.padding`).

A kernel generated with ``external_input`` runs on its caller's buffer: a network keeps
every pattern layer's padded input in its arena, where other tensors lived before, so
the buffer holds anything. ``P_run_in`` must zero the borders itself, copy the input in
(or, with no input, take the interior a producer stored there) and give the outputs of
the kernel that owns its buffer, bitwise. Checked in process (ctypes) on NaN-filled
buffers, for stride 1 and 2, a fused max-pool and two threads.

On one thread with row bands outermost (``tile_block_group``) the input is padded band
by band as the tiles reach it: the outputs are bitwise those of padding first.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from codegen import (
    BuildInput,
    GeneratedKernel,
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
    # No ReLU: it clips a NaN read to zero, which hid a garbage read under pack_rows.
    "7x7_norelu": dict(cin=6, cout=5, h=7, w=7, stride=1),
}


def _case_layer(case: str, seed: int) -> PrunedLayer:
    layer = random_pruned_layer(LayerSpec(case, kh=3, kw=3, padding=1, **CASES[case]),
                                PATTERNS8, connectivity="2x", seed=seed)
    if case == "pool":
        return with_pool(layer)
    return layer if case.endswith("_norelu") else with_relu(layer)


class _Kernel:
    """A built kernel's context in this process: ``run`` (own buffer) and ``run_in``."""

    def __init__(self, kernel: GeneratedKernel, cache: Path) -> None:
        [res] = LocalBuilder(cache_dir=cache).build(
            [BuildInput(kernel, host_target(), (Product.LIBRARY,))])
        assert res.ok, res.error
        p, lib = kernel.symbol_prefix, ctypes.CDLL(res.library)
        create = getattr(lib, f"{p}_create")
        create.argtypes = [ctypes.c_char_p, ctypes.c_longlong, ctypes.POINTER(_P)]
        self._run = getattr(lib, f"{p}_run")
        self._run.argtypes = [_P, _P, _P]
        self._run_in = getattr(lib, f"{p}_run_in", None)
        if self._run_in is not None:
            self._run_in.argtypes = [_P, _P, _P, _P]
        self._destroy = getattr(lib, f"{p}_destroy")
        self._destroy.argtypes = [_P]
        self.ctx = _P()
        assert create(kernel.weights, len(kernel.weights), ctypes.byref(self.ctx)) == 0

    def run(self, x: np.ndarray, y: np.ndarray) -> int:
        return int(self._run(self.ctx, x.ctypes.data, y.ctypes.data))

    def run_in(self, x: np.ndarray | None, buf: np.ndarray | None, y: np.ndarray) -> int:
        assert self._run_in is not None
        return int(self._run_in(self.ctx, None if x is None else x.ctypes.data,
                                None if buf is None else buf.ctypes.data, y.ctypes.data))

    def close(self) -> None:
        self._destroy(self.ctx)


def _nan_buffer(floats: int) -> np.ndarray:
    """NaNs, 64-byte aligned as the arena's buffers are."""
    buf = np.full(floats + 16, np.nan, np.float32)
    off = (-(buf.ctypes.data % 64) // 4) % 16
    return buf[off:off + floats]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_run_in_on_a_nan_filled_buffer_equals_the_owned_buffer(
        case: str, threads: int, tmp_path: Path) -> None:
    target = host_target()
    layer = _case_layer(case, 3)
    cfg = config_space(layer.spec, target, threads=threads).default()
    ext = generate(layer, cfg, target, symbol_prefix="pte", external_input=True)
    assert ext.meta["input_floats"] == Layout.of(layer.spec, cfg).input_floats + INPUT_SLACK
    own = _Kernel(generate(layer, cfg, target, symbol_prefix="pto"), tmp_path)
    k = _Kernel(ext, tmp_path)
    x = random_input(layer, seed=4)
    want = np.empty(layer.output_shape, np.float32)
    try:
        assert own.run(x, want) == 0
        assert verify(want, reference_output(layer, x)).ok
        inb = _nan_buffer(ext.meta["input_floats"])
        got = np.full(layer.output_shape, np.nan, np.float32)
        # the context owns no buffer: the two-argument run is refused, not a crash
        assert k.run(x, got) == 1
        assert k.run_in(x, None, got) == 1
        assert k.run_in(x, inb, got) == 0
        assert np.array_equal(got, want)
        # A producer stored only the interior; everything else is NaN again.
        inb[~_interior(layer, Layout.of(layer.spec, cfg))] = np.nan
        got[...] = np.nan
        assert k.run_in(None, inb, got) == 0
        assert np.array_equal(got, want)
    finally:
        own.close()
        k.close()


@pytest.mark.parametrize("external", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_band_by_band_padding_is_bitwise_equal_to_padding_first(
        case: str, external: bool, tmp_path: Path) -> None:
    target = host_target()
    layer = _case_layer(case, 5)
    # row bands: unpacked rows (a packed 7 x 7 layer is one tile, one band)
    base = config_space(layer.spec, target, threads=1, pack_rows=False).default()
    xs = [random_input(layer, seed=6), random_input(layer, seed=7)]
    outs = {}
    # tile rows that do not divide the output rows: a short last band
    for rows in (3, 4):
        for order in ("tile_block_group", "block_group_tile"):
            cfg = base.replace(loop_order=order, tile_rows=rows, ic_block=4)
            gen = generate(layer, cfg, target, symbol_prefix="ptb", external_input=external)
            assert f"#define BAND {int(order == 'tile_block_group')}" in gen.source
            k = _Kernel(gen, tmp_path)
            inb = _nan_buffer(gen.meta["input_floats"])
            try:
                for j, xj in enumerate(xs):  # the second run pads over the first's rows
                    y = np.full(layer.output_shape, np.nan, np.float32)
                    assert (k.run_in(xj, inb, y) if external else k.run(xj, y)) == 0
                    outs[(rows, order, j)] = y
            finally:
                k.close()
    for (rows, order, j), y in outs.items():
        assert verify(y, reference_output(layer, xs[j])).ok, (rows, order, j)
        assert np.array_equal(y, outs[(rows, "block_group_tile", j)]), (rows, order, j)
