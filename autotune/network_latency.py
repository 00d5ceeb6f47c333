"""End-to-end latency: the whole pruned network as one library, timed on the device type.

A trial's kernels are tuned layer by layer, but the number a user is told is the
whole network: every pattern layer as its tuned kernel (fused epilogue), every other op
from the network runtime (:mod:`codegen.network`), one arena, one weights file.
:class:`NetworkTimer` builds that for the session's target, verifies it against torch
here (in process where the target loads here, else ``run_model`` under the target's
``run_prefix``), and times ``run_model`` on a device of the type through the farm, as
every kernel measurement is timed: the device checks the output checksum on every run.

:func:`network_job` is the one way a built network becomes a farm job; the export writes
the same job to ``model/measure_jobs.jsonl`` for ``pattune measure``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import nn

from autotune.measurers.packaging import checksum_tolerance
from codegen.config import KernelConfig
from codegen.network import (
    PRODUCTS,
    NetworkBuild,
    NetworkCompiler,
    build_network,
    reference_output,
    verify_network,
)
from codegen.target import Target
from device_farm import Artifact, ArtifactFile, MeasureJob, Measurement, Verify
from pattune_common import PattuneError, Record
from search_spaces.layers import PrunedLayer
from search_spaces.masking import attach_masks
from search_spaces.pruning import PruningPlan

PatternLayers = Mapping[str, tuple[PrunedLayer, KernelConfig | None]]


class Runner(Protocol):
    """What runs jobs: a :class:`device_farm.Farm` (same order and length)."""

    def run(self, jobs: Sequence[MeasureJob]) -> list[Measurement]: ...


@dataclass(frozen=True)
class NetworkLatency(Record):
    """The whole network timed on a device, or why not: a value or an error, never both.

    Attributes:
        ms: Median milliseconds per inference (None on error).
        cv: Spread of the timed runs (coefficient of variation), when measured.
        device: The device that ran it.
        threads: Threads of the network's dense ops (``run_model``'s argument).
        arena_bytes: The activation arena.
        weights_bytes: The weights file.
        max_rel_err: ``max |out - ref| / max |ref|`` against torch here.
        error: ``"network: ..."``, ``"verify: ..."`` or the device's error, else "".
    """

    ms: float | None = None
    cv: float | None = None
    device: str = ""
    threads: int = 1
    arena_bytes: int = 0
    weights_bytes: int = 0
    max_rel_err: float | None = None
    error: str = ""

    schema = "network_latency"

    def __post_init__(self) -> None:
        if (self.ms is None) == (not self.error):
            raise ValueError("NetworkLatency holds either ms or an error, never both")


def pruned_copy(model: nn.Module, plan: PruningPlan) -> nn.Module:
    """A copy of ``model`` with ``plan``'s masks applied (the one-shot pruned model), eval mode."""
    pruned = copy.deepcopy(model)
    attach_masks(pruned, plan.masks())
    return pruned.eval()


