"""Artifacts: what a device runs, as files plus a command line plus an expected output.

``device_farm`` knows only :class:`Artifact` s, never layers or patterns: it
uploads :attr:`Artifact.files` (content-addressed by :attr:`Artifact.file_hashes`),
runs :meth:`Artifact.command` in the upload directory, parses the one JSON line
the executable prints (``times_s``, ``checksum``), and checks the dumped output
with :meth:`Artifact.check_output` before any time counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codegen._base import Builder, BuildInput, Product
from codegen.config import KernelConfig
from codegen.generator import generate
from codegen.target import Target
from codegen.verify import DEFAULT_TOLERANCE, Verification, random_input, reference_output, verify
from pattune_common import Record
from search_spaces.layers import PrunedLayer

EXECUTABLE, WEIGHTS, INPUT, REFERENCE = "kernel", "weights.bin", "input.bin", "reference.bin"


@dataclass(frozen=True)
class Artifact(Record):
    """One built kernel ready to measure, or the reason it is not.

    Attributes:
        name: Kernel name (layer, format, config hash).
        target: Target name the executable was built for.
        directory: Local directory holding the files below.
        files: File names (relative to ``directory``) to upload.
        file_hashes: sha256 of each file, same order (content addressing).
        output_shape: Shape of the float32 output the executable dumps.
        tolerance: Max relative error allowed against the reference.
        layer_signature: ``LayerSpec.signature()`` of the layer.
        weights_hash: ``PrunedLayer.weights_hash``.
        config: The KernelConfig as canonical JSON.
        error: ``"build: ..."`` when the kernel did not build, else "".
    """

    name: str
    target: str
    directory: str = ""
    files: tuple[str, ...] = ()
    file_hashes: tuple[str, ...] = ()
    output_shape: tuple[int, ...] = ()
    tolerance: float = DEFAULT_TOLERANCE
    layer_signature: str = ""
    weights_hash: str = ""
    config: str = ""
    error: str = ""

    schema = "artifact"

    def command(self, *, warmup: int, repeats: int, output: str = "output.bin") -> list[str]:
        """The command line, run in the directory the files were uploaded to."""
        return [f"./{EXECUTABLE}", INPUT, WEIGHTS, str(int(warmup)), str(int(repeats)), output]

    def check_output(self, data: bytes) -> Verification:
        """Verify a dumped output (raw little-endian float32) against the reference."""
        ref = np.fromfile(Path(self.directory) / REFERENCE, dtype="<f4").reshape(self.output_shape)
        got = np.frombuffer(data, dtype="<f4")
        if got.size != ref.size:
            return Verification(float("inf"),
                                f"verify: output has {got.size} values, expected {ref.size}")
        return verify(got.reshape(self.output_shape).astype(np.float32), ref,
                      tolerance=self.tolerance)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_artifacts(items: list[tuple[PrunedLayer, KernelConfig]], target: Target, *,
                   builder: Builder, out_dir: str | Path, seed: int = 0) -> list[Artifact]:
    """Generate, build and package kernels; same order and length as ``items``.

    Each artifact gets its own directory under ``out_dir`` with the executable,
    the weight blob, a seeded input and torch's reference output. A kernel that
    fails to build comes back with ``error`` set (no files).

    Raises:
        ConfigError: A config is invalid for its layer (misuse: validate first).
    """
    kernels = [generate(layer, cfg, target) for layer, cfg in items]
    results = builder.build([BuildInput(k, target, (Product.EXECUTABLE,)) for k in kernels])
    out: list[Artifact] = []
    for (layer, cfg), kernel, res in zip(items, kernels, results, strict=True):
        base = Artifact(name=kernel.name, target=target.name, config=cfg.to_json(),
                        layer_signature=layer.spec.signature(), weights_hash=layer.weights_hash)
        if not res.ok:
            out.append(dataclasses.replace(base, error=res.error))
            continue
        d = Path(out_dir) / f"{kernel.name}-{layer.weights_hash[:8]}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res.executable, d / EXECUTABLE)
        (d / EXECUTABLE).chmod(0o755)
        (d / WEIGHTS).write_bytes(kernel.weights)
        x = random_input(layer, seed=seed)
        x.astype("<f4").tofile(d / INPUT)
        ref = reference_output(layer, x)
        ref.astype("<f4").tofile(d / REFERENCE)
        files = (EXECUTABLE, WEIGHTS, INPUT)
        out.append(dataclasses.replace(
            base, directory=str(d), files=files, file_hashes=tuple(_sha(d / f) for f in files),
            output_shape=tuple(ref.shape)))
    return out
