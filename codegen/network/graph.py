"""A pruned torch model as the list of ops the C runtime runs (``torch.fx``, batch 1, float32).

:func:`build_graph` traces the model, runs the trace once on a seeded input to learn
every tensor's shape, and lowers the nodes to :mod:`.ops` records:

* a BatchNorm right after a conv (its only reader) folds into the conv's weights
  (:func:`search_spaces.fusion.fold_batchnorm`);
* a ReLU/ReLU6 that is the only reader of a conv, add or linear fuses into it;
* dropout (eval), identity and ``contiguous`` disappear; flatten/view to ``(1, N)``
  becomes a :class:`~.ops.Flatten` that shares its input's memory;
* a tuned pattern layer (``pattern_layers``: conv module name to
  ``(PrunedLayer, KernelConfig | None)``, as :meth:`PruningPlan.pruned_layers` with
  ``fuse=True`` makes them) becomes one pattern :class:`~.ops.Conv2d` that also covers
  the BatchNorm, ReLU and max-pool its kernel fuses (:func:`find_epilogues`), so they
  are not run again.

Anything else is refused with one line naming the op and its module; nothing falls back
to torch.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from codegen.config import KernelConfig
from codegen.network._lower import NetworkError, Step, classify, refuse
from codegen.network._patterns import PatternLayers, check_pattern_layer
from codegen.network.ops import (
    Activation,
    AdaptiveAvgPool2d,
    Add,
    Conv2d,
    Flatten,
    Linear,
    Op,
    Pool2d,
)
from pattune_common import canonical_json
from search_spaces.fusion import Epilogue, find_epilogues, fold_batchnorm
from search_spaces.layers import PrunedLayer


@dataclass(frozen=True, eq=False)
class Graph:
    """A network as the C runtime runs it.

    Attributes:
        input: Name of the input tensor.
        input_shape: ``(1, C, H, W)``.
        output: Name of the output tensor.
        output_shape: Its shape.
        ops: The ops in execution order.
        params: Per dense op name, ``(weights, bias)`` float32: conv weights
            ``(cout, cin / groups, kh, kw)`` with any BatchNorm folded, linear weights
            ``(out, in)``; bias always present (zeros when the module has none).
        patterns: Per pattern op name, its ``(PrunedLayer, KernelConfig | None)``.
    """

    input: str
    input_shape: tuple[int, ...]
    output: str
    output_shape: tuple[int, ...]
    ops: tuple[Op, ...]
    params: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    patterns: Mapping[str, tuple[PrunedLayer, KernelConfig | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: shapes and op records (no weights; see :meth:`fingerprint`)."""
        return {
            "input": self.input,
            "input_shape": list(self.input_shape),
            "output": self.output,
            "output_shape": list(self.output_shape),
            "ops": [op.to_dict() for op in self.ops],
        }

    def fingerprint(self) -> int:
        """64-bit hash of the op list, the shapes and each pattern layer's pruning and
        config: the weights file carries it, the C code checks it, so the weights of
        another network are refused. Dense weights are not in it (new values of the same
        network load into the same library); a pattern kernel's code is specialised to
        its layer's patterns, so those are."""
        kernels = {name: [layer.weights_hash, None if cfg is None else cfg.stable_hash()]
                   for name, (layer, cfg) in self.patterns.items()}
        digest = hashlib.sha256(canonical_json([self.to_dict(), kernels]).encode()).digest()
        return int.from_bytes(digest[:8], "little")

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every tensor by name: the input and each op's output."""
        out = {self.input: self.input_shape}
        out.update({op.output: op.out_shape for op in self.ops})
        return out

    def op(self, name: str) -> Op:
        """The op called ``name``."""
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(f"no op named {name!r}")


# torch.fx's symbolic tracer patches nn.Module.__call__ and torch functions process-wide
# while it traces, so a trace and any module call in another thread break each other
# ("module is not installed as a submodule", NameError inside the tracer). Our traces and
# our trace-time forward passes take turns; other threads' torch calls cannot be guarded.
_TRACE_LOCK = threading.Lock()


