"""Generated kernels compute what torch computes, on every target (qemu for aarch64).

One shared suite runs over every built-in target (STYLE rule 11): the host (and the
host as an AVX2-only machine) through the shared library in-process, aarch64 through
the static executable under qemu-aarch64. All kernels of a target are built in one
parallel batch.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codegen import (
    BuildInput,
    KernelConfig,
    KernelLibrary,
    LocalBuilder,
    Product,
    Target,
    aarch64_target,
    config_space,
    generate,
    host_target,
    random_input,
    reference_output,
    verify,
)
from codegen.fkw import used_patterns
from pattune_common import ConfigError
from search_spaces.layers import LayerSpec, PrunedLayer
from search_spaces.projection import random_pruned_layer
from tests.codegen_support import (
    PATTERNS8,
    build_and_run,
    pool_layers,
    relu_blocks_layer,
    required_layers,
    run_built,
    with_relu,
)

LAYERS = required_layers()
# The fused ReLU epilogue, on partial column and row tiles, strided, and blocked.
LAYERS.update({f"{n}_relu": with_relu(LAYERS[n]) for n in ("odd_width", "stride2", "hw5")})
LAYERS["relu_blocks"] = relu_blocks_layer()
# The fused 2x2 max-pool epilogue: odd sizes (floor drops the last row/column), strided,
# with and without ReLU, narrower and wider than one vector.
LAYERS.update(pool_layers())


def _configs(layer: PrunedLayer, target: Target) -> list[KernelConfig]:
    """Default plus one config per format with non-default tiles, threads and mappings."""
    rng = np.random.default_rng(7)
    sp = config_space(layer.spec, target)
    cfgs = [sp.default()]
    for fmt, threads in (("fkw", 2), ("dense", 1), ("csr", 2)):
        cfgs += config_space(layer.spec, target, format=fmt, threads=threads).sample(rng, 1)
    return cfgs


def _outputs(target: Target, builder: LocalBuilder) -> dict[str, list[tuple]]:
    jobs = [(name, cfg, generate(layer, cfg, target)) for name, layer in LAYERS.items()
            for cfg in _configs(layer, target)]
    product = Product.LIBRARY if target.can_load_library else Product.EXECUTABLE
    results = builder.build([BuildInput(k, target, (product,)) for _, _, k in jobs])
    out: dict[str, list[tuple]] = {name: [] for name in LAYERS}
    for (name, cfg, kernel), res in zip(jobs, results, strict=True):
        layer = LAYERS[name]
        x = random_input(layer, seed=1)
        out[name].append((cfg, run_built(target, res, kernel, layer, x), reference_output(layer, x)))
    return out


def _host_outputs(layer, cfgs: list, tmp_path, seed: int) -> tuple[list, list[np.ndarray]]:
    """Generate, build and run ``cfgs`` of ``layer`` on the host: kernels and outputs."""
    target = host_target()
    kernels = [generate(layer, c, target) for c in cfgs]
    results = LocalBuilder(cache_dir=tmp_path).build(
        [BuildInput(k, target, (Product.LIBRARY,)) for k in kernels])
    x = random_input(layer, seed=seed)
    ys = [run_built(target, r, k, layer, x) for r, k in zip(results, kernels, strict=True)]
    assert verify(ys[0], reference_output(layer, x)).ok
    return kernels, ys


@pytest.fixture(scope="module", params=["host", "avx2", "aarch64"])
def target_outputs(request, tmp_path_factory) -> tuple[Target, dict[str, list[tuple]]]:
    # avx2: the host without AVX-512 (its own partial-row stores and lane shifts)
    target = {"host": host_target, "avx2": lambda: host_target(isa="avx2"),
              "aarch64": aarch64_target}[request.param]()
    builder = LocalBuilder(cache_dir=tmp_path_factory.mktemp(f"builds-{request.param}"))
    return target, _outputs(target, builder)


@pytest.mark.parametrize("name", list(LAYERS))
def test_kernel_matches_torch(target_outputs, name: str) -> None:
    target, outputs = target_outputs
    assert len(outputs[name]) == 4
    for cfg, y, ref in outputs[name]:
        v = verify(y, ref)
        assert v.ok, f"{target.name} {name} {cfg.to_json()}: {v.error}"
        assert v.max_rel_error <= 1e-5


def test_required_layers_have_the_required_properties() -> None:
    assert len(used_patterns(LAYERS["all56"])) == 56
    assert used_patterns(LAYERS["one_pattern"]) == (0,)
    assert not LAYERS["dead_filters"].alive[[0, 3]].any()
    assert LAYERS["odd_width"].spec.out_w % 4 != 0
    assert {LAYERS[f"hw{i}"].spec.h for i in range(1, 8)} == set(range(1, 8))


def _per_block_relu(layer: PrunedLayer, x: np.ndarray, icb: int) -> np.ndarray:
    """What a kernel that clipped after every channel block would output (wrong)."""
    import torch

    s, acc = layer.spec, None
    for c0 in range(0, s.cin, icb):
        part = torch.nn.functional.conv2d(
            torch.from_numpy(x[:, c0:c0 + icb]), torch.from_numpy(layer.weights[:, c0:c0 + icb]),
            torch.from_numpy(np.array(layer.bias)) if acc is None else None,
            stride=s.stride, padding=s.padding)
        acc = torch.relu(part if acc is None else acc + part)
    assert acc is not None
    return acc.numpy()


@pytest.mark.parametrize("target_name", ["host", "aarch64"])
def test_relu_clips_only_the_complete_sum(tmp_path, target_name: str) -> None:
    """Partial sums of earlier channel blocks stay unclipped, in every format and loop order."""
    layer = LAYERS["relu_blocks"]
    target = host_target() if target_name == "host" else aarch64_target()
    sp = config_space(layer.spec, target, pack_rows=False)  # several blocks: row tiles
    base = sp.default().replace(ic_block=4, threads=1)
    cfgs = [sp.validate(base.replace(format=f, lre=f != "csr", tap_shuffle=f != "csr",
                                     loop_order=o))
            for f in ("fkw", "dense", "csr")
            for o in ("block_group_tile", "group_block_tile", "block_group_filter")]
    cfgs.append(sp.validate(base.replace(threads=2, oc_block=1)))
    x = np.abs(random_input(layer, seed=3))
    ref = reference_output(layer, x)
    wrong = _per_block_relu(layer, x, 4)
    # The layer is built so that clipping per block would be caught.
    assert np.abs(wrong - ref).max() > 0.5 * np.abs(ref).max()
    assert (ref[0, :2] > 0).mean() > 0.5 and (ref[0, 2:] == 0).mean() > 0.5
    kernels = [generate(layer, c, target) for c in cfgs]
    product = Product.LIBRARY if target.can_load_library else Product.EXECUTABLE
    results = LocalBuilder(cache_dir=tmp_path).build(
        [BuildInput(k, target, (product,)) for k in kernels])
    for cfg, kernel, res in zip(cfgs, kernels, results, strict=True):
        v = verify(run_built(target, res, kernel, layer, x), ref)
        assert v.ok, f"{target.name} {cfg.to_json()}: {v.error}"


def test_dead_filters_output_only_bias() -> None:
    layer = LAYERS["dead_filters"]
    ref = reference_output(layer, random_input(layer, seed=1))
    assert np.allclose(ref[0, 0], layer.bias[0]) and np.allclose(ref[0, 3], layer.bias[3])


SWITCHES = [
    {"fkr": False}, {"lre": False}, {"unroll": 4}, {"loop_order": "block_group_filter"},
    {"loop_order": "group_block_tile"}, {"threads": 2, "thread_mapping": "interleaved"},
    {"threads": 2, "thread_mapping": "balanced"}, {"oc_block": 1}, {"shifted": False},
    {"tile_rows": 3, "tile_vecs": 1}, {"vector_width": 8, "tile_vecs": 1},
    {"loop_order": "tile_block_group"}, {"prefetch": 1}, {"prefetch": 3, "unroll": 4},
    {"shifted": False, "tap_shuffle": True}, {"out_prefetch": False},
]


@pytest.mark.parametrize("name", ["odd_width", "stride2", "dead_filters", "all56"])
def test_switches_give_identical_output(tmp_path, name: str) -> None:
    """Each optimisation on and off: bitwise-identical outputs (same summation order)."""
    layer, target = LAYERS[name], host_target()
    sp = config_space(layer.spec, target)
    base = sp.default().replace(oc_block=2, unroll=2, shifted=True, vector_width=4, tile_vecs=2,
                                tile_rows=2, tap_shuffle=False, shift_sums=False)
    cfgs = [sp.validate(base)] + [sp.validate(base.replace(**s)) for s in SWITCHES]
    cfgs += [sp.validate(base.replace(format="dense", prefetch=2)),
             sp.validate(base.replace(format="dense", lre=False))]
    _, ys = _host_outputs(layer, cfgs, tmp_path, seed=2)
    for cfg, y in zip(cfgs[1:-2], ys[1:-2], strict=True):
        assert np.array_equal(y, ys[0]), cfg.to_json()
    # FKW off walks kernels by channel instead of by pattern: a different summation
    # order, so equal to the FKW result only to rounding; LRE on/off stays bitwise equal.
    assert np.array_equal(ys[-1], ys[-2])
    assert np.max(np.abs(ys[-1] - ys[0])) <= 1e-6 * np.max(np.abs(ys[0]))


SHUFFLE_LAYERS = ["odd_width", "stride2", "stride2_pad0", "pad0", "hw1", "hw5", "all56",
                  "odd_width_pool", "pool_wide"]


@pytest.mark.parametrize("target_name", ["host", "aarch64"])
def test_tap_shuffle_is_bitwise_equal_to_unaligned_loads(tmp_path, target_name: str) -> None:
    """tap_shuffle on and off, every vector width, stride 1 and 2, partial tiles, both
    formats that use it: identical outputs. On AVX-512 the shifts are valignd, on NEON ext."""
    target = host_target() if target_name == "host" else aarch64_target()
    jobs = []
    for name in SHUFFLE_LAYERS:
        layer = LAYERS[name]
        sp = config_space(layer.spec, target)
        for vl in sp.choices["vector_width"]:
            rows = min(3, max(sp.choices["tile_rows"]))
            base = sp.default().replace(vector_width=vl, tile_vecs=1, tile_rows=rows,
                                        shifted=False, threads=1, shift_sums=False)
            for fmt in ("fkw", "dense"):
                off = sp.validate(base.replace(format=fmt, unroll=2, tap_shuffle=False))
                jobs += [(name, off), (name, sp.validate(off.replace(tap_shuffle=True)))]
    kernels = [generate(LAYERS[n], c, target) for n, c in jobs]
    ys = build_and_run(target, [(LAYERS[n], k) for (n, _), k in zip(jobs, kernels, strict=True)],
                       tmp_path, seed=4)
    for i in range(0, len(jobs), 2):
        assert np.array_equal(ys[i + 1], ys[i]), f"{target.name} {jobs[i + 1]}"
        assert "SHIFT1(" in kernels[i + 1].source and "SHIFT1(" not in kernels[i].source
    native = "_mm512_alignr_epi32" if target.vector_floats == 16 else "vextq_f32"
    assert any(native in k.source for k in kernels[1::2])


@pytest.mark.parametrize("target_name", ["host", "aarch64"])
def test_out_prefetch_is_bitwise_equal_and_covers_each_row_of_valid_outputs(
        tmp_path, target_name: str) -> None:
    """out_prefetch on and off: identical outputs (full and partial tiles, strided, fused
    max-pool, several channel blocks); on, every tile prefetches its rows' lines for writing:
    per row every 16th valid column and the last one (alignment is unknown when generating)."""
    target = host_target() if target_name == "host" else aarch64_target()
    jobs = []
    for name in ("odd_width", "stride2", "hw5", "odd_width_pool", "relu_blocks"):
        sp = config_space(LAYERS[name].spec, target, pack_rows=False)  # out_prefetch: row tiles
        base = sp.default().replace(threads=1, ic_block=min(sp.choices["ic_block"]))
        jobs += [(name, sp.validate(base.replace(out_prefetch=False))),
                 (name, sp.validate(base.replace(out_prefetch=True)))]
    kernels = [generate(LAYERS[n], c, target) for n, c in jobs]
    ys = build_and_run(target, [(LAYERS[n], k) for (n, _), k in zip(jobs, kernels, strict=True)],
                       tmp_path, seed=5)
    for i in range(0, len(jobs), 2):
        assert np.array_equal(ys[i + 1], ys[i]), f"{target.name} {jobs[i]}"
        assert "  PFW(" not in kernels[i].source
    # 56 columns in 16-float vectors, 2 per tile: full tiles write 32 columns a row
    # (lines at 0, 16 and, if unaligned, 31), the last one 24 (0, 16, 23).
    layer = random_pruned_layer(LayerSpec("w56", cin=4, cout=2, h=7, w=56), PATTERNS8,
                                connectivity="2x", seed=5)
    cfg = config_space(layer.spec, host_target()).default().replace(
        vector_width=16, tile_vecs=2, tile_rows=3, out_prefetch=True)
    src = generate(layer, cfg, host_target()).source

    def prefetches(fn: str) -> list[str]:
        body = src.split(f"static void {fn}(")[1].split("\n}\n")[0]
        return [ln.strip() for ln in body.splitlines() if "PFW(" in ln]

    assert prefetches("tile_r3_v2_p0") == [
        f"PFW(out + {r} * OWP + {o});" for r in range(3) for o in (0, 16, 31)]
    assert prefetches("tile_r3_v2_p24") == [
        f"PFW(out + {r} * OWP + {o});" for r in range(3) for o in (0, 16, 23)]


@pytest.mark.parametrize("name", ["odd_width", "stride2"])
def test_prefetch_leaves_the_unstructured_kernel_bitwise_equal(tmp_path, name: str) -> None:
    layer, target = LAYERS[name], host_target()
    sp = config_space(layer.spec, target, format="csr")
    cfgs = [sp.validate(sp.default().replace(prefetch=p, unroll=2)) for p in (0, 1, 3)]
    kernels, ys = _host_outputs(layer, cfgs, tmp_path, seed=3)
    assert np.array_equal(ys[1], ys[0]) and np.array_equal(ys[2], ys[0])
    assert "PF(pf" in kernels[2].source and "PF(pf" not in kernels[0].source


def test_executable_reports_json_and_dumps_output(tmp_path) -> None:
    layer, target = LAYERS["odd_width"], host_target()
    cfg = config_space(layer.spec, target).default().replace(threads=2)
    kernel = generate(layer, cfg, target)
    [res] = LocalBuilder(cache_dir=tmp_path).build([BuildInput(kernel, target)])
    x = random_input(layer, seed=3)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    proc = subprocess.run([res.executable, str(tmp_path / "in.bin"), res.weights, "1", "4",
                           str(tmp_path / "out.bin")], capture_output=True, text=True, check=True)
    report = json.loads(proc.stdout)
    assert len(report["times_s"]) == 4 and all(t > 0 for t in report["times_s"])
    y = np.fromfile(tmp_path / "out.bin", dtype=np.float32).reshape(reference_output(layer, x).shape)
    assert verify(y, reference_output(layer, x)).ok
    assert report["checksum"] == pytest.approx(float(y.astype(np.float64).sum()), rel=1e-9)
    assert report["threads"] == 2
    bad = subprocess.run([res.executable, str(tmp_path / "out.bin"), res.weights, "0", "1"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 3 and "must hold 936 float32 values" in bad.stderr
    objdump = subprocess.run(["ldd", res.executable], capture_output=True, text=True, check=False).stdout
    libs = {Path(ln.split()[0]).name.split(".so")[0] for ln in objdump.splitlines() if ".so" in ln}
    assert libs <= {"linux-vdso", "libc", "libm", "libgomp", "ld-linux-x86-64"}


def test_aarch64_executable_is_static(tmp_path) -> None:
    layer, target = LAYERS["hw3"], aarch64_target()
    kernel = generate(layer, config_space(layer.spec, target).default(), target)
    [res] = LocalBuilder(cache_dir=tmp_path).build(
        [BuildInput(kernel, target, (Product.EXECUTABLE,))])
    info = subprocess.run(["file", res.executable], capture_output=True, text=True, check=False).stdout
    assert "ARM aarch64" in info and "statically linked" in info


def test_compile_error_is_a_build_result(tmp_path) -> None:
    layer, target = LAYERS["hw2"], host_target()
    good = generate(layer, config_space(layer.spec, target).default(), target)
    assert good.source.count("compute(c, out, 0, lazy);") == 1
    broken = dataclasses.replace(good, name="broken",
                                 source=good.source.replace("compute(c, out, 0, lazy);",
                                                             "compute(c, out, 0, lazy) oops;"))
    bad_flags = dataclasses.replace(target, cflags=(*target.cflags, "-mno-such-flag"))
    results = LocalBuilder(cache_dir=tmp_path).build(
        [BuildInput(broken, target), BuildInput(good, target), BuildInput(good, bad_flags)])
    assert [r.ok for r in results] == [False, True, False]
    assert results[0].error.startswith("build: broken: ")
    assert "error: expected ';' before 'oops'" in results[0].error
    assert results[2].error.startswith("build: ") and "-mno-such-flag" in results[2].error
    missing = dataclasses.replace(target, cc="/nonexistent/cc")
    [res] = LocalBuilder(cache_dir=tmp_path).build([BuildInput(good, missing)])
    assert res.error.startswith("build: cannot run compiler '/nonexistent/cc'")


def test_builds_are_cached_by_content(tmp_path) -> None:
    layer, target = LAYERS["hw4"], host_target()
    kernel = generate(layer, config_space(layer.spec, target).default(), target)
    builder = LocalBuilder(cache_dir=tmp_path)
    first = builder.build([BuildInput(kernel, target)])[0]
    second = builder.build([BuildInput(kernel, target)])[0]
    assert not first.cached and second.cached and second.seconds == 0.0
    assert second.library == first.library and second.executable == first.executable


def test_wrong_weights_blob_is_rejected(tmp_path) -> None:
    a, b = LAYERS["hw5"], LAYERS["hw6"]
    target = host_target()
    ka = generate(a, config_space(a.spec, target).default(), target)
    kb = generate(b, config_space(b.spec, target).default(), target)
    [res] = LocalBuilder(cache_dir=tmp_path).build([BuildInput(ka, target, (Product.LIBRARY,))])
    with pytest.raises(Exception, match="pt_init rejected the weights"):
        KernelLibrary(res.library, kb.weights, a.spec)


def test_two_libraries_from_one_path_keep_their_own_weights(tmp_path) -> None:
    layer, target = LAYERS["hw7"], host_target()
    kernel = generate(layer, config_space(layer.spec, target).default(), target)
    [res] = LocalBuilder(cache_dir=tmp_path).build([BuildInput(kernel, target, (Product.LIBRARY,))])
    doubled = bytearray(kernel.weights)
    first = KernelLibrary(res.library, kernel.weights, layer.spec)
    x = random_input(layer, seed=4)
    before = first.run(x)
    # Same blob layout, other values: bias array is last; change it.
    nbias = 4 * layer.spec.cout
    doubled[-nbias:] = (np.frombuffer(bytes(doubled[-nbias:]), np.float32) + 1).tobytes()
    second = KernelLibrary(res.library, bytes(doubled), layer.spec)
    assert np.array_equal(first.run(x), before)
    assert np.allclose(second.run(x), before + 1, atol=1e-5)


def test_generate_rejects_invalid_config_before_compiling() -> None:
    layer = LAYERS["odd_width"]
    cfg = config_space(layer.spec, host_target()).default().replace(vector_width=16)
    with pytest.raises(ConfigError, match="KernelConfig.vector_width must be one of 4 for layer "
                                          "'odd_width' on target 'aarch64'; got 16"):
        generate(layer, cfg, aarch64_target())
    with pytest.raises(ConfigError, match="KernelConfig.unroll must be one of 1, 2, 4"):
        generate(layer, cfg.replace(unroll=3), host_target())
