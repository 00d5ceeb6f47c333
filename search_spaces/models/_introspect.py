"""Find a model's conv layers with their real input sizes (forward hooks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces.layers import LayerSpec


@dataclass(frozen=True)
class ConvInfo:
    """One conv layer of a model.

    Attributes:
        name: Qualified module name (``features.0``, ``layer1.0.conv1``).
        spec: The layer's shape with the input height and width seen in a forward pass.
        module: The ``nn.Conv2d`` itself (its ``weight`` is the live parameter).
    """

    name: str
    spec: LayerSpec
    module: nn.Conv2d

    @property
    def is_3x3(self) -> bool:
        """True for a 3x3 kernel (the layers pattern pruning applies to)."""
        return (self.spec.kh, self.spec.kw) == (3, 3)


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _representable(conv: nn.Conv2d) -> bool:  # also scripted Conv2d
    """LayerSpec knows square strides and paddings, no dilation, zero padding only."""
    stride, pad, dil = _pair(conv.stride), conv.padding, _pair(conv.dilation)
    return (
        stride[0] == stride[1]
        and not isinstance(pad, str)
        and _pair(pad)[0] == _pair(pad)[1]
        and dil == (1, 1)
        and conv.padding_mode == "zeros"
    )


def _spec(name: str, module: nn.Module, h: int, w: int) -> LayerSpec:
    k = _pair(module.kernel_size)  # type: ignore[arg-type]
    return LayerSpec(
        name=name,
        cin=int(module.in_channels),  # type: ignore[arg-type]
        cout=int(module.out_channels),  # type: ignore[arg-type]
        h=h,
        w=w,
        kh=k[0],
        kw=k[1],
        stride=_pair(module.stride)[0],  # type: ignore[arg-type]
        padding=_pair(module.padding)[0],  # type: ignore[arg-type]
        groups=int(module.groups),  # type: ignore[arg-type]
    )


def _is_conv(m: nn.Module) -> bool:
    """An eager ``nn.Conv2d`` or a scripted one."""
    return isinstance(m, nn.Conv2d) or (
        isinstance(m, torch.jit.ScriptModule) and getattr(m, "original_name", "") == "Conv2d"
    )


def _zero_input(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    param = next(model.parameters(), None)
    return torch.zeros(shape, dtype=param.dtype if param is not None else torch.float32)


def _run(model: nn.Module, x: torch.Tensor, *, grad: bool) -> torch.Tensor:
    was_training = model.training
    try:
        model.eval()
        with torch.set_grad_enabled(grad):
            return model(x)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        shape = ",".join(map(str, x.shape))
        raise ValueError(f"the model rejects input shape {shape}: {first}") from None
    finally:
        model.train(was_training)


def _scripted_input_sizes(model: nn.Module, x: torch.Tensor) -> dict[int, tuple[int, int]]:
    """Input (h, w) per conv weight's data pointer, read from the autograd graph.

    ScriptModules take no hooks, but every convolution's backward node saves its
    input and weight, so one forward with gradients enabled tells each conv's
    input size, matched to its module by the weight's storage.
    """
    out = _run(model, x, grad=True)
    sizes: dict[int, tuple[int, int]] = {}
    stack = [out.grad_fn] if isinstance(out, torch.Tensor) else []
    seen = set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__.startswith("ConvolutionBackward"):
            shape = fn._saved_input.shape  # type: ignore[attr-defined]
            sizes[fn._saved_weight.data_ptr()] = (int(shape[-2]), int(shape[-1]))  # type: ignore[attr-defined]
        stack.extend(n for n, _ in fn.next_functions)
    return sizes


def conv_layers(model: nn.Module, input_shape: Sequence[int]) -> list[ConvInfo]:
    """Every 2-D conv of ``model`` that a forward pass reaches.

    A zero input of ``input_shape`` is run once in eval mode (the training flag
    is restored) to learn each conv's input height and width: with forward
    pre-hooks for ordinary modules (the result is in call order), from the
    autograd graph for TorchScript modules (in definition order). Convs with
    unequal strides or paddings, dilation or non-zero padding modes are left
    out: a :class:`LayerSpec` cannot describe them, so they are never pruned.

    Args:
        model: An ``nn.Module`` or a TorchScript module.
        input_shape: ``(N, C, H, W)``; batch 1 is enough.

    Raises:
        ValueError: ``input_shape`` is not four positive integers, or the
            forward pass rejects it.
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(
            f"input shape must be four positive integers N,C,H,W; got {tuple(input_shape)}"
        )
    x = _zero_input(model, shape)
    if isinstance(model, torch.jit.ScriptModule):
        sizes = _scripted_input_sizes(model, x)
        out = []
        for name, m in model.named_modules():
            if _is_conv(m) and _representable(m) and m.weight.data_ptr() in sizes:  # type: ignore[arg-type]
                out.append(ConvInfo(name, _spec(name, m, *sizes[m.weight.data_ptr()]), m))  # type: ignore[arg-type, operator]
        return out
    names = {id(m): n for n, m in model.named_modules()}
    seen: dict[str, ConvInfo] = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        name = names[id(module)]
        if name not in seen and _representable(module):  # type: ignore[arg-type]
            h, w = int(args[0].shape[-2]), int(args[0].shape[-1])
            seen[name] = ConvInfo(name, _spec(name, module, h, w), module)  # type: ignore[arg-type]

    handles = [
        m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)
    ]
    try:
        _run(model, x, grad=False)
    finally:
        for h in handles:
            h.remove()
    return list(seen.values())
