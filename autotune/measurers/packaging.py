"""The one way a built kernel becomes something a device runs: an artifact and a job.

A kernel executable (``codegen``'s ``PT_MAIN`` build) reads ``INPUT WEIGHTS
WARMUP REPEATS``, times itself and prints one JSON line with ``times_s`` and
``checksum``. :class:`LayerInputs` makes each layer's seeded input file and
torch's reference output once; :func:`kernel_job` packages executable, weights
and input as a :class:`device_farm.Artifact` whose checksum the device verifies
on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codegen import random_input, reference_output
from device_farm import Artifact, ArtifactFile, MeasureJob, Verify
from search_spaces.layers import PrunedLayer


@dataclass(frozen=True)
class LayerInput:
    """One layer's input (array and file) and torch's reference output for it."""

    path: Path
    x: np.ndarray
    reference: np.ndarray


class LayerInputs:
    """Seeded inputs and reference outputs per layer, made once, files under ``work_dir``.

    Not thread safe (one per search loop).
    """

    def __init__(self, work_dir: str | Path, *, seed: int = 0) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self._cache: dict[str, LayerInput] = {}

    def of(self, layer: PrunedLayer) -> LayerInput:
        """The layer's input and reference (the file is written on first use)."""
        h = layer.weights_hash
        if h not in self._cache:
            x = random_input(layer, seed=self.seed)
            ref = reference_output(layer, x)
            path = self.work_dir / f"input-{h}.bin"
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                np.ascontiguousarray(x, dtype="<f4").tofile(tmp)
                tmp.replace(path)
            self._cache[h] = LayerInput(path, x, ref)
        return self._cache[h]


def checksum_tolerance(reference: np.ndarray) -> float:
    """Absolute tolerance on the output checksum (the sum of every output value).

    A wrong kernel is off by O(max|ref|) on many outputs; float reordering is off
    by ~1e-7 relative per output, so ``sqrt(N) * 1e-4 * max|ref|`` separates them.
    """
    return 1e-4 * float(np.abs(reference).max() or 1.0) * math.sqrt(reference.size)


def kernel_job(
    job_id: str, executable: str | Path, weights: str | Path, data: LayerInput, *,
    timeout_s: float,
) -> MeasureJob:
    """A device job that runs one kernel executable on the layer's input and checks its output."""
    artifact = Artifact(
        files=(
            ArtifactFile.from_path(str(executable), name="kernel", executable=True),
            ArtifactFile.from_path(str(weights), name="weights.bin"),
            ArtifactFile.from_path(str(data.path), name="input.bin"),
        ),
        argv=("kernel", "{dir}/input.bin", "{dir}/weights.bin", "{warmup}", "{repeats}"),
        verify=Verify(
            checksum=float(data.reference.astype(np.float64).sum()),
            rtol=0.0,
            atol=checksum_tolerance(data.reference),
        ),
    )
    return MeasureJob(job_id=job_id, artifact=artifact, timeout_s=timeout_s)
