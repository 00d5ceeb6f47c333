"""Run built kernels: in-process through ctypes, or the standalone executable.

:class:`KernelLibrary` is for timing next to torch/ONNX Runtime in one process;
:func:`run_executable` is what a device runs (here natively or under the
target's ``run_prefix``, e.g. qemu-aarch64).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from codegen.target import Target
from pattune_common import PattuneError
from search_spaces.layers import LayerSpec, output_shape


def time_calls(run_into: Callable[[np.ndarray, np.ndarray], None], x: np.ndarray,
               out: np.ndarray, *, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of ``run_into(x, out)``: ``repeats`` calls after ``warmup`` untimed."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    for _ in range(warmup):
        run_into(x, out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_into(x, out)
        times.append(time.perf_counter() - t0)
    return times


class KernelLibrary:
    """A generated kernel loaded with ctypes, weights bound.

    Args:
        library: Path of the shared library.
        weights: The weight blob (bytes) or a path to it.
        spec: The layer's shape (sizes the output).
        maxpool: The kernel fuses a 2x2/stride-2 max-pool (``PrunedLayer.maxpool``):
            its output is the pooled shape.

    Raises:
        PattuneError: The library rejects the weights (``pt_init`` non-zero).
    """

    _loaded: ClassVar[set[str]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, library: str | Path, weights: bytes | str | Path, spec: LayerSpec, *,
                 maxpool: bool = False) -> None:
        self.spec = spec
        self.output_shape = output_shape(spec, maxpool=maxpool)
        self._lib = ctypes.CDLL(self._private_copy(Path(library)))
        self._lib.pt_init.argtypes = [ctypes.c_char_p, ctypes.c_longlong]
        self._lib.pt_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        blob = weights if isinstance(weights, bytes) else Path(weights).read_bytes()
        rc = self._lib.pt_init(blob, len(blob))
        if rc:
            raise PattuneError(f"kernel {library}: pt_init rejected the weights (code {rc})")
        self._out = np.empty(self.output_shape, dtype=np.float32)

    @classmethod
    def _private_copy(cls, library: Path) -> str:
        """The path to load: ``library`` itself the first time, else a private copy.

        dlopen returns the same handle for the same path, and the single-layer interface
        (``pt_init``/``pt_run``) keeps its weights in one static context per loaded
        library, so a second KernelLibrary on one path would overwrite the first one's
        weights. (The prefixed ``P_create`` contexts have no such limit.)
        """
        key = str(library.resolve())
        with cls._lock:
            if key not in cls._loaded:
                cls._loaded.add(key)
                return key
        fd, tmp = tempfile.mkstemp(prefix="pattune-kernel-", suffix=".so")
        os.close(fd)
        shutil.copyfile(key, tmp)
        return tmp

    def run(self, x: np.ndarray) -> np.ndarray:
        """Compute the layer on ``x`` (1, cin, h, w) float32; a new array of :attr:`output_shape`."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        s = self.spec
        if x.shape != (1, s.cin, s.h, s.w):
            raise ValueError(f"input must have shape {(1, s.cin, s.h, s.w)}; got {x.shape}")
        out = np.empty_like(self._out)
        self._lib.pt_run(x.ctypes.data, out.ctypes.data)
        return out

    def run_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Compute into a preallocated output (timing loops); no checks."""
        self._lib.pt_run(x.ctypes.data, out.ctypes.data)

    def time(self, x: np.ndarray, *, warmup: int = 1, repeats: int = 5) -> list[float]:
        """Per-call seconds of ``repeats`` calls after ``warmup`` calls."""
        return time_calls(self.run_into, x, np.empty_like(self._out), warmup=warmup,
                          repeats=repeats)

    def close(self) -> None:
        """Free the kernel's buffers (the library stays mapped)."""
        self._lib.pt_free()


@dataclass(frozen=True)
class ExecutableRun:
    """What the standalone executable reported.

    Attributes:
        times_s: Per-repeat seconds.
        checksum: Sum of the outputs.
        output: The dumped output (``output_shape(spec, maxpool=...)``), or None.
        error: ``"run: ..."`` on failure, else "".
    """

    times_s: tuple[float, ...]
    checksum: float
    output: np.ndarray | None
    error: str = ""


def run_executable(executable: str | Path, weights: str | Path, x: np.ndarray, spec: LayerSpec,
                   target: Target, *, warmup: int = 1, repeats: int = 3,
                   timeout_s: float = 300.0, maxpool: bool = False) -> ExecutableRun:
    """Run the standalone executable on ``x`` and read back times and output.

    ``maxpool``: the kernel fuses a 2x2 max-pool, so it dumps the pooled shape.
    """
    with tempfile.TemporaryDirectory(prefix="pattune-run-") as tmp:
        inp, outp = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
        np.ascontiguousarray(x, dtype="<f4").tofile(inp)
        cmd = [*target.run_prefix, str(executable), str(inp), str(weights), str(warmup),
               str(repeats), str(outp)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            return ExecutableRun((), 0.0, None, f"run: timeout after {timeout_s:g} s")
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            return ExecutableRun((), 0.0, None, f"run: exit code {proc.returncode}: {msg}")
        return _read_run(proc.stdout, outp, output_shape(spec, maxpool=maxpool))


def _read_run(stdout: str, outp: Path, shape: tuple[int, ...]) -> ExecutableRun:
    """The executable's report and output, or a ``run: ...`` error saying what is wrong."""
    lines = stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return ExecutableRun((), 0.0, None, "run: no JSON report on the last line of stdout")
    if data.get("nonfinite"):
        return ExecutableRun((), 0.0, None, f"run: the output holds {data['nonfinite']} NaN "
                             "or infinite value(s)")
    times, checksum = data.get("times_s"), data.get("checksum")
    if not isinstance(times, list) or not all(_finite(t) for t in times) or not (
            isinstance(checksum, int | float) and _finite(checksum)):
        return ExecutableRun((), 0.0, None, "run: the report's times_s and checksum must be "
                             f"finite numbers; got {lines[-1][:200]}")
    try:
        out = np.fromfile(outp, dtype="<f4").reshape(shape)
    except (OSError, ValueError) as exc:
        return ExecutableRun((), 0.0, None, f"run: cannot read the dumped output: {exc}")
    return ExecutableRun(tuple(float(t) for t in times), float(checksum), out)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and (
        math.isfinite(value))