def write_input(shape: tuple[int, ...], path: str | Path, *, seed: int = 0) -> np.ndarray:
    """A seeded standard-normal input of ``shape`` written as little-endian float32."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    np.ascontiguousarray(x, "<f4").tofile(tmp)
    tmp.replace(path)
    return x


def network_job(job_id: str, build: NetworkBuild, input_path: str | Path,
                reference: np.ndarray, *, threads: int = 1,
                timeout_s: float = 300.0) -> MeasureJob:
    """A farm job running the network's ``run_model`` on ``input_path``, checksum verified.

    The command is ``run_model INPUT WEIGHTS WARMUP REPEATS - THREADS`` (no output file).
    """
    artifact = Artifact(
        files=(
            ArtifactFile.from_path(build.run_model, name="run_model", executable=True),
            ArtifactFile.from_path(build.weights, name="weights.bin"),
            ArtifactFile.from_path(str(input_path), name="input.bin"),
        ),
        argv=("run_model", "{dir}/input.bin", "{dir}/weights.bin", "{warmup}", "{repeats}",
              "-", str(threads)),
        verify=Verify(checksum=float(reference.astype(np.float64).sum()), rtol=0.0,
                      atol=checksum_tolerance(reference)),
    )
    return MeasureJob(job_id=job_id, artifact=artifact, timeout_s=timeout_s)


def write_jobs_file(path: str | Path, jobs: Sequence[MeasureJob]) -> Path:
    """Write ``jobs`` as a ``pattune measure`` jobs file, file paths relative to it."""
    p = Path(path)
    lines = []
    for job in jobs:
        d = job.to_dict()
        for f in d["artifact"]["files"]:
            f["local_path"] = os.path.relpath(f["local_path"], p.parent.resolve())
        lines.append(json.dumps(d, sort_keys=True))
    p.write_text("\n".join(lines) + "\n")
    return p


class NetworkTimer:
    """Builds, verifies and times whole networks of one target on one farm.

    Args:
        target: What the networks are built for.
        runner: Runs the timing jobs (the session's farm).
        work_dir: Where the builds and input files go.
        threads: Threads of the dense ops on the device.
        compiler: The network compiler (default: one with objects cached by content).
        timeout_s: Seconds one run of ``run_model`` may take on the device.
    """

    def __init__(self, *, target: Target, runner: Runner, work_dir: str | Path,
                 threads: int = 1, compiler: NetworkCompiler | None = None,
                 timeout_s: float = 300.0) -> None:
        self.target = target
        self.runner = runner
        self.work_dir = Path(work_dir)
        self.threads = threads
        self.compiler = compiler or NetworkCompiler()
        self.timeout_s = timeout_s

    def build(self, model: nn.Module, input_shape: tuple[int, ...], layers: PatternLayers,
              out_dir: str | Path) -> NetworkBuild:
        """Build the network: static and shared library and ``run_model``.

        Raises:
            UnsupportedOpError, NetworkError, NetworkBuildError: see
                :func:`codegen.network.build_network`.
        """
        return build_network(model, input_shape, layers, self.target, out_dir,
                             products=PRODUCTS, compiler=self.compiler)

    def time(self, build: NetworkBuild, model: nn.Module, *, job_id: str) -> NetworkLatency:
        """Verify ``build`` against ``model`` here, then time it on a device of the farm.

        A target this machine cannot run (no ``run_prefix`` such as qemu) is verified by
        the device alone: the output checksum it checks on every run.
        """
        sizes: dict[str, Any] = {"arena_bytes": build.arena_bytes,
                                 "weights_bytes": build.weights_bytes, "threads": self.threads}
        x_path = Path(build.out_dir) / "input.bin"
        x = write_input(build.input_shape, x_path)
        rel = None
        if self.target.runs_here:  # else the device's checksum check is the verification
            ver = verify_network(build, model, x=x, threads=self.threads)
            if not ver.ok:
                return NetworkLatency(error=ver.error or "verify: failed", **sizes)
            rel = ver.max_rel_error
        job = network_job(job_id, build, x_path, reference_output(model, x),
                          threads=self.threads, timeout_s=self.timeout_s)
        [m] = self.runner.run([job])
        if m.status.has_value() and m.median_s is not None and np.isfinite(m.median_s):
            return NetworkLatency(ms=m.median_s * 1e3, cv=m.cv, device=m.device,
                                  max_rel_err=rel, **sizes)
        return NetworkLatency(error=m.error or "device: unknown failure", device=m.device,
                              max_rel_err=rel, **sizes)

    def measure(self, model: nn.Module, input_shape: tuple[int, ...], layers: PatternLayers,
                name: str) -> NetworkLatency:
        """Build (under ``work_dir/name``), verify and time; a failure is a result."""
        try:
            build = self.build(model, input_shape, layers, self.work_dir / name)
        except PattuneError as exc:
            return NetworkLatency(error=str(exc), threads=self.threads)
        return self.time(build, model, job_id=name)


__all__ = ["NetworkLatency", "NetworkTimer", "network_job", "pruned_copy", "write_input",
           "write_jobs_file"]
