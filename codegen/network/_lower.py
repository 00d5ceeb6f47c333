"""What one ``torch.fx`` node is, in the network runtime's terms (used by :mod:`.graph`).

:func:`classify` names a node's step (``conv``, ``bn``, ``relu``, ``maxpool``, ...)
or refuses it with :class:`UnsupportedOpError`, whose message names the op and the
module in one line. Nothing here decides fusion; that is the graph's job.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.fx.node import _get_qualified_name

from pattune_common import PattuneError

SUPPORTED = (
    "conv2d (any kernel, stride, padding, groups), batch_norm after a conv (folded), relu, "
    "relu6, max_pool2d, avg_pool2d, adaptive_avg_pool2d, add, flatten/view to (1, N), linear, "
    "dropout and identity (removed)"
)


class NetworkError(PattuneError):
    """A model or argument the network runtime cannot take; the message is one line."""


class UnsupportedOpError(NetworkError):
    """The model runs an op the network runtime has no C code for (never run in torch instead)."""


@dataclass(frozen=True)
class Step:
    """One node, classified.

    Attributes:
        kind: ``input``, ``output``, ``shape`` (integer bookkeeping such as ``x.size(0)``),
            ``alias`` (identity, eval dropout, contiguous), ``conv``, ``bn``, ``relu``,
            ``relu6``, ``maxpool``, ``avgpool``, ``adaptive``, ``mean``, ``linear``,
            ``add``, ``flatten``.
        module: The module the node belongs to (for messages and records).
        attrs: Kind-specific settings (pool sizes, adaptive output size).
    """

    kind: str
    module: str
    attrs: tuple[tuple[str, Any], ...] = ()

    def attr(self, key: str) -> Any:
        """One of ``attrs``."""
        return dict(self.attrs)[key]


def op_name(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    """How a message names the node's op: ``torch.sigmoid``, ``torch.nn.GELU``, ``Tensor.exp``."""
    if node.op == "call_module":
        cls = type(modules[str(node.target)])
        mod = cls.__module__
        return f"torch.nn.{cls.__name__}" if mod.startswith("torch.nn") else f"{mod}.{cls.__name__}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        name = _get_qualified_name(node.target)  # type: ignore[arg-type]
        return name.replace("_operator.", "operator.")
    return f"{node.op} {node.target}"


