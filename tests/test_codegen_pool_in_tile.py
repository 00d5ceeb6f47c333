"""A fused 2x2 max-pool computed on the tile's registers equals the separate pooling pass.

Tiles of an even number of rows pool their accumulators and store only the pooled
outputs (``codegen.tile_io.pools_in_tile``); odd row counts keep the full-output scratch
and the pass. Both targets (qemu for aarch64), every format, one and several channel
blocks, two threads, partial and odd-width tiles: bitwise the same outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from codegen import aarch64_target, config_space, generate, host_target
from tests.codegen_support import build_and_run, pool_layers

LAYERS = pool_layers()  # 9x13 -> 4x6 (8 channels), 6x6 -> 3x3 strided, 5x5, 11x37 -> 5x18


def _jobs(target) -> list[tuple[str, object, bool]]:
    jobs = []
    for name, layer in LAYERS.items():
        sp = config_space(layer.spec, target)
        base = sp.default().replace(threads=1, out_prefetch=True)
        rows = [r for r in (2, 4, 3) if r in sp.choices["tile_rows"]]
        for r in rows:
            for fmt, icb, threads in (("fkw", max(sp.choices["ic_block"]), 1),
                                      ("dense", min(sp.choices["ic_block"]), 2),
                                      ("csr", min(sp.choices["ic_block"]), 1)):
                cfg = sp.validate(base.replace(
                    tile_rows=r, format=fmt, ic_block=icb, threads=threads,
                    lre=fmt != "csr", tap_shuffle=fmt != "csr", shift_sums=False))
                jobs += [(name, cfg, False), (name, cfg, True)]
                sums = cfg.replace(tap_shuffle=False, shift_sums=True)
                if fmt != "csr" and sp.is_valid(sums):  # the tile's sums shifted, then pooled
                    jobs += [(name, sums, False), (name, sums, True)]
        # Odd vector counts: the last vector pools with itself (half a vector of outputs).
        vecs = [v for v in (1, 3) if v in sp.choices["tile_vecs"]]
        for v in vecs:
            cfg = sp.validate(base.replace(tile_rows=2, tile_vecs=v, shift_sums=False,
                                           vector_width=min(sp.choices["vector_width"])))
            jobs += [(name, cfg, False), (name, cfg, True)]
    return jobs


@pytest.mark.parametrize("target_name", ["host", "aarch64"])
def test_pool_in_tile_is_bitwise_the_separate_pass(tmp_path, target_name: str) -> None:
    target = host_target() if target_name == "host" else aarch64_target()
    jobs = _jobs(target)
    kernels = [generate(LAYERS[n], c, target, pool_in_tile=p) for n, c, p in jobs]
    ys = build_and_run(target, [(LAYERS[n], k) for (n, _, _), k in zip(jobs, kernels, strict=True)],
                       tmp_path, seed=6)
    in_tile = 0
    for i in range(0, len(jobs), 2):
        name, cfg, _ = jobs[i]
        assert np.array_equal(ys[i + 1], ys[i]), f"{target.name} {name} {cfg.to_json()}"
        assert kernels[i].meta["pool_in_tile"] is False
        assert "#define PIT 0" in kernels[i].source
        pit = kernels[i + 1].meta["pool_in_tile"]
        assert pit == (cfg.tile_rows % 2 == 0)
        assert ("#define PIT 1" in kernels[i + 1].source) == pit
        assert ("pout + " in kernels[i + 1].source) == pit
        in_tile += pit
    assert in_tile >= len(jobs) // 3
