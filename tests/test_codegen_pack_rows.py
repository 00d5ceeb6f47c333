"""pack_rows: planes narrower than a vector stored at pitch ``out_w + 1``, so one vector
holds several whole output rows (a 7-wide plane's rows in pairs in 16 floats).

Against torch on every target (qemu for aarch64), and bitwise against the same config
unpacked: each output's taps come in the same order. Then the layout's reads, the
config rules and the default, and a caller's NaN-filled buffer (a network's arena).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from codegen import (
    BuildInput,
    LocalBuilder,
    Product,
    aarch64_target,
    config_space,
    generate,
    host_target,
    random_input,
    reference_output,
)
from codegen.config import pack_factor
from codegen.counts import count
from codegen.layout import INPUT_SLACK, Layout
from pattune_common import ConfigError
from search_spaces.layers import LayerSpec
from search_spaces.patterns import PatternSet
from search_spaces.projection import random_pruned_layer
from tests.codegen_support import PATTERNS8, build_and_run, with_pool, with_relu


def _layer(name: str, h: int, w: int, cin: int = 5, cout: int = 4, seed: int = 0,
           stride: int = 1):
    return random_pruned_layer(LayerSpec(name, cin=cin, cout=cout, h=h, w=w, stride=stride),
                               PATTERNS8, connectivity="2x", seed=seed)


# 7 wide (2 rows per 16 floats, the last vector half past the output), 3 wide (4 rows in
# 16, 2 in 8), 1 wide (2 to 8 rows per vector), ReLU, a fused max-pool (its separate pass);
# at stride 2, 14 x 14 in (7 x 7 out, as ResNet's layer4.0) and 10 x 6 (5 x 3 out: 4 rows
# in 16, 2 in 8, the last vector past the output).
LAYERS = {
    "hw7_relu": with_relu(_layer("hw7_relu", 7, 7, seed=1)),
    "h6w3": _layer("h6w3", 6, 3, seed=2),
    "h5w1": _layer("h5w1", 5, 1, seed=3),
    "h6w7_pool": with_pool(_layer("h6w7_pool", 6, 7, seed=4)),
    "s2_hw14": _layer("s2_hw14", 14, 14, seed=5, stride=2),
    "s2_h10w6": _layer("s2_h10w6", 10, 6, seed=6, stride=2),
}


def _packed(sp, vl: int):
    m = pack_factor(sp.layer, vl)
    return sp.default().replace(vector_width=vl, tile_vecs=1, tile_rows=-(-sp.layer.out_h // m),
                                ic_block=max(sp.choices["ic_block"]), shifted=False,
                                out_prefetch=False, tap_shuffle=False, shift_sums=False,
                                pack_rows=True, threads=1)


@pytest.mark.parametrize("target_name", ["host", "avx2", "aarch64"])
def test_pack_rows_match_torch_and_bitwise_the_unpacked_tile(tmp_path, target_name: str) -> None:
    """Every layer and vector width that packs two or more rows, the three formats and the
    three ways of reading taps (unaligned loads, shuffled taps, shifted sums): the outputs
    match torch and are bitwise those of the same config with unpacked rows."""
    target = {"host": host_target, "avx2": lambda: host_target(isa="avx2"),
              "aarch64": aarch64_target}[target_name]()
    jobs = []
    for name, layer in LAYERS.items():
        sp = config_space(layer.spec, target)
        for vl in sp.choices["vector_width"]:
            if pack_factor(layer.spec, vl) < 2:
                continue
            on = _packed(sp, vl)
            for fmt, reads in (("fkw", {}), ("fkw", {"tap_shuffle": True}),
                               ("fkw", {"shift_sums": True, "prefetch": 3}),
                               ("dense", {"shift_sums": True}),
                               ("csr", {"lre": False, "unroll": 2})):
                cfg = sp.validate(on.replace(format=fmt, **reads))
                jobs += [(name, cfg), (name, sp.validate(cfg.replace(pack_rows=False)))]
    # 16 floats: 7, 7, 3, 1, 7 (stride 2) and 3 (stride 2) wide, plus what 8 floats pack: 3
    # and 1 wide and 3 at stride 2, plus 4 floats: 1 wide; five configs each, packed and not
    assert len(jobs) == {16: 100, 8: 40, 4: 10}[target.vector_floats]
    kernels = [generate(LAYERS[n], c, target) for n, c in jobs]
    assert all(Layout.of(LAYERS[n].spec, c).pack > 1 for n, c in jobs[::2])
    # build_and_run checks every output against torch
    ys = build_and_run(target, [(LAYERS[n], k) for (n, _), k in zip(jobs, kernels, strict=True)],
                       tmp_path, seed=5)
    for i in range(0, len(jobs), 2):
        assert np.array_equal(ys[i], ys[i + 1]), f"{jobs[i][0]} {jobs[i][1].to_json()}"


def test_packed_layout_and_its_reads() -> None:
    """A 7 x 7 plane at pitch 8 (its 9 padded rows and the row holding the last one's
    right padding column in 80 floats); every
    vector's farthest read, the shuffle's extra vector included, lands inside the buffer
    and its zeroed slack."""
    spec = LayerSpec("p", cin=3, cout=2, h=7, w=7)
    sp = config_space(spec, host_target(isa="avx512"))
    lay = Layout.of(spec, _packed(sp, 16))
    assert (lay.pack, lay.row_step, lay.wph, lay.hp, lay.plane, lay.rows) == (2, 2, 8, 10, 80, 4)
    assert (lay.ntx, lay.nty, lay.nblocks, lay.chan_stride) == (1, 1, 1, 80)
    # output row y, column x reads padded row y + dy, column x + dx at y' * 8 + x'
    assert lay.tap_offset(3, 2) == 26
    # Stride 2, 14 x 14 in: four planes (row parity x column parity) of 9 rows at pitch 8
    # (80 floats each); output row y reads padded row 2y + dy, which is row y + dy // 2 of
    # row-parity plane dy % 2; vector r starts 4 padded rows after vector r - 1.
    spec = LayerSpec("p2", cin=3, cout=2, h=14, w=14, stride=2)
    lay = Layout.of(spec, _packed(config_space(spec, host_target(isa="avx512")), 16))
    assert (lay.pack, lay.row_step, lay.wph, lay.hp, lay.plane, lay.rows) == (2, 4, 8, 18, 80, 4)
    assert (lay.nplanes, lay.rphase, lay.chan_stride) == (2, 2, 320)
    assert [lay.tap_offset(*t) for t in ((0, 0), (0, 2), (1, 1), (2, 2))] == [0, 1, 240, 9]
    for h, w, vl, s in ((7, 7, 16, 1), (9, 3, 16, 1), (9, 3, 8, 1), (5, 1, 4, 1),
                        (2, 1, 16, 1), (14, 14, 16, 2), (10, 6, 16, 2), (10, 6, 8, 2),
                        (6, 2, 4, 2)):
        spec = LayerSpec("r", cin=3, cout=2, h=h, w=w, stride=s)
        sp = config_space(spec, host_target(isa="avx512"))
        lay = Layout.of(spec, _packed(sp, vl))
        last = (lay.rows - 1) * lay.row_step
        farthest = (spec.cin - 1) * lay.chan_stride + max(
            lay.row_offset(last + dy, ph) for dy in range(3) for ph in range(s)) + 2 * vl
        assert farthest <= lay.input_floats + INPUT_SLACK, (h, w, vl, s)


def test_pack_rows_rules_and_the_default() -> None:
    avx512, avx2 = host_target(isa="avx512"), host_target(isa="avx2")
    hw7 = LayerSpec("hw7", cin=64, cout=64, h=7, w=7)
    sp = config_space(hw7, avx512)
    on = _packed(sp, 16)
    cases = {
        "tile must be 4 x 1": on.replace(tile_rows=3),
        "one channel block (ic_block 64)": on.replace(ic_block=32),
        "out_prefetch=False": on.replace(out_prefetch=True),
        "divides vector_width 8 at least twice; got out_w 7": on.replace(vector_width=8),
    }
    for want, cfg in cases.items():
        with pytest.raises(ConfigError, match="KernelConfig.pack_rows for layer 'hw7'") as e:
            sp.validate(cfg)
        assert want in str(e.value)
    # A 14-wide row (pitch 15) and a stride-2 layer of odd-sized input never pack: not in
    # their space (an odd input's column phases differ in width).
    for spec in (LayerSpec("w14", cin=8, cout=8, h=14, w=14),
                 LayerSpec("s2", cin=8, cout=8, h=13, w=13, stride=2)):
        assert config_space(spec, avx512).choices["pack_rows"] == (False,)
    s2 = LayerSpec("s2", cin=8, cout=8, h=14, w=14, stride=2)
    assert config_space(s2, avx512).choices["pack_rows"] == (False, True)
    # The default packs 7-wide rows in pairs into 16 floats, one 4 x 1 tile shifting sums,
    # prefetching three kernels ahead; 8-float vectors on AVX2 (a 7-wide row fills them);
    # the unstructured kernel, bound by its loads, does not pack (half its loads would
    # split lines).
    d = sp.default()
    assert (d.pack_rows, d.vector_width, d.tile_rows, d.tile_vecs, d.shift_sums,
            d.tap_shuffle, d.prefetch) == (True, 16, 4, 1, True, False, 3)
    assert not config_space(hw7, avx2).default().pack_rows
    assert not config_space(hw7, avx512, format="csr").default().pack_rows
    # At stride 2 (14 x 14 in) the same tile without prefetch, as unpacked stride-2 tiles.
    d2 = config_space(s2, avx512).default()
    assert (d2.pack_rows, d2.vector_width, d2.tile_rows, d2.shift_sums, d2.prefetch) == \
        (True, 16, 4, True, 0)
    hw3 = LayerSpec("hw3", cin=64, cout=64, h=3, w=3)
    d3 = config_space(hw3, avx2).default()
    assert (d3.pack_rows, d3.vector_width, d3.tile_rows) == (True, 8, 2)


@pytest.mark.parametrize("hw,stride", [(7, 1), (14, 2)])
def test_packed_kernel_on_a_nan_filled_caller_buffer(tmp_path, hw: int, stride: int) -> None:
    """A network's arena holds anything: ``P_run_in`` on a NaN-filled buffer (the junk
    lanes past the 7th column and the 7th row read whatever is there) gives the outputs
    of the kernel that owns a zeroed buffer, bitwise. Every kernel has the corner tap
    (2, 2): at stride 1 the last output reads the bottom padding row's right padding
    column, which is the first column of one more row; at stride 2 the last padding row
    and column of the row-parity planes."""
    corner = PatternSet((PATTERNS8.patterns[5],))
    assert (2, 2) in corner.patterns[0].offsets
    # no ReLU: it would clip a NaN read to zero
    layer = random_pruned_layer(LayerSpec("corner", cin=6, cout=4, h=hw, w=hw, stride=stride),
                                corner, connectivity="2x", seed=7)
    target = host_target(isa="avx512")
    cfg = config_space(layer.spec, target).default()
    assert cfg.pack_rows
    own, ext = (generate(layer, cfg, target, symbol_prefix=p, external_input=e)
                for p, e in (("pko", False), ("pke", True)))
    res = LocalBuilder(cache_dir=tmp_path).build(
        [BuildInput(k, target, (Product.LIBRARY,)) for k in (own, ext)])
    assert all(r.ok for r in res), [r.error for r in res]
    x = random_input(layer, seed=6)
    outs = []
    vp = ctypes.c_void_p
    for k, r in zip((own, ext), res, strict=True):
        lib = ctypes.CDLL(r.library)
        create = getattr(lib, f"{k.symbol_prefix}_create")
        create.argtypes = [ctypes.c_char_p, ctypes.c_longlong, ctypes.POINTER(vp)]
        ctx = vp()
        assert create(k.weights, len(k.weights), ctypes.byref(ctx)) == 0
        y = np.full(layer.output_shape, np.nan, np.float32)
        if k is own:
            run = getattr(lib, f"{k.symbol_prefix}_run")
            run.argtypes = [vp, vp, vp]
            assert run(ctx, x.ctypes.data, y.ctypes.data) == 0
        else:
            buf = np.full(k.meta["input_floats"] + 16, np.nan, np.float32)
            buf = buf[(-(buf.ctypes.data % 64) // 4) % 16:]
            run_in = getattr(lib, f"{k.symbol_prefix}_run_in")
            run_in.argtypes = [vp, vp, vp, vp]
            assert run_in(ctx, x.ctypes.data, buf.ctypes.data, y.ctypes.data) == 0
        getattr(lib, f"{k.symbol_prefix}_destroy")(ctx)
        outs.append(y)
    np.testing.assert_allclose(outs[0], reference_output(layer, x), rtol=1e-4, atol=1e-4)
    assert np.array_equal(outs[0], outs[1])


def test_counts_read_the_packed_rows() -> None:
    """``codegen.counts`` over a packed 7 x 7 tile with shifted sums: a kernel loads each
    input row its taps read once (rows ``2r + dy``), the odd ones starting mid-line, and
    issues 4 taps x 4 vectors FMAs; the sums are shifted once per visit."""
    pat = PATTERNS8.patterns[5]  # taps (0, 0), (0, 1), (1, 1), (2, 2): dy 0, 1, 2
    layer = random_pruned_layer(LayerSpec("c", cin=8, cout=4, h=7, w=7), PatternSet((pat,)),
                                connectivity="2x", seed=2)
    cfg = config_space(layer.spec, host_target(isa="avx512")).default()
    assert cfg.pack_rows and cfg.shift_sums
    n = int(layer.alive.sum())
    got = count(layer, cfg)
    rows = {2 * r + dy for r in range(4) for dy, _ in pat.offsets}  # 0..8
    assert got.loads == n * len(rows) == n * 9
    assert got.split_loads == n * sum(1 for row in rows if row % 2) == n * 4
    assert got.vector_fmas == n * 4 * 4
    assert got.shuffles == 4 * 4 * 2  # cout x vectors x two offsets


def test_counts_read_the_packed_rows_at_stride_2() -> None:
    """The same pattern on a packed 14 x 14, stride-2 tile (7 x 7 out, 4 vectors of two
    rows): vector r reads padded rows 4r + dy, one load per column phase its taps use
    there (dy 0: columns 0 and 1, two phases; dy 1 and 2: one each). Row-parity plane rows
    are 8 floats, so the rows 4r + 2 (row 2r + 1 of their plane) start mid-line."""
    pat = PATTERNS8.patterns[5]
    layer = random_pruned_layer(LayerSpec("c2", cin=8, cout=4, h=14, w=14, stride=2),
                                PatternSet((pat,)), connectivity="2x", seed=2)
    sp = config_space(layer.spec, host_target(isa="avx512"))
    cfg = sp.validate(_packed(sp, 16).replace(shift_sums=True))
    n = int(layer.alive.sum())
    got = count(layer, cfg)
    assert got.loads == n * 4 * (2 + 1 + 1)
    assert got.split_loads == n * 4
    assert got.vector_fmas == n * 4 * 4
    assert got.shuffles == 4 * 4 * 1  # cout x vectors x one offset (dx // 2 = 1)
