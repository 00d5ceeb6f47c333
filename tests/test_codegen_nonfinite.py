"""NaN and infinity through a generated kernel (issue 15 item 9).

The standalone executable printed ``"checksum": -nan`` (not JSON) for an output
holding NaN and ``run_executable`` raised JSONDecodeError. It now prints null
checksums with the count of non-finite outputs, and ``run_executable`` returns
an error result. The tests also pin down the documented semantics for
non-finite inputs (docs/codegen.md), where the kernels differ from torch.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from codegen import (
    BuildInput,
    KernelLibrary,
    LocalBuilder,
    Product,
    config_space,
    generate,
    host_target,
    random_input,
    reference_output,
    run_executable,
)
from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.projection import random_pruned_layer
from tests.codegen_support import PATTERNS8, with_relu


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text.strip().splitlines()[-1], parse_constant=refuse)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = random_pruned_layer(LayerSpec("nf", cin=4, cout=3, h=6, w=7), PATTERNS8,
                               connectivity="2x", seed=3)
    layers = {"plain": base, "relu": with_relu(base)}
    target = host_target()
    cfg = config_space(base.spec, target).default()
    kernels = {n: generate(lay, cfg, target) for n, lay in layers.items()}
    builder = LocalBuilder(cache_dir=tmp_path_factory.mktemp("nf-builds"))
    results = builder.build([BuildInput(k, target, (Product.EXECUTABLE, Product.LIBRARY))
                             for k in kernels.values()])
    for r in results:
        assert r.ok, r.error
    return target, layers, kernels, dict(zip(layers, results, strict=True)), cfg


def test_nonfinite_outputs_are_reported_as_json_and_an_error_result(built, tmp_path):
    target, layers, _, results, _ = built
    layer, res = layers["plain"], results["plain"]
    x = random_input(layer, seed=1)
    ok = run_executable(res.executable, res.weights, x, layer.spec, target, repeats=2)
    assert ok.error == "" and np.isfinite(ok.checksum) and len(ok.times_s) == 2
    x[0, 0, 2, 3] = np.nan
    x[0, 1, 4, 4] = np.inf
    bad = run_executable(res.executable, res.weights, x, layer.spec, target, repeats=2)
    assert bad.output is None and bad.times_s == ()
    assert bad.error.startswith("run: the output holds ") and bad.error.endswith(
        " NaN or infinite value(s)")
    x.astype("<f4").tofile(tmp_path / "in.bin")
    p = subprocess.run([str(res.executable), str(tmp_path / "in.bin"), str(res.weights), "0", "1"],
                       capture_output=True, text=True, check=True)
    report = _strict(p.stdout)  # valid JSON now, not "checksum": -nan
    assert report["checksum"] is None and report["abs_checksum"] is None
    assert report["nonfinite"] == int(bad.error.split()[4]) > 0


def test_documented_semantics_for_nonfinite_inputs(built):
    _, layers, kernels, results, cfg = built
    # The fused ReLU maps NaN to 0 (torch keeps NaN): max(v, 0) by a comparison mask.
    relu = layers["relu"]
    lib = KernelLibrary(results["relu"].library, kernels["relu"].weights, relu.spec)
    x = np.full((1, relu.spec.cin, relu.spec.h, relu.spec.w), np.nan, np.float32)
    assert np.isnan(reference_output(relu, x)).all()
    assert (lib.run(x) == 0).all()
    # Pruned weights are skipped, never multiplied: an infinite input meets no 0 x inf,
    # so outputs that only a pruned weight connects to it stay finite (torch: NaN).
    plain: PrunedLayer = layers["plain"]
    lib = KernelLibrary(results["plain"].library, kernels["plain"].weights, plain.spec)
    x = random_input(plain, seed=2)
    x[0, 0, 3, 3] = np.inf
    ref, out = reference_output(plain, x), lib.run(x)
    assert cfg.format in ("fkw", "csr")
    assert np.isnan(ref).sum() > np.isnan(out).sum()
    assert np.array_equal(np.isfinite(ref), np.isfinite(ref) & np.isfinite(out))
