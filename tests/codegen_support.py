"""Layers and helpers shared by the codegen tests (small shapes: qemu is slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codegen import (
    BuildInput,
    GeneratedKernel,
    KernelLibrary,
    LocalBuilder,
    Product,
    Target,
    random_input,
    reference_output,
    run_executable,
    verify,
)
from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.patterns import PatternSet, all_patterns
from search_spaces.projection import random_pruned_layer

PATTERNS8 = PatternSet(all_patterns()[:8])


def with_dead_filters(layer: PrunedLayer, dead: list[int]) -> PrunedLayer:
    """A copy of ``layer`` where every kernel of the ``dead`` filters is pruned."""
    alive = layer.alive.copy()
    w = np.array(layer.weights)
    alive[dead] = False
    w[dead] = 0.0
    return PrunedLayer(spec=layer.spec, pattern_set=layer.pattern_set,
                       pattern_ids=layer.pattern_ids, alive=alive, weights=w, bias=layer.bias)


def every_pattern_layer() -> PrunedLayer:
    """16 x 8 kernels whose pattern ids cycle through all 56 patterns."""
    spec = LayerSpec("all56", cin=16, cout=8, h=5, w=6)
    ps = PatternSet(all_patterns())
    rng = np.random.default_rng(56)
    ids = (np.arange(spec.cout * spec.cin) % len(ps)).reshape(spec.cout, spec.cin)
    w = rng.standard_normal((spec.cout, spec.cin, 3, 3)).astype(np.float32) * ps.masks()[ids]
    return PrunedLayer(spec=spec, pattern_set=ps, pattern_ids=ids, alive=np.ones_like(ids, bool),
                       weights=w, bias=rng.standard_normal(spec.cout).astype(np.float32))


def required_layers() -> dict[str, PrunedLayer]:
    """Every shape issue 3 names, as small random pattern-pruned layers."""
    out: dict[str, PrunedLayer] = {}

    def add(name: str, ps: PatternSet = PATTERNS8, conn: str = "2x", **kw: int) -> None:
        spec = LayerSpec(name, **kw)
        out[name] = random_pruned_layer(spec, ps, connectivity=conn, seed=len(out))

    add("odd_width", cin=8, cout=6, h=9, w=13)
    for hw in range(1, 8):
        add(f"hw{hw}", cin=4, cout=3, h=hw, w=hw)
    add("stride2", cin=5, cout=4, h=11, w=11, stride=2)
    add("stride2_pad0", cin=4, cout=3, h=10, w=9, stride=2, padding=0)
    add("pad0", cin=4, cout=4, h=8, w=8, padding=0)
    add("cin3", cin=3, cout=8, h=10, w=10, conn="1x")
    add("cout1", cin=6, cout=1, h=6, w=9)
    add("one_pattern", PatternSet((all_patterns()[17],)), cin=6, cout=4, h=7, w=7)
    out["all56"] = every_pattern_layer()
    base = random_pruned_layer(LayerSpec("dead_filters", cin=6, cout=5, h=7, w=10), PATTERNS8,
                               connectivity="2x", seed=99)
    out["dead_filters"] = with_dead_filters(base, [0, 3])
    return out


def with_relu(layer: PrunedLayer) -> PrunedLayer:
    """``layer`` with the fused ReLU epilogue."""
    return PrunedLayer(spec=layer.spec, pattern_set=layer.pattern_set,
                       pattern_ids=layer.pattern_ids, alive=layer.alive, weights=layer.weights,
                       bias=layer.bias, relu=True)


def with_pool(layer: PrunedLayer, *, relu: bool = True) -> PrunedLayer:
    """``layer`` with the fused 2x2/stride-2 max-pool epilogue (after a ReLU by default)."""
    return PrunedLayer(spec=layer.spec, pattern_set=layer.pattern_set,
                       pattern_ids=layer.pattern_ids, alive=layer.alive, weights=layer.weights,
                       bias=layer.bias, relu=relu, maxpool=True)


def pool_layers() -> dict[str, PrunedLayer]:
    """Max-pool epilogues on odd and even sizes, strided, wide enough for whole vectors.

    ``pool_wide`` (11x37 -> 5x18) pools full AVX-512 vectors plus a scalar tail and
    drops the last row and column; the others are narrower than one vector.
    """
    base = required_layers()
    out = {
        "odd_width_pool": with_pool(base["odd_width"]),  # 9x13 -> 4x6
        "stride2_pool": with_pool(base["stride2"], relu=False),  # 6x6 -> 3x3
        "hw5_pool": with_pool(base["hw5"]),  # 5x5 -> 2x2
    }
    wide = random_pruned_layer(LayerSpec("pool_wide", cin=4, cout=5, h=11, w=37), PATTERNS8,
                               connectivity="2x", seed=77)
    out["pool_wide"] = with_pool(wide)
    out["pool_wide_norelu"] = with_pool(wide, relu=False)
    return out


def relu_blocks_layer() -> PrunedLayer:
    """A ReLU layer whose first channel block sums negative and the whole sum positive.

    12 input channels in blocks of 4 on a non-negative input: in filters 0 and 1 the
    weights of channels 0..3 are -1 and the rest +1, so after block 0 the partial sum
    is negative and the complete sum positive; filters 2 and 3 are the negation. A
    kernel that clipped at zero after every block instead of after the last one
    would lose block 0's negative contribution.
    """
    spec = LayerSpec("relu_blocks", cin=12, cout=4, h=6, w=7)
    rng = np.random.default_rng(12)
    ids = rng.integers(0, len(PATTERNS8), size=(spec.cout, spec.cin))
    sign = np.ones((spec.cout, spec.cin), np.float32)
    sign[:, :4] = -1.0
    sign[2:] *= -1.0
    w = PATTERNS8.masks()[ids] * sign[..., None, None]
    return PrunedLayer(spec=spec, pattern_set=PATTERNS8, pattern_ids=ids,
                       alive=np.ones_like(ids, bool), weights=w.astype(np.float32),
                       bias=np.zeros(spec.cout, np.float32), relu=True)


def run_built(target: Target, res, kernel: GeneratedKernel, layer: PrunedLayer,
              x: np.ndarray) -> np.ndarray:
    """The built kernel's output for ``x``: in-process where the target loads here, else
    the standalone executable (qemu for aarch64)."""
    assert res.ok, res.error
    if target.can_load_library:
        lib = KernelLibrary(res.library, kernel.weights, layer.spec, maxpool=layer.maxpool)
        assert lib.output_shape == layer.output_shape
        return lib.run(x)
    run = run_executable(res.executable, res.weights, x, layer.spec, target, repeats=1,
                         maxpool=layer.maxpool)
    assert run.error == "", run.error
    return run.output


def build_and_run(target: Target, jobs: list[tuple[PrunedLayer, GeneratedKernel]],
                  cache_dir: Path, seed: int) -> list[np.ndarray]:
    """Build every kernel for ``target`` in one batch, run each on its layer's random input
    ``seed`` and check it against torch: the outputs, in order."""
    product = Product.LIBRARY if target.can_load_library else Product.EXECUTABLE
    results = LocalBuilder(cache_dir=cache_dir).build(
        [BuildInput(k, target, (product,)) for _, k in jobs])
    ys = []
    for (layer, kernel), res in zip(jobs, results, strict=True):
        x = random_input(layer, seed=seed)
        ys.append(run_built(target, res, kernel, layer, x))
        v = verify(ys[-1], reference_output(layer, x))
        assert v.ok, f"{target.name} {layer.spec.name} {kernel.name}: {v.error}"
    return ys