def module_of(node: torch.fx.Node) -> str:
    """The module a node sits in: its target for a module call, else the innermost module."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    return str(list(stack)[-1]) if stack else "<model>"


def refuse(node: torch.fx.Node, modules: dict[str, nn.Module], why: str = "") -> UnsupportedOpError:
    """The one-line refusal for ``node``."""
    reason = why or f"the network runtime runs only {SUPPORTED}"
    return UnsupportedOpError(
        f"network: cannot run {op_name(node, modules)!r} (module {module_of(node)}); {reason}; "
        "change the model or keep it in torch"
    )


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(x) for x in v)
    return (t[0], t[1]) if len(t) == 2 else (t[0], t[0])


def _square(node: torch.fx.Node, modules: dict[str, nn.Module], what: str, v: Any) -> int:
    a, b = _pair(v)
    if a != b:
        raise refuse(node, modules, f"{what} {(a, b)} is not square")
    return a


_SHAPE_FUNCS = {getattr, operator.getitem, operator.mul, operator.floordiv, operator.add,
                operator.sub}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_RELU_FUNCS = {torch.relu, torch.relu_, nn.functional.relu}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}


def _conv_step(node: torch.fx.Node, modules: dict[str, nn.Module], m: nn.Conv2d) -> Step:
    name = str(node.target)
    if isinstance(m.padding, str):
        raise refuse(node, modules, f"padding={m.padding!r}; give the padding as numbers")
    if m.padding_mode != "zeros":
        raise refuse(node, modules, f"padding_mode={m.padding_mode!r} (only 'zeros')")
    if _pair(m.dilation) != (1, 1):
        raise refuse(node, modules, f"dilation {m.dilation} (only 1)")
    _square(node, modules, "stride", m.stride)
    _square(node, modules, "padding", m.padding)
    return Step("conv", name)


def _pool_step(node: torch.fx.Node, modules: dict[str, nn.Module], m: nn.Module) -> Step:
    name = str(node.target)
    k = _square(node, modules, "kernel_size", m.kernel_size)  # type: ignore[arg-type]
    stride = _square(node, modules, "stride", m.stride or m.kernel_size)  # type: ignore[arg-type]
    pad = _square(node, modules, "padding", m.padding)  # type: ignore[arg-type]
    if m.ceil_mode:
        raise refuse(node, modules, "ceil_mode=True (only floor mode)")
    if isinstance(m, nn.MaxPool2d):
        if _pair(m.dilation) != (1, 1) or m.return_indices:  # type: ignore[arg-type]
            raise refuse(node, modules, "dilation or return_indices (neither is supported)")
        return Step("maxpool", name, (("k", k), ("stride", stride), ("padding", pad)))
    assert isinstance(m, nn.AvgPool2d)
    if m.divisor_override is not None:
        raise refuse(node, modules, "divisor_override (not supported)")
    return Step("avgpool", name, (("k", k), ("stride", stride), ("padding", pad),
                                  ("count_include_pad", bool(m.count_include_pad))))


def _module_step(node: torch.fx.Node, modules: dict[str, nn.Module]) -> Step:
    name = str(node.target)
    m = modules[name]
    if isinstance(m, nn.Conv2d):
        return _conv_step(node, modules, m)
    if isinstance(m, nn.BatchNorm2d):
        return Step("bn", name)
    if isinstance(m, nn.ReLU):
        return Step("relu", name)
    if isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0):  # ReLU6 too
        return Step("relu6", name)
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        return _pool_step(node, modules, m)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return Step("adaptive", name, (("size", m.output_size),))
    if isinstance(m, nn.Linear):
        return Step("linear", name)
    if isinstance(m, nn.Identity | nn.Dropout):
        return Step("alias", name)
    if isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (1, -1):
            raise refuse(node, modules, "flatten other than start_dim=1, end_dim=-1")
        return Step("flatten", name)
    raise refuse(node, modules)


def _function_step(node: torch.fx.Node, modules: dict[str, nn.Module]) -> Step:
    f, where = node.target, module_of(node)
    if f in _ADD_FUNCS:
        if len(node.args) != 2 or node.kwargs:
            raise refuse(node, modules, "add with alpha or out (only a + b)")
        return Step("add", where)
    if f in _RELU_FUNCS:
        return Step("relu", where)
    if f is nn.functional.relu6:
        return Step("relu6", where)
    if f is torch.flatten:
        return Step("flatten", where)
    if f is nn.functional.dropout:
        if node.kwargs.get("training", True) or len(node.args) > 2:
            raise refuse(node, modules, "functional dropout in training mode (pass training=False)")
        return Step("alias", where)
    if f is nn.functional.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs["output_size"]
        return Step("adaptive", where, (("size", size),))
    raise refuse(node, modules)


def _method_step(node: torch.fx.Node, modules: dict[str, nn.Module]) -> Step:
    m, where = str(node.target), module_of(node)
    if m in _FLATTEN_METHODS:
        return Step("flatten", where)
    if m in ("relu", "relu_"):
        return Step("relu", where)
    if m in ("add", "add_"):
        if len(node.args) != 2 or node.kwargs:
            raise refuse(node, modules, "add with alpha (only a + b)")
        return Step("add", where)
    if m == "contiguous":
        return Step("alias", where)
    if m == "mean":
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dims, list | tuple) and sorted(int(d) % 4 for d in dims) == [2, 3]:
            return Step("mean", where)
        raise refuse(node, modules, "mean over other than the spatial dims (2, 3)")
    raise refuse(node, modules)


def classify(node: torch.fx.Node, value: Any, modules: dict[str, nn.Module]) -> Step:
    """What ``node`` is, given the value it computed on the trace input.

    Raises:
        UnsupportedOpError: The network runtime cannot compute it.
    """
    if node.op == "placeholder":
        return Step("input", "<model>")
    if node.op == "output":
        return Step("output", "<model>")
    if not isinstance(value, torch.Tensor):
        # Integer bookkeeping (``x.size(0)``, ``x.shape[1] * 2``) feeds reshapes only.
        ints = isinstance(value, int) or (
            isinstance(value, tuple | list | torch.Size)
            and all(isinstance(v, int) for v in value))
        if ints and (node.op == "call_method" and node.target in ("size", "dim")
                     or node.op == "call_function" and node.target in _SHAPE_FUNCS):
            return Step("shape", module_of(node))
        raise refuse(node, modules, "it computes a non-tensor value from tensor data")
    if value.dtype != torch.float32:
        raise refuse(node, modules, f"dtype {value.dtype} (only float32)")
    if node.op == "call_module":
        return _module_step(node, modules)
    if node.op == "call_function":
        return _function_step(node, modules)
    if node.op == "call_method":
        return _method_step(node, modules)
    raise refuse(node, modules)


__all__ = ["SUPPORTED", "NetworkError", "Step", "UnsupportedOpError", "classify", "op_name",
           "module_of", "refuse"]
