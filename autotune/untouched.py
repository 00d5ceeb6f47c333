"""Latency of what the generated kernels leave to torch (the "untouched" layers).

The deployed model runs the generated kernels (conv + folded BatchNorm + ReLU +
2x2 max-pool where fused) and a graph runtime for the rest. What is timed here is
that rest, and only that:

* ``"torchscript"`` (the default, for every model ``torch.fx`` can trace): the
  model's dataflow graph with each generated kernel's chain (conv and the modules
  fused into it) cut out and its output turned into a graph *input*, dead code
  removed, then ``torch.jit.trace`` + ``torch.jit.freeze``: the leftover ops
  (pooling not fused, flatten, linear, 1x1 convs, unfused BatchNorm/activations)
  as a TorchScript graph runtime such as PyTorch Mobile's runs them. Kernel
  outputs are inputs, never constants, so nothing downstream is constant-folded;
  no Python module calls, no stand-in modules are timed.
* ``"eager"`` (fallback, models ``torch.fx`` cannot trace): the model in torch
  eager with each generated conv replaced by a stub returning its kernel's
  output and the fused modules by ``nn.Identity`` (:func:`stub_generated`). This
  counts Python module-call overhead of the stubs, so it overstates the rest.

Either way torch runs with an explicit thread count (the caller's), restored afterwards.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from search_spaces.fusion import Epilogue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UntouchedTime:
    """Median latency of the layers left to torch.

    Attributes:
        ms: Median milliseconds per forward pass.
        method: ``"torchscript"`` (frozen leftover graph) or ``"eager"`` (stubbed model).
        threads: torch intra-op threads it ran with.
    """

    ms: float
    method: str
    threads: int


class _Stub(nn.Module):
    """Stands in for a generated layer: returns its output shape at no cost."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, _x: torch.Tensor) -> torch.Tensor:
        return self.out


def _chains(skip: set[str], epilogues: dict[str, Epilogue] | None) -> dict[str, Epilogue]:
    return {n: (epilogues or {}).get(n, Epilogue(n)) for n in skip}


def stub_generated(
    model: nn.Module,
    x: torch.Tensor,
    *,
    skip: set[str],
    epilogues: dict[str, Epilogue] | None = None,
) -> nn.Module:
    """A copy of ``model`` where the generated layers cost nothing (eager fallback).

    Each conv in ``skip`` is replaced by a module that returns what its kernel
    computes on ``x`` (the output of the last module of its epilogue), and the
    modules fused into it by :class:`nn.Identity`; on ``x`` the copy gives the
    model's own output.
    """
    stubbed = copy.deepcopy(model).eval()
    eps = _chains(skip, epilogues)
    last = {ep.last: n for n, ep in eps.items()}
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, o, n=last[name]: outs.__setitem__(n, o.detach().clone())
        )
        for name, m in stubbed.named_modules()
        if name in last
    ]
    with torch.no_grad():
        stubbed(x)
    for h in hooks:
        h.remove()

    def replace(name: str, module: nn.Module) -> None:
        parent_name, _, attr = name.rpartition(".")
        parent = stubbed.get_submodule(parent_name) if parent_name else stubbed
        setattr(parent, attr, module)

    for name, out in outs.items():
        replace(name, _Stub(out))
        for fused in eps[name].fused:
            replace(fused, nn.Identity())
    return stubbed


