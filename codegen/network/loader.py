"""``pattune_model.py``: a standalone ctypes loader written beside an exported network.

It needs only Python and numpy (no pattune, no torch), so a user copies the ``model/``
folder anywhere and runs::

    from pattune_model import Model
    with Model("model") as m:          # the folder: model.json, libpattune_model.so, weights.bin
        y = m.run(x)                    # numpy float32 of m.input_shape -> m.output_shape

:class:`codegen.network.NetworkLibrary` is the same binding inside pattune.
"""

from __future__ import annotations

from pathlib import Path

LOADER_FILE = "pattune_model.py"

LOADER_PY = '''"""Load this folder's pattune network (libpattune_model.so) and run numpy arrays.

    from pattune_model import Model
    with Model("path/to/model", threads=1) as m:
        y = m.run(x)   # float32, shape m.input_shape -> m.output_shape

Needs only numpy. Errors raise ``ModelError`` with the library's message and code.
"""

import ctypes
import json
import os

import numpy as np

__all__ = ["Model", "ModelError"]


class ModelError(RuntimeError):
    """A failed call of the C API: ``code`` is its status (pattune_model.h's PT_ERR_*)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class Model:
    """One model of the network in ``folder`` (several may coexist and run in threads).

    Args:
        folder: The exported ``model/`` folder (default: this file's folder).
        weights: A weights file path or its bytes (default: the folder's weights file).
        threads: OpenMP threads of the dense ops.
    """

    def __init__(self, folder=None, *, weights=None, threads=1):
        folder = os.path.abspath(folder or os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(folder, "model.json")) as fh:
            meta = json.load(fh)
        p = meta["prefix"]
        self._lib = ctypes.CDLL(os.path.join(folder, "libpattune_model.so"))
        vp, cp, ip, lp = (ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int),
                          ctypes.POINTER(ctypes.c_longlong))
        sig = {"create_from_file": ([cp, ctypes.POINTER(vp), cp, ctypes.c_size_t], ctypes.c_int),
               "create_from_memory": ([cp, ctypes.c_size_t, ctypes.POINTER(vp), cp,
                                       ctypes.c_size_t], ctypes.c_int),
               "input_shape": ([vp, ip, lp], ctypes.c_int),
               "output_shape": ([vp, ip, lp], ctypes.c_int),
               "run": ([vp, vp, vp], ctypes.c_int), "set_threads": ([vp, ctypes.c_int], ctypes.c_int),
               "last_error": ([vp], cp), "destroy": ([vp], None)}
        self._fn = {}
        for name, (args, res) in sig.items():
            fn = getattr(self._lib, p + "_model_" + name)
            fn.argtypes, fn.restype = args, res
            self._fn[name] = fn
        handle, err = vp(), ctypes.create_string_buffer(512)
        if isinstance(weights, (bytes, bytearray)):
            rc = self._fn["create_from_memory"](bytes(weights), len(weights), ctypes.byref(handle),
                                                err, 512)
        else:
            path = weights or os.path.join(folder, meta["weights_file"])
            rc = self._fn["create_from_file"](os.fsencode(path), ctypes.byref(handle), err, 512)
        if rc:
            raise ModelError(err.value.decode(errors="replace"), rc)
        self._m = handle.value
        self.input_shape = self._shape("input_shape")
        self.output_shape = self._shape("output_shape")
        self.set_threads(threads)

    def _shape(self, which):
        n, dims = ctypes.c_int(), (ctypes.c_longlong * 8)()
        self._fn[which](self._m, ctypes.byref(n), dims)
        return tuple(int(dims[i]) for i in range(n.value))

    def _check(self, rc):
        if rc:
            raise ModelError(self._fn["last_error"](self._m).decode(errors="replace"), rc)

    def set_threads(self, n):
        """Threads of the next runs."""
        self._check(self._fn["set_threads"](self._m, int(n)))

    def run(self, x, out=None):
        """The output for ``x`` (converted to C-contiguous float32 of ``input_shape``)."""
        if self._m is None:
            raise ModelError("the model is closed", 1)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ValueError("input must have shape %s; got %s" % (self.input_shape, x.shape))
        if out is None:
            out = np.empty(self.output_shape, np.float32)
        elif out.shape != self.output_shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous float32 of shape %s" % (self.output_shape,))
        self._check(self._fn["run"](self._m, x.ctypes.data, out.ctypes.data))
        return out

    def close(self):
        """Free the model (idempotent)."""
        if getattr(self, "_m", None) is not None:
            self._fn["destroy"](self._m)
            self._m = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
'''


def write_loader(folder: str | Path) -> Path:
    """Write ``pattune_model.py`` into ``folder``; return its path."""
    path = Path(folder) / LOADER_FILE
    path.write_text(LOADER_PY)
    return path


__all__ = ["LOADER_FILE", "LOADER_PY", "write_loader"]
