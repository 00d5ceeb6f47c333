"""shift_sums: each tile sums its shifted taps unshifted and shifts the sums once.

Against torch on every target (qemu for aarch64) and, to rounding, against the same tile
with its taps shuffled (the summation order differs, so not bitwise).
"""

from __future__ import annotations

import numpy as np
import pytest

from codegen import aarch64_target, config_space, generate, host_target
from tests.codegen_support import (
    build_and_run,
    pool_layers,
    relu_blocks_layer,
    required_layers,
    with_relu,
)

# Stride 1 and 2, no padding, partial rows, 1 to 37 wide, fused max-pool, ReLU over blocks.
LAYERS = {n: layer for n, layer in {**required_layers(), **pool_layers()}.items()
          if n in ("odd_width", "stride2", "stride2_pad0", "pad0", "hw1", "hw5", "all56",
                   "odd_width_pool", "pool_wide")}
LAYERS["stride2_relu"] = with_relu(required_layers()["stride2"])
LAYERS["relu_blocks"] = relu_blocks_layer()


@pytest.mark.parametrize("target_name", ["host", "avx2", "aarch64"])
def test_shift_sums_match_torch_and_the_shuffled_taps(tmp_path, target_name: str) -> None:
    """shift_sums on every layer and vector width where a tile fits it (stride 1 and 2, no
    padding, partial rows, fused max-pool, ReLU over several channel blocks), both formats
    that use it: the kernels' inputs are never shifted, each tile shifts its sums once, and
    the outputs match torch and, to rounding, the same tile with its taps shuffled."""
    target = {"host": host_target, "avx2": lambda: host_target(isa="avx2"),
              "aarch64": aarch64_target}[target_name]()
    jobs = []
    for name in LAYERS:
        layer = LAYERS[name]
        sp = config_space(layer.spec, target, pack_rows=False)  # row tiles (see pack_rows)
        for vl in sp.choices["vector_width"]:
            vecs = -(-layer.spec.out_w // vl)
            fits = [r for r in sp.choices["tile_rows"] if vecs in sp.choices["tile_vecs"] and
                    not sp.shift_sums_fit(sp.default().replace(
                        vector_width=vl, tile_vecs=vecs, tile_rows=r))]
            if not fits:
                continue
            on = sp.validate(sp.default().replace(
                vector_width=vl, tile_vecs=vecs, tile_rows=max(fits), shifted=False, threads=1,
                tap_shuffle=False, shift_sums=True, unroll=2))
            for fmt in ("fkw", "dense"):
                jobs += [(name, on.replace(format=fmt)),
                         (name, on.replace(format=fmt, shift_sums=False, tap_shuffle=True))]
    assert len(jobs) >= 24
    kernels = [generate(LAYERS[n], c, target) for n, c in jobs]
    # build_and_run checks every output against torch
    ys = build_and_run(target, [(LAYERS[n], k) for (n, _), k in zip(jobs, kernels, strict=True)],
                       tmp_path, seed=4)
    for i in range(0, len(jobs), 2):
        name, cfg = jobs[i]
        scale = np.max(np.abs(ys[i + 1]))
        assert np.max(np.abs(ys[i] - ys[i + 1])) <= 1e-6 * scale, f"{name} {cfg.to_json()}"
        src = kernels[i].source
        assert "SHIFT1(p" not in src and "SHIFT1(s1_0_0, " in src, name
