"""The C API: models side by side in one process and from threads, prefixes, visibility,
the Makefile natively and with the aarch64 cross compiler, and run_model's protocol."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from codegen import aarch64_target, host_target
from codegen.network import NetworkBuild, NetworkError, NetworkLibrary, run_network_executable
from tests.network_support import build, model_case, prune, rel_err, torch_out

# One worker builds this module's networks once (scripts/test.sh runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("network-api")

TWO_MODELS_C = r"""
#include <stdio.h>
#include "a/pattune_model.h"
#include "b/pattune_model.h"

static int check(int rc, const char* what) {
  if (rc) fprintf(stderr, "%s failed: %d\n", what, rc);
  return rc;
}

int main(int argc, char** argv) {
  (void)argc;
  char err[256];
  neta_model* a; netb_model* b;
  if (check(neta_model_create_from_file(argv[1], &a, err, sizeof err), err)) return 1;
  if (check(netb_model_create_from_file(argv[2], &b, err, sizeof err), err)) return 1;
  /* each library refuses the other's weights */
  netb_model* wrong;
  const int rc = netb_model_create_from_file(argv[1], &wrong, err, sizeof err);
  if (rc != PT_ERR_NETWORK || wrong) { fprintf(stderr, "accepted foreign weights\n"); return 1; }
  float xa[1 * 1 * 28 * 28], ya[10], xb[1 * 3 * 32 * 32], yb[10];
  for (int i = 0; i < 28 * 28; ++i) xa[i] = (float)(i % 7) - 3.0f;
  for (int i = 0; i < 3 * 32 * 32; ++i) xb[i] = (float)(i % 5) - 2.0f;
  if (check(neta_model_run(a, xa, ya), neta_model_last_error(a))) return 1;
  if (check(netb_model_run(b, xb, yb), netb_model_last_error(b))) return 1;
  for (int i = 0; i < 10; ++i) printf("%.9g %.9g\n", ya[i], yb[i]);
  neta_model_destroy(a); netb_model_destroy(b);
  return 0;
}
"""


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, NetworkBuild]]:
    """Two different networks for the host, with their own prefixes, every product."""
    root = tmp_path_factory.mktemp("api")
    out = {}
    for name, prefix in (("example", "neta"), ("vgg16_narrow", "netb")):
        model, shape = model_case(name)
        patterns = prune(model, shape)
        out[prefix] = (model, build(model, shape, patterns, host_target(), root / prefix[-1],
                                    root / "cache", prefix=prefix,
                                    products=("static", "shared", "run_model")))
    return out


def _x(b: NetworkBuild, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(b.input_shape).astype(np.float32)


def test_two_networks_and_two_instances_in_one_process(two: dict) -> None:
    (ma, ba), (mb, bb) = two["neta"], two["netb"]
    libs = [NetworkLibrary(ba.shared_library, ba.weights, prefix="neta"),
            NetworkLibrary(bb.shared_library, Path(bb.weights).read_bytes(), prefix="netb"),
            NetworkLibrary(ba.shared_library, Path(ba.weights).read_bytes(), prefix="neta")]
    assert libs[0].input_shape == (1, 1, 28, 28) and libs[1].input_shape == (1, 3, 32, 32)
    assert libs[0].output_shape == libs[1].output_shape == (1, 10)
    xa, xb = _x(ba, 1), _x(bb, 2)
    ya, yb, ya2 = libs[0].run(xa), libs[1].run(xb), libs[2].run(xa)
    assert rel_err(ya, torch_out(ma, xa)) <= 1e-4 and rel_err(yb, torch_out(mb, xb)) <= 1e-4
    assert np.array_equal(ya, ya2)
    for lib in libs:
        lib.close()
    lib.close()  # idempotent
    with pytest.raises(NetworkError, match="closed"):
        libs[0].run(xa)


def test_models_run_from_two_threads_at_once(two: dict) -> None:
    (_, ba), (_, bb) = two["neta"], two["netb"]
    cases = [(ba, "neta", _x(ba, 3)), (bb, "netb", _x(bb, 4)), (ba, "neta", _x(ba, 5))]
    expect = [NetworkLibrary(b.shared_library, b.weights, prefix=p).run(x) for b, p, x in cases]
    errors: list[str] = []

    def work(i: int) -> None:
        b, p, x = cases[i]
        with NetworkLibrary(b.shared_library, b.weights, prefix=p, threads=1 + i % 2) as lib:
            for _ in range(20):
                if not np.allclose(lib.run(x), expect[i], rtol=1e-5, atol=1e-6):
                    errors.append(f"thread {i}: wrong output")
                    return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_threads_and_shapes_are_checked(two: dict) -> None:
    _, b = two["neta"]
    with NetworkLibrary(b.shared_library, b.weights, prefix="neta") as lib:
        with pytest.raises(ValueError, match="threads must be an int >= 1"):
            lib.threads = 0
        with pytest.raises(ValueError, match=r"input must have shape \(1, 1, 28, 28\)"):
            lib.run(np.zeros((1, 1, 28, 27), np.float32))
        lib.threads = 2
        assert lib.threads == 2


def test_only_the_prefixed_api_is_exported(two: dict) -> None:
    _, b = two["netb"]
    nm = subprocess.run(["nm", "-D", "--defined-only", b.shared_library], capture_output=True,
                        text=True, check=True).stdout
    names = {ln.split()[-1] for ln in nm.splitlines() if ln.strip()}
    assert names == {f"netb_model_{n}" for n in (
        "create_from_file", "create_from_memory", "input_shape", "output_shape", "input_size",
        "output_size", "set_threads", "run", "op_seconds", "last_error", "destroy")}


def test_two_static_libraries_link_into_one_c_program(two: dict, tmp_path: Path) -> None:
    (ma, ba), (mb, bb) = two["neta"], two["netb"]
    (tmp_path / "main.c").write_text(TWO_MODELS_C)
    root = Path(ba.out_dir).parent
    exe = tmp_path / "two"
    subprocess.run(["gcc", "-O2", "-fopenmp", "-I", str(root), "-o", str(exe),
                    str(tmp_path / "main.c"), ba.static_library, bb.static_library, "-lm"],
                   check=True, capture_output=True, text=True)
    proc = subprocess.run([str(exe), ba.weights, bb.weights], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = np.array([[float(v) for v in ln.split()] for ln in proc.stdout.splitlines()])
    xa = ((np.arange(28 * 28) % 7) - 3.0).astype(np.float32).reshape(1, 1, 28, 28)
    xb = ((np.arange(3 * 32 * 32) % 5) - 2.0).astype(np.float32).reshape(1, 3, 32, 32)
    assert rel_err(got[:, 0].astype(np.float32)[None], torch_out(ma, xa)) <= 1e-4
    assert rel_err(got[:, 1].astype(np.float32)[None], torch_out(mb, xb)) <= 1e-4


def test_run_model_prints_times_and_checksum(two: dict) -> None:
    model, b = two["neta"]
    x = _x(b, 6)
    res = run_network_executable(b.run_model, b.weights, x, b.output_shape, host_target(),
                                 warmup=1, repeats=3, threads=2)
    assert not res.error and len(res.times_s) == 3 and all(t > 0 for t in res.times_s)
    assert res.output is not None and rel_err(res.output, torch_out(model, x)) <= 1e-4
    assert res.checksum == pytest.approx(float(res.output.astype(np.float64).sum()), rel=1e-6)
    bad = run_network_executable(b.run_model, b.weights, x[..., :-1], b.output_shape,
                                 host_target())
    assert bad.error.startswith("run: exit code 3") and "must hold 784 float32" in bad.error


def test_run_model_reports_non_finite_outputs_as_valid_json(tmp_path: Path) -> None:
    """NaN in, NaN out: the checksums are null (JSON has no NaN) and the outputs counted."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    b = build(model, (1, 1, 4, 4), None, host_target(), tmp_path / "o", tmp_path / "cache",
              products=("run_model",))
    x = np.ones((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 2] = np.nan
    x.tofile(tmp_path / "in.bin")
    proc = subprocess.run([b.run_model, str(tmp_path / "in.bin"), b.weights, "0", "1"],
                          capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["checksum"] is None and report["abs_checksum"] is None
    assert report["nonfinite"] == report["out_elems"] == 3
    res = run_network_executable(b.run_model, b.weights, x, b.output_shape, host_target())
    assert res.error == "run: the output holds 3 NaN or infinite value(s)"


@pytest.mark.parametrize("cross", [False, True], ids=["native", "aarch64"])
def test_makefile_builds_the_folder(two: dict, tmp_path: Path, cross: bool) -> None:
    model, b = two["neta"]
    src = Path(b.out_dir)
    work = tmp_path / "copy"
    work.mkdir()
    for f in src.iterdir():
        if f.suffix in (".c", ".h", ".map", ".bin") or f.name == "Makefile":
            (work / f.name).write_bytes(f.read_bytes())
    args = ["make", "-j2"]
    if cross:
        args += ["CC=aarch64-linux-gnu-gcc", "CFLAGS=-O2 -std=gnu11 -march=armv8-a",
                 "LDFLAGS=-static"]
    proc = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("libpattune_model.a", "libpattune_model.so", "run_model"):
        assert (work / name).is_file()
    target = aarch64_target() if cross else host_target()
    x = _x(b, 7)
    res = run_network_executable(work / "run_model", work / "weights.bin", x, b.output_shape,
                                 target, repeats=1)
    assert not res.error, res.error
    assert res.output is not None and rel_err(res.output, torch_out(model, x)) <= 1e-4
    assert json.loads((src / "model.json").read_text())["prefix"] == "neta"


def test_op_seconds_accumulate_per_op(two: dict) -> None:
    _, b = two["netb"]
    with NetworkLibrary(b.shared_library, b.weights, prefix="netb") as lib:
        x = _x(b, 8)
        lib.op_seconds(reset=True)
        for _ in range(3):
            lib.run(x)
        secs = lib.op_seconds()
        ops = b.ops()
        assert secs.shape == (len(ops),) and lib.op_seconds(reset=False).sum() == 0.0
        timed = [s for s, op in zip(secs, ops, strict=True) if op["kind"] != "flatten"]
        assert all(s > 0 for s in timed)
