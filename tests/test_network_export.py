"""``pattune tune`` times whole networks; ``pattune export`` writes ``model/`` (issue 12).

Real parts only: the tiny model tuned on this machine and on a device type of one sshd
server on loopback, gcc and the aarch64 cross compiler running the exported Makefile,
qemu-aarch64 running the cross-built ``run_model``, ``pattune measure`` on the exported
jobs file, the exported ctypes loader in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from benchmarks.harness.sshd import SshdFarm
from tests.tune.support import pattune, tune_args

# Each test tunes a study of its own; one worker per test keeps the two cores busy.
MODEL_FILES = {"Makefile", "pattune_model.h", "model.c", "run_model.c", "pt_network_ops.h",
               "pt_network_runtime.h", "exports.map", "libpattune_model.a",
               "libpattune_model.so", "run_model", "weights.bin", "model.json", "input.bin",
               "measure_jobs.jsonl", "pattune_model.py"}


def _trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def _load_loader(folder: Path) -> object:
    spec = importlib.util.spec_from_file_location("exported_pattune_model",
                                                  folder / "pattune_model.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _make(src: Path, work: Path, *extra: str) -> None:
    work.mkdir()
    for f in src.iterdir():
        if f.suffix in (".c", ".h", ".map", ".bin") or f.name == "Makefile":
            shutil.copyfile(f, work / f.name)
    proc = subprocess.run(["make", "-j2", *extra], cwd=work, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all((work / n).is_file() for n in ("libpattune_model.a", "libpattune_model.so",
                                              "run_model"))


def _checksum(prefix: list[str], folder: Path) -> float:
    proc = subprocess.run([*prefix, str(folder / "run_model"), str(folder / "input.bin"),
                           str(folder / "weights.bin"), "0", "1"], capture_output=True,
                          text=True, timeout=300, check=True)
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["checksum"])


@pytest.mark.xdist_group("network-export-local")
def test_tune_and_export_the_whole_network_on_this_machine(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    r = pattune(*tune_args(tmp_path, storage=storage, model="tiny_bn", trials=2))
    assert r.returncode == 0, r.stderr
    # Every trial's latency is its whole network timed end to end on the device type.
    for t in _trials(storage, "e2e"):
        assert t.user_attrs["pattune:latency_source"] == "network", t.user_attrs
        assert t.values[0] == t.user_attrs["pattune:network_ms"] > 0

    out = tmp_path / "export"
    ex = pattune("export", "--storage", storage, "--study", "e2e", "--out", str(out))
    assert ex.returncode == 0, ex.stderr
    cfg = json.loads((out / "config.json").read_text())
    net = cfg["network"]
    assert cfg["latency_source"] == "network" and cfg["total_latency_ms"] == net["end_to_end_ms"]
    assert net["end_to_end_ms"] > 0 and net["end_to_end_default_ms"] > 0
    assert net["torch_ms"] > 0 and net["torch_method"] in ("eager", "torchscript")
    assert net["max_rel_err"] <= 1e-4 and net["arena_bytes"] > 0 and net["device"] == "local"
    report = (out / "report" / "report.md").read_text()
    assert "whole network end to end" in report and "default configs at the same" in report

    model_dir = out / "model"
    files = {f.name for f in model_dir.iterdir()}
    assert MODEL_FILES <= files and {"pt_l0.c", "pt_l1.c", "pt_l2.c"} <= files
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["input_shape"] == [1, 1, 12, 12] and meta["output_shape"] == [1, 4]
    assert [op["kind"] for op in meta["ops"]].count("conv2d") == 3
    tuned = {d["name"]: d["config"] for d in cfg["layers"]}
    assert {v["op"] and k: v["config"] for k, v in meta["pattern_layers"].items()} == tuned
    assert all(v["spec"]["cin"] > 0 for v in meta["pattern_layers"].values())

    # The loader runs numpy arrays through the library; it equals the exported torch model.
    from tests.tune.tiny import tiny_bn

    model = tiny_bn()
    model.load_state_dict(torch.load(out / "pruned.pt", weights_only=True))
    model.eval()
    x = np.random.default_rng(3).standard_normal((1, 1, 12, 12)).astype(np.float32)
    loader = _load_loader(model_dir)
    with loader.Model(model_dir) as m:  # type: ignore[attr-defined]
        y = m.run(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()

    # The jobs file is what pattune measure times on a device of the type.
    res = pattune("measure", "--jobs", str(model_dir / "measure_jobs.jsonl"), "--out",
                  str(tmp_path / "res.jsonl"), "--min-total-s", "0.01", "--max-cv", "1")
    assert res.returncode == 0, res.stderr
    [line] = (tmp_path / "res.jsonl").read_text().splitlines()
    # A tiny network on a busy machine may be "noisy": timed, with a spread above the bound.
    assert json.loads(line)["status"] in ("ok", "noisy") and json.loads(line)["median_s"] > 0
    job = json.loads((model_dir / "measure_jobs.jsonl").read_text())
    expect = job["artifact"]["verify"]["checksum"]
    tol = job["artifact"]["verify"]["atol"]

    # The Makefile builds the folder natively and with the aarch64 cross compiler.
    _make(model_dir, tmp_path / "native", "CC=gcc", "CFLAGS=-O2 -std=gnu11")
    assert abs(_checksum([], tmp_path / "native") - expect) <= tol
    _make(model_dir, tmp_path / "arm", "CC=aarch64-linux-gnu-gcc",
          "CFLAGS=-O2 -std=gnu11 -march=armv8-a", "LDFLAGS=-static")
    assert abs(_checksum(["qemu-aarch64"], tmp_path / "arm") - expect) <= tol


def _inventory(path: Path, farm: SshdFarm) -> str:
    s = farm.servers[0]
    path.write_text(
        f'[defaults]\nknown_hosts = "{farm.known_hosts}"\nidentity_file = "{farm.client_key}"\n'
        f'user = "{farm.user}"\nssh_config = "{os.devnull}"\n'
        f'[[device]]\nname = "{s.name}"\nhost = "127.0.0.1"\nport = {s.port}\n'
        f'type = "loop"\narch = "x86_64"\nwork_dir = "{s.work_dir}"\n')
    return str(path)


@pytest.mark.xdist_group("network-export-sshd")
def test_a_remote_device_type_gets_end_to_end_latencies(tmp_path: Path) -> None:
    farm = SshdFarm(str(tmp_path / "sshd"), 1)
    try:
        inv = _inventory(tmp_path / "inv.toml", farm)
        storage = f"sqlite:///{tmp_path / 'r.db'}"
        args = tune_args(tmp_path, storage=storage, study="remote", trials=2)
        r = pattune(*args, "--device-type", "loop", "--inventory", inv)
        assert r.returncode == 0, r.stderr
        for t in _trials(storage, "remote"):
            # No torch timing for a remote type: the network is the whole latency.
            assert t.user_attrs["pattune:untouched_ms"] is None
            assert t.user_attrs["pattune:latency_source"] == "network"
            assert t.values[0] == t.user_attrs["pattune:network_ms"] > 0
        out = tmp_path / "export"
        ex = pattune("export", "--storage", storage, "--study", "remote", "--out", str(out))
        assert ex.returncode == 0, ex.stderr
    finally:
        farm.stop()
    net = json.loads((out / "config.json").read_text())["network"]
    assert net["device"] == "dev0" and net["end_to_end_ms"] > 0
    assert net["end_to_end_default_ms"] > 0 and net["torch_ms"] is None
    assert "not timed (the device type is not this machine)" in (
        out / "report" / "report.md").read_text()


@pytest.mark.xdist_group("network-export-refused")
def test_an_op_the_runtime_cannot_run_is_refused_at_export(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    r = pattune(*tune_args(tmp_path, storage=storage, study="sig", trials=1, model="tiny_sigmoid"))
    assert r.returncode == 0, r.stderr
    # The tune goes on with the sum of the layers, and says why for the trial.
    [t] = _trials(storage, "sig")
    assert t.user_attrs["pattune:latency_source"] == "sum"
    assert "cannot run 'torch.nn.Sigmoid' (module act)" in t.user_attrs["pattune:network_error"]
    out = tmp_path / "export"
    msg = _one_line(pattune("export", "--storage", storage, "--study", "sig", "--out", str(out)))
    assert msg.startswith("pattune: error: network: cannot run 'torch.nn.Sigmoid' (module act)")
    assert not (out / "model").exists()


@pytest.mark.xdist_group("network-export-timer")
def test_the_timer_verifies_here_or_leaves_it_to_the_devices_checksum(tmp_path: Path) -> None:
    """A target this machine cannot run is checked by the device alone; a wrong network
    (weights of another model) fails there, by its checksum."""
    from dataclasses import replace

    from autotune.network_latency import NetworkTimer
    from codegen import host_target
    from device_farm import Farm, LocalDevice
    from device_farm.lease import LeaseStore
    from tests.network_support import model_case, prune

    model, shape = model_case("example")
    layers = prune(model, shape)
    farm = Farm([LocalDevice(work_dir=str(tmp_path / "dev"))],
                leases=LeaseStore(f"sqlite:///{tmp_path / 'farm.db'}"))
    here = NetworkTimer(target=host_target(), runner=farm, work_dir=tmp_path / "a")
    a = here.measure(model, shape, layers, "a")
    assert a.ms is not None and a.ms > 0 and a.max_rel_err is not None and a.max_rel_err < 1e-4
    # x86 code under a target that says aarch64 without a run_prefix: nothing runs it here.
    elsewhere = replace(host_target(), name="elsewhere", arch="aarch64")
    assert not elsewhere.runs_here
    there = NetworkTimer(target=elsewhere, runner=farm, work_dir=tmp_path / "b")
    b = there.measure(model, shape, layers, "b")
    assert b.ms is not None and b.max_rel_err is None and b.device == "local"
    build = there.build(model, shape, layers, tmp_path / "c")
    other, _ = model_case("example")  # same shapes, unpruned weights: another output
    torch.manual_seed(1)
    for p in other.parameters():
        p.data.normal_()
    c = there.time(build, other.eval(), job_id="c")
    assert c.ms is None and c.error.startswith("verify: checksum"), c.error


@pytest.mark.xdist_group("network-export-depthwise")
def test_a_depthwise_layer_is_not_searched_and_runs_as_the_depthwise_op(tmp_path: Path) -> None:
    """The network runs a depthwise layer as its depthwise op, so the tune measures only its
    default config while the other layers get their budget (3 here)."""
    storage = f"sqlite:///{tmp_path / 'd.db'}"
    r = pattune(*tune_args(tmp_path, storage=storage, study="dw", trials=1, model="tiny_dw"))
    assert r.returncode == 0, r.stderr
    [t] = _trials(storage, "dw")
    assert t.user_attrs["pattune:latency_source"] == "network"
    from autotune.records import RecordsDB
    from autotune.results import read_trial

    _, result = read_trial(RecordsDB(storage), "dw", t)
    measured = {la.name: la.configs_measured for la in result.layers}
    assert measured["2"] == 1 and measured["0"] > 1 and measured["4"] > 1, measured
