"""Whole-network implementations timed side by side: ours, torch eager, torch frozen, ORT.

Each binds the same pruned model (weights masked in place, no hooks) and one input and
offers ``call()`` (one inference, what is timed) and ``output()`` (for verification), as
:class:`codegen.timing.Implementation` asks.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import nn

from benchmarks.kernels.baselines import ort_session
from codegen.network import NetworkLibrary
from codegen.timing import Implementation


class Ours(Implementation):
    """The whole-network library (``libpattune_model.so``) through ctypes."""

    name = "ours"

    def __init__(self, lib: NetworkLibrary, x: np.ndarray) -> None:
        self.lib = lib
        self._x = np.ascontiguousarray(x, dtype=np.float32)
        self._y = np.empty(lib.output_shape, np.float32)

    def call(self) -> None:
        self.lib.run_into(self._x, self._y)

    def output(self) -> np.ndarray:
        return self.lib.run(self._x)


class TorchEager(Implementation):
    """The pruned model in torch eager mode (no gradients)."""

    name = "torch_eager"

    def __init__(self, model: nn.Module, x: np.ndarray) -> None:
        self._model = model.eval()
        self._x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def call(self) -> None:
        with torch.no_grad():
            self._model(self._x)

    def output(self) -> np.ndarray:
        with torch.no_grad():
            return self._model(self._x).numpy()


class TorchFrozen(TorchEager):
    """The pruned model traced and frozen by TorchScript (BatchNorm folded by freeze)."""

    name = "torch_frozen"

    def __init__(self, model: nn.Module, x: np.ndarray) -> None:
        super().__init__(model, x)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model.eval(), (self._x,), check_trace=False)
            self._model = torch.jit.freeze(traced.eval())


class Ort(Implementation):
    """ONNX Runtime (CPU, all graph optimisations) on the pruned model exported by torch."""

    name = "ort"

    def __init__(self, model: nn.Module, x: np.ndarray, threads: int) -> None:
        buf = io.BytesIO()
        tx = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (tx,), buf,  # type: ignore[arg-type]
                              dynamo=False, opset_version=17,
                              input_names=["X"], output_names=["Y"])
        self._sess = ort_session(buf.getvalue(), threads)
        self._feed = {"X": tx.numpy()}

    def call(self) -> None:
        self._sess.run(None, self._feed)

    def output(self) -> np.ndarray:
        return np.asarray(self._sess.run(None, self._feed)[0])


__all__ = ["Ort", "Ours", "TorchEager", "TorchFrozen"]