def _trace(model: nn.Module, x: torch.Tensor) -> tuple[torch.fx.GraphModule, dict[str, Any]]:
    if isinstance(model, torch.jit.ScriptModule):
        raise NetworkError("network: TorchScript modules cannot be traced by torch.fx; "
                           "give the eager nn.Module")
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any user model; the message is the answer
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NetworkError(f"network: torch.fx cannot trace the model ({first}); make its "
                           "forward free of data-dependent control flow") from None
    values: dict[str, Any] = {}

    class _Record(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            out = super().run_node(n)
            values[n.name] = out
            return out

    try:
        with torch.no_grad():
            _Record(gm).run(x)
    except (RuntimeError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NetworkError(f"network: the model rejects an input of shape {tuple(x.shape)} "
                           f"({first}); give the input shape it was built for") from None
    return gm, values


def _trace_locked(model: nn.Module, x: torch.Tensor) -> tuple[torch.fx.GraphModule,
                                                               dict[str, Any]]:
    with _TRACE_LOCK:
        return _trace(model, x)


def _check_args(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if model.training:
        raise NetworkError("network: the model is in training mode; call model.eval() first "
                           "(BatchNorm folds its running statistics, dropout is removed)")
    if len(input_shape) != 4 or input_shape[0] != 1 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (1, C, H, W) with positive sizes; "
                         f"got {input_shape}")


class _Lowering:
    """State of one lowering pass: fx nodes in, ops out."""

    def __init__(self, model: nn.Module, gm: torch.fx.GraphModule, values: dict[str, Any],
                 patterns: PatternLayers) -> None:
        self.model, self.gm, self.values = model, gm, values
        self.modules = dict(model.named_modules())
        self.patterns = patterns
        self.epilogues: dict[str, Epilogue] = {}
        if patterns:
            with _TRACE_LOCK:  # find_epilogues traces the model too
                self.epilogues = find_epilogues(model)
        self.steps: dict[str, Step] = {}
        self.alias: dict[str, str] = {}
        self.done: set[str] = set()
        self.ops: list[Op] = []
        self.params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.pattern_ops: dict[str, tuple[PrunedLayer, KernelConfig | None]] = {}

    # -- helpers ------------------------------------------------------------

    def tensor(self, node: Any) -> str:
        name = node.name
        while name in self.alias:
            name = self.alias[name]
        return name

    def shape(self, node: torch.fx.Node) -> tuple[int, ...]:
        return tuple(int(d) for d in self.values[node.name].shape)

    def sole_user(self, node: torch.fx.Node, kinds: tuple[str, ...]) -> torch.fx.Node | None:
        """The one node that reads ``node``, when it is of ``kinds`` and reads nothing else."""
        users = list(node.users)
        if len(users) != 1:
            return None
        u = users[0]
        if self.steps[u.name].kind not in kinds or u.args[:1] != (node,):
            return None
        if any(isinstance(a, torch.fx.Node) for a in list(u.args[1:]) + list(u.kwargs.values())):
            return None
        return u

    def fuse_act(self, node: torch.fx.Node) -> tuple[str, torch.fx.Node, tuple[str, ...]]:
        """``(act, last node, fused modules)`` after an optional sole ReLU/ReLU6 reader."""
        u = self.sole_user(node, ("relu", "relu6"))
        if u is None:
            return "none", node, ()
        self.done.add(u.name)
        step = self.steps[u.name]
        return step.kind, u, (step.module,)

    def common(self, first: torch.fx.Node, last: torch.fx.Node, module: str,
               inputs: tuple[str, ...]) -> dict[str, Any]:
        return {"name": first.name, "module": module, "inputs": inputs, "output": last.name,
                "out_shape": self.shape(last)}

    # -- ops ----------------------------------------------------------------

    def conv(self, node: torch.fx.Node, step: Step) -> None:
        m = self.modules[step.module]
        assert isinstance(m, nn.Conv2d)
        _, c, h, w = self.shape(node.args[0])  # type: ignore[arg-type]
        geo: dict[str, Any] = {"cin": c, "h": h, "w": w, "cout": m.out_channels, "kh": m.kernel_size[0],
               "kw": m.kernel_size[1], "stride": int(m.stride[0]),
               "padding": int(m.padding[0]),  # type: ignore[index]
               "groups": m.groups}
        src = (self.tensor(node.args[0]),)
        if step.module in self.patterns:
            self.pattern_conv(node, m, geo, src)
            return
        wts = m.weight.detach().float().numpy().astype(np.float32)
        bias = (np.zeros(m.out_channels, np.float32) if m.bias is None
                else m.bias.detach().float().numpy().astype(np.float32))
        last, fused = node, []
        bn = self.sole_user(node, ("bn",))
        if bn is not None:
            bnm = self.modules[self.steps[bn.name].module]
            assert isinstance(bnm, nn.BatchNorm2d)
            if bnm.running_mean is not None and bnm.num_features == m.out_channels:
                wts, bias = fold_batchnorm(wts, bias, bnm)
                self.done.add(bn.name)
                last, fused = bn, [self.steps[bn.name].module]
        act, last, act_mod = self.fuse_act(last)
        op = Conv2d(**self.common(node, last, step.module, src), **geo, act=act,
                    fused=(*fused, *act_mod))
        self.ops.append(op)
        self.params[op.name] = (wts, bias)

    def pattern_conv(self, node: torch.fx.Node, m: nn.Conv2d, geo: dict[str, Any],
                     src: tuple[str, ...]) -> None:
        name = str(node.target)
        layer, cfg = self.patterns[name]
        ep = self.epilogues.get(name, Epilogue(name))
        check_pattern_layer(name, layer, ep, m, geo, self.model)
        last = node
        for mod in (ep.batchnorm, ep.relu, ep.maxpool):
            if mod is None:
                continue
            users = list(last.users)
            if len(users) != 1 or users[0].target != mod:
                raise NetworkError(f"network: pattern layer {name!r}: its epilogue module "
                                   f"{mod} is not the conv's only reader in the traced graph")
            last = users[0]
            self.done.add(last.name)
        act, last, act_mod = self.fuse_act(last)
        op = Conv2d(**self.common(node, last, name, src), **geo, act=act,
                    fused=(*ep.fused, *act_mod), pattern=True, maxpool=layer.maxpool,
                    layer_relu=layer.relu)
        self.ops.append(op)
        self.pattern_ops[op.name] = (layer, cfg)

    def lower(self, node: torch.fx.Node, step: Step) -> None:
        k = step.kind
        src = tuple(self.tensor(a) for a in node.args if isinstance(a, torch.fx.Node))
        if k == "conv":
            self.conv(node, step)
        elif k == "bn":
            raise refuse(node, self.modules, "only a BatchNorm right after a conv whose only "
                         "reader it is can run (folded into the conv)")
        elif k in ("relu", "relu6"):
            self.ops.append(Activation(**self.common(node, node, step.module, src[:1]), act=k))
        elif k in ("maxpool", "avgpool"):
            _, c, h, w = self.shape(node.args[0])  # type: ignore[arg-type]
            a = dict(step.attrs)
            self.ops.append(Pool2d(**self.common(node, node, step.module, src[:1]),
                                   mode=k[:3], c=c, h=h, w=w, **a))
        elif k in ("adaptive", "mean"):
            self.adaptive(node, step, src)
        elif k == "add":
            a_shape, b_shape = (self.shape(a) for a in node.args)  # type: ignore[arg-type]
            if len(src) != 2 or a_shape != b_shape:
                raise refuse(node, self.modules, "add of tensors of different shapes "
                             f"{a_shape} and {b_shape} (no broadcasting)")
            act, last, act_mod = self.fuse_act(node)
            self.ops.append(Add(**self.common(node, last, step.module, src), act=act,
                                fused=act_mod))
        elif k == "linear":
            self.linear(node, step, src)
        elif k == "flatten":
            self.flatten(node, step, src)
        else:
            raise refuse(node, self.modules)

    def adaptive(self, node: torch.fx.Node, step: Step, src: tuple[str, ...]) -> None:
        _, c, h, w = self.shape(node.args[0])  # type: ignore[arg-type]
        out = self.shape(node)
        oh, ow = (1, 1) if step.kind == "mean" else (out[-2], out[-1])
        if (oh, ow) == (h, w):  # the identity (VGG's 7x7 pool on a 7x7 input)
            self.alias[node.name] = src[0]
            return
        self.ops.append(AdaptiveAvgPool2d(**self.common(node, node, step.module, src[:1]),
                                          c=c, h=h, w=w, oh=oh, ow=ow))

    def linear(self, node: torch.fx.Node, step: Step, src: tuple[str, ...]) -> None:
        m = self.modules[step.module]
        assert isinstance(m, nn.Linear)
        if self.shape(node.args[0]) != (1, m.in_features):  # type: ignore[arg-type]
            raise refuse(node, self.modules, "linear on a non-flat input (flatten it first)")
        act, last, act_mod = self.fuse_act(node)
        op = Linear(**self.common(node, last, step.module, src[:1]), act=act, fused=act_mod,
                    in_features=m.in_features, out_features=m.out_features)
        w = m.weight.detach().float().numpy().astype(np.float32)
        b = (np.zeros(m.out_features, np.float32) if m.bias is None
             else m.bias.detach().float().numpy().astype(np.float32))
        self.ops.append(op)
        self.params[op.name] = (w, b)

    def flatten(self, node: torch.fx.Node, step: Step, src: tuple[str, ...]) -> None:
        ins, out = self.shape(node.args[0]), self.shape(node)  # type: ignore[arg-type]
        if out != (1, int(np.prod(ins))):
            raise refuse(node, self.modules, f"reshape {ins} -> {out} (only to (1, N))")
        if ins == out:
            self.alias[node.name] = src[0]
            return
        self.ops.append(Flatten(**self.common(node, node, step.module, src[:1])))

    def run(self) -> tuple[str, str]:
        nodes = list(self.gm.graph.nodes)
        inputs = [n for n in nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise NetworkError(f"network: the model must take one tensor; its forward takes "
                               f"{len(inputs)} arguments")
        for n in nodes:
            self.steps[n.name] = classify(n, self.values.get(n.name), self.modules)
        out_node = next(n for n in nodes if n.op == "output")
        if not isinstance(out_node.args[0], torch.fx.Node):
            raise NetworkError("network: the model must return one tensor")
        for n in nodes:
            step = self.steps[n.name]
            if n.name in self.done or step.kind in ("input", "output", "shape"):
                continue
            if step.kind == "alias":
                self.alias[n.name] = self.tensor(n.args[0])
                continue
            self.lower(n, step)
        unused = sorted(set(self.patterns) - {str(p) for p in self.pattern_ops_modules()})
        if unused:
            raise NetworkError(f"network: pattern layers name convs the model does not run: "
                               f"{', '.join(unused)}")
        return inputs[0].name, self.tensor(out_node.args[0])

    def pattern_ops_modules(self) -> list[str]:
        return [op.module for op in self.ops if isinstance(op, Conv2d) and op.pattern]


def build_graph(model: nn.Module, input_shape: tuple[int, ...], *,
                pattern_layers: PatternLayers | None = None, seed: int = 0) -> Graph:
    """Lower ``model`` (eval mode) for a batch-1 input of ``input_shape`` to a :class:`Graph`.

    Args:
        model: The pruned model; its pattern convs hold their masked weights.
        input_shape: ``(1, C, H, W)``.
        pattern_layers: Conv module name to ``(PrunedLayer, KernelConfig | None)`` for
            the layers the tuner tuned (``None`` config: the codegen default).
        seed: Seed of the input the trace runs once to learn the shapes.

    Raises:
        UnsupportedOpError: The model runs an op the runtime has no code for.
        NetworkError: Untraceable model, training mode, or pattern layers that do not
            match the model.
        ValueError: ``input_shape`` is not ``(1, C, H, W)``.
    """
    shape = tuple(int(d) for d in input_shape)
    _check_args(model, shape)
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    gm, values = _trace_locked(model, x)
    low = _Lowering(model, gm, values, dict(pattern_layers or {}))
    inp, out = low.run()
    shapes = {inp: shape, **{op.output: op.out_shape for op in low.ops}}
    return Graph(input=inp, input_shape=shape, output=out, output_shape=shapes[out],
                 ops=tuple(low.ops), params=low.params, patterns=low.pattern_ops)


__all__ = ["Graph", "NetworkError", "build_graph"]
