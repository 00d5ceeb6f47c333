"""Baselines timed in the same process, on the same input and thread count.

Each baseline binds one layer and one input and offers ``call()`` (one timed
convolution) and ``output()`` (the result, for verification):

* :class:`TorchDense`: ``torch.nn.functional.conv2d`` on the masked weights (oneDNN);
* :class:`OrtDense`: ONNX Runtime on a one-Conv ONNX model;
* :class:`TorchCSR`: ``unfold`` + CSR sparse matmul at the same non-zeros;
* generated kernels (ours and the unstructured one) run via ctypes as
  :class:`codegen.timing.Generated`.

Each computes the layer's whole epilogue (bias, and ReLU where the layer fuses
one), as the generated kernel does, so the comparison is like for like.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from codegen.timing import Generated, Implementation, interleaved_medians
from search_spaces.layers import PrunedLayer, output_shape


def ort_session(model: bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session as every benchmark times it: ``threads`` intra-op
    threads, sequential, all graph optimisations, pool threads not spinning."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's pool threads otherwise keep spinning after a run (a 100 ms pause did not
    # stop them) and take the cores from whatever runs next: at 2 threads that
    # doubled torch's and our kernels' times in the interleaved timing.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

class TorchDense(Implementation):
    """torch's dense conv2d on the masked weights."""

    name = "torch"

    def __init__(self, layer: PrunedLayer, x: np.ndarray) -> None:
        import torch

        s = layer.spec
        self._torch = torch
        self._x = torch.from_numpy(np.ascontiguousarray(x))
        self._w = torch.from_numpy(np.array(layer.weights))
        self._b = None if layer.bias is None else torch.from_numpy(np.array(layer.bias))
        self._kw = {"stride": s.stride, "padding": s.padding, "groups": s.groups}
        self._relu = layer.relu
        self._pool = layer.maxpool

    def _run(self):  # type: ignore[no-untyped-def]
        y = self._torch.nn.functional.conv2d(self._x, self._w, self._b, **self._kw)
        y = self._torch.relu_(y) if self._relu else y
        return self._torch.nn.functional.max_pool2d(y, 2, 2) if self._pool else y

    def call(self) -> None:
        with self._torch.no_grad():
            self._run()

    def output(self) -> np.ndarray:
        with self._torch.no_grad():
            return self._run().numpy()


class OrtDense(Implementation):
    """ONNX Runtime's dense Conv (model built with onnx.helper, weights as initializers)."""

    name = "ort"

    def __init__(self, layer: PrunedLayer, x: np.ndarray, threads: int) -> None:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        s = layer.spec
        inits = [numpy_helper.from_array(np.array(layer.weights), "W")]
        inputs = ["X", "W"]
        if layer.bias is not None:
            inits.append(numpy_helper.from_array(np.array(layer.bias), "B"))
            inputs.append("B")
        chain = ["C"] + (["R"] if layer.relu else []) + (["P"] if layer.maxpool else [])
        chain[-1] = "Y"
        nodes = [helper.make_node("Conv", inputs, [chain[0]], kernel_shape=[s.kh, s.kw],
                                  strides=[s.stride] * 2, pads=[s.padding] * 4, group=s.groups)]
        if layer.relu:
            nodes.append(helper.make_node("Relu", [chain[0]], [chain[1]]))
        if layer.maxpool:
            nodes.append(helper.make_node("MaxPool", [chain[-2]], ["Y"], kernel_shape=[2, 2],
                                          strides=[2, 2]))
        graph = helper.make_graph(
            nodes, "conv",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, s.cin, s.h, s.w])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(layer.output_shape))],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = min(model.ir_version, 9)
        onnx.checker.check_model(model)
        self._sess = ort_session(model.SerializeToString(), threads)
        self._feed = {"X": np.ascontiguousarray(x, dtype=np.float32)}

    def call(self) -> None:
        self._sess.run(None, self._feed)

    def output(self) -> np.ndarray:
        return np.asarray(self._sess.run(None, self._feed)[0])


class TorchCSR(Implementation):
    """im2col (``unfold``) then CSR sparse x dense matmul, at the layer's non-zeros."""

    name = "torch_csr"

    def __init__(self, layer: PrunedLayer, x: np.ndarray) -> None:
        import torch

        s = layer.spec
        if s.groups != 1:
            raise ValueError("torch_csr baseline supports groups == 1 only")
        self._torch = torch
        self._x = torch.from_numpy(np.ascontiguousarray(x))
        with warnings.catch_warnings():  # "sparse CSR support is in beta": known, not news
            warnings.simplefilter("ignore", UserWarning)
            dense = torch.from_numpy(np.array(layer.weights).reshape(s.cout, -1))
            self._w = dense.to_sparse_csr()
        bias = np.zeros(s.cout, np.float32) if layer.bias is None else np.array(layer.bias)
        self._b = torch.from_numpy(bias).reshape(s.cout, 1)
        self._s = s
        self._relu = layer.relu
        self._pool = layer.maxpool

    def _run(self):  # type: ignore[no-untyped-def]
        s, torch = self._s, self._torch
        cols = torch.nn.functional.unfold(self._x, (s.kh, s.kw), padding=s.padding,
                                          stride=s.stride)[0]
        y = torch.addmm(self._b, self._w, cols)
        y = torch.relu_(y) if self._relu else y
        if self._pool:
            y = torch.nn.functional.max_pool2d(y.reshape(1, s.cout, s.out_h, s.out_w), 2, 2)
        return y

    def call(self) -> None:
        with self._torch.no_grad():
            self._run()

    def output(self) -> np.ndarray:
        s = self._s
        with self._torch.no_grad():
            y = self._run()
            return y.reshape(output_shape(s, maxpool=self._pool)).numpy()


__all__ = ["Generated", "Implementation", "OrtDense", "TorchCSR", "TorchDense", "interleaved_medians"]
