"""Run a built network: the shared library in this process (ctypes), or ``run_model``.

:class:`NetworkLibrary` loads ``libpattune_model.so`` and runs numpy arrays through the
C API of ``pattune_model.h``; one object is one ``pt_model`` (several may coexist, of
one library or of several, and run from different threads). :func:`run_network_executable`
runs the ``run_model`` program (natively or under the target's ``run_prefix``, e.g.
qemu-aarch64), as a device of the farm does.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from codegen.network.graph import NetworkError
from codegen.network.templates import check_prefix
from codegen.network.weights import WeightsError, WeightsStatus
from codegen.runtime import ExecutableRun, time_calls
from codegen.target import Target

_MAX_DIMS = 4
_ERRLEN = 512


class NetworkLibrary:
    """One model of a network's shared library, weights bound.

    Args:
        library: Path of ``libpattune_model.so``.
        weights: The weights file's bytes (``*_create_from_memory``) or its path
            (``*_create_from_file``).
        prefix: The API prefix the network was generated with.
        threads: Threads to run with.

    Raises:
        WeightsError: The library refuses the weights; ``code`` is the C API's status.
        OSError: The library cannot be loaded.
    """

    def __init__(self, library: str | Path, weights: bytes | str | Path, *, prefix: str = "pt",
                 threads: int = 1) -> None:
        p = check_prefix(prefix)
        self._lib = ctypes.CDLL(str(Path(library).resolve()))
        self._fn = {name: getattr(self._lib, f"{p}_model_{name}") for name in (
            "create_from_file", "create_from_memory", "input_shape", "output_shape", "run",
            "set_threads", "op_seconds", "last_error", "destroy")}
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        sig = {
            "create_from_file": ([cp, ctypes.POINTER(vp), cp, ctypes.c_size_t], ctypes.c_int),
            "create_from_memory": ([cp, ctypes.c_size_t, ctypes.POINTER(vp), cp, ctypes.c_size_t],
                                   ctypes.c_int),
            "input_shape": ([vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_longlong)],
                            ctypes.c_int),
            "output_shape": ([vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_longlong)],
                             ctypes.c_int),
            "run": ([vp, vp, vp], ctypes.c_int),
            "set_threads": ([vp, ctypes.c_int], ctypes.c_int),
            "op_seconds": ([vp, ctypes.POINTER(ctypes.c_double), ctypes.c_int, ctypes.c_int],
                           ctypes.c_int),
            "last_error": ([vp], cp),
            "destroy": ([vp], None),
        }
        for name, (args, res) in sig.items():
            self._fn[name].argtypes = args
            self._fn[name].restype = res
        handle, err = vp(), ctypes.create_string_buffer(_ERRLEN)
        if isinstance(weights, bytes):
            rc = self._fn["create_from_memory"](weights, len(weights), ctypes.byref(handle), err,
                                                _ERRLEN)
        else:
            rc = self._fn["create_from_file"](str(weights).encode(), ctypes.byref(handle), err,
                                              _ERRLEN)
        if rc:
            raise WeightsError(WeightsStatus(rc), f"network library {Path(library).name}: "
                               f"{err.value.decode(errors='replace')}")
        self._model: int | None = handle.value
        self.input_shape = self._shape("input_shape")
        self.output_shape = self._shape("output_shape")
        self._threads = 1
        self.threads = threads

    def _handle(self) -> int:
        if self._model is None:
            raise NetworkError("network: the model is closed")
        return self._model

    def _shape(self, which: str) -> tuple[int, ...]:
        ndim, dims = ctypes.c_int(), (ctypes.c_longlong * _MAX_DIMS)()
        self._fn[which](self._handle(), ctypes.byref(ndim), dims)
        return tuple(int(dims[i]) for i in range(ndim.value))

    def _error(self, what: str, rc: int) -> NetworkError:
        msg = self._fn["last_error"](self._handle()).decode(errors="replace")
        return NetworkError(f"network: {what} failed (code {rc}): {msg}")

    @property
    def threads(self) -> int:
        """Threads the model runs with."""
        return self._threads

    @threads.setter
    def threads(self, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"threads must be an int >= 1; got {n!r}")
        rc = self._fn["set_threads"](self._handle(), n)
        if rc:
            raise self._error("set_threads", rc)
        self._threads = n

    def run(self, x: np.ndarray) -> np.ndarray:
        """The network's output for ``x`` (:attr:`input_shape`, float32): a new array.

        Raises:
            ValueError: ``x`` has another shape.
            NetworkError: The run failed (a pattern kernel's error).
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ValueError(f"input must have shape {self.input_shape}; got {x.shape}")
        out = np.empty(self.output_shape, np.float32)
        self.run_into(x, out)
        return out

    def run_into(self, x: np.ndarray, out: np.ndarray) -> None:
        """Run into a preallocated float32 C-contiguous ``out`` (timing loops; sizes unchecked)."""
        rc = self._fn["run"](self._handle(), x.ctypes.data, out.ctypes.data)
        if rc:
            raise self._error("run", rc)

    def op_seconds(self, *, reset: bool = True) -> np.ndarray:
        """Seconds spent in each op (``model.json``'s order) summed over the runs since the
        last reset; ``reset`` starts the sums again."""
        n = self._fn["op_seconds"](self._handle(), None, 0, 0)
        out = (ctypes.c_double * max(n, 1))()
        self._fn["op_seconds"](self._handle(), out, n, int(reset))
        return np.array(out[:n], dtype=np.float64)

    def time(self, x: np.ndarray, *, warmup: int = 1, repeats: int = 5) -> list[float]:
        """Seconds per call of ``repeats`` calls after ``warmup`` untimed ones."""
        return time_calls(self.run_into, x, np.empty(self.output_shape, np.float32),
                          warmup=warmup, repeats=repeats)

    def close(self) -> None:
        """Free the model (idempotent); the library stays loaded."""
        if self._model is not None:
            self._fn["destroy"](self._model)
            self._model = None

    def __enter__(self) -> NetworkLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn down ctypes
            pass


def run_network_executable(run_model: str | Path, weights: str | Path, x: np.ndarray,
                           output_shape: tuple[int, ...], target: Target, *, warmup: int = 1,
                           repeats: int = 3, threads: int = 1,
                           timeout_s: float = 600.0) -> ExecutableRun:
    """Run ``run_model`` on ``x`` (with the target's ``run_prefix``); times and output.

    A failure is a result whose ``error`` starts with ``run:`` (exit code and the program's
    last stderr line), never an exception.
    """
    with tempfile.TemporaryDirectory(prefix="pattune-network-") as tmp:
        inp, outp = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
        np.ascontiguousarray(x, dtype="<f4").tofile(inp)
        cmd = [*target.run_prefix, str(run_model), str(inp), str(weights), str(warmup),
               str(repeats), str(outp), str(threads)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  check=False)
        except subprocess.TimeoutExpired:
            return ExecutableRun((), 0.0, None, f"run: timeout after {timeout_s:g} s")
        if proc.returncode != 0:
            msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            return ExecutableRun((), 0.0, None, f"run: exit code {proc.returncode}: {msg}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        if data.get("nonfinite"):
            return ExecutableRun((), 0.0, None, f"run: the output holds {data['nonfinite']} "
                                 "NaN or infinite value(s)")
        out = np.fromfile(outp, dtype="<f4").reshape(output_shape)
        return ExecutableRun(tuple(data["times_s"]), float(data["checksum"]), out)


__all__ = ["NetworkLibrary", "run_network_executable"]