def leftover_graph(
    model: nn.Module,
    x: torch.Tensor,
    *,
    skip: set[str],
    epilogues: dict[str, Epilogue] | None = None,
) -> tuple[torch.fx.GraphModule, tuple[torch.Tensor, ...]]:
    """The model's graph minus the generated kernels, and the inputs to run it on.

    Returns ``(gm, args)``: ``args`` are ``x`` followed by each generated
    kernel's output on ``x`` (one per call of a chain's last module);
    ``gm(*args)`` returns ``(model(x), *kernel_inputs)``: the input of every
    generated kernel stays a graph output, so what computes it (e.g. a max-pool
    between two generated convs) is timed, not removed as dead code. Raises
    whatever ``torch.fx`` raises on an untraceable model.
    """
    eps = _chains(skip, epilogues)
    last = {ep.last for ep in eps.values()}
    gm = torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    cut = [n for n in gm.graph.nodes if n.op == "call_module" and str(n.target) in last]
    values: dict[torch.fx.Node, torch.Tensor] = {}

    class _Record(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            out = super().run_node(n)
            if n in cut:
                values[n] = out.detach().clone()
            return out

    with torch.no_grad():
        _Record(gm).run(x)
    graph = gm.graph
    convs = {ep.conv for ep in eps.values()}
    kernel_inputs = [n.args[0] for n in graph.nodes
                     if n.op == "call_module" and str(n.target) in convs]
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = ((output.args[0], *kernel_inputs),)
    first = next(n for n in graph.nodes if n.op != "placeholder")
    for i, node in enumerate(cut):
        with graph.inserting_before(first):
            ph = graph.placeholder(f"kernel_out_{i}")
        node.replace_all_uses_with(ph)
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm, (x, *(values[n] for n in cut))


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    with torch.no_grad():
        fn()
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def frozen_leftover(
    model: nn.Module,
    x: torch.Tensor,
    *,
    skip: set[str],
    epilogues: dict[str, Epilogue] | None = None,
) -> tuple[torch.jit.ScriptModule, tuple[torch.Tensor, ...]]:
    """:func:`leftover_graph` traced and frozen by TorchScript, with its inputs."""
    gm, args = leftover_graph(model, x, skip=skip, epilogues=epilogues)
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.compile, but it is what
        # PyTorch Mobile runs, and it has no compile step to time or to fail here.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(gm, args, check_trace=False)
        return torch.jit.freeze(traced.eval()), args


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``threads`` inside, restored afterwards."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1; got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rest_time_ms(
    model: nn.Module,
    shape: tuple[int, ...],
    *,
    skip: set[str],
    epilogues: dict[str, Epilogue] | None = None,
    threads: int = 1,
    repeats: int = 51,
) -> UntouchedTime:
    """Median time (ms) of what ``model`` runs outside the generated ``skip`` layers.

    See the module docstring for what each method times. ``threads`` sets
    torch's intra-op threads for the timing (restored afterwards).
    """
    x = torch.zeros(shape)
    with _torch_threads(threads):
        try:
            frozen, args = frozen_leftover(model, x, skip=skip, epilogues=epilogues)
        except Exception as exc:  # noqa: BLE001 - any user model; eager is the fallback
            log.info("leftover graph not traceable (%s): timing the stubbed model eagerly", exc)
        else:
            return UntouchedTime(_median_ms(lambda: frozen(*args), repeats), "torchscript",
                                 threads)
        stubbed = stub_generated(model, x, skip=skip, epilogues=epilogues)
        return UntouchedTime(_median_ms(lambda: stubbed(x), repeats), "eager", threads)


def torch_model_ms(model: nn.Module, shape: tuple[int, ...], *, threads: int = 1,
                   repeats: int = 21) -> UntouchedTime:
    """Median ms of the whole ``model`` in torch: eager and TorchScript-frozen, the faster.

    ``method`` says which was faster (a model TorchScript cannot trace runs eager only).
    """
    x = torch.zeros(shape)
    with _torch_threads(threads):
        best = UntouchedTime(_median_ms(lambda: model(x), repeats), "eager", threads)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frozen = torch.jit.freeze(torch.jit.trace(model.eval(), (x,),
                                                          check_trace=False).eval())
        except Exception as exc:  # noqa: BLE001 - any user model; eager stands
            log.info("model not traceable by TorchScript (%s): eager only", exc)
            return best
        ms = _median_ms(lambda: frozen(x), repeats)
        return UntouchedTime(ms, "torchscript", threads) if ms < best.ms else best


__all__ = ["UntouchedTime", "frozen_leftover", "leftover_graph", "rest_time_ms", "stub_generated",
           "torch_model_ms"]
