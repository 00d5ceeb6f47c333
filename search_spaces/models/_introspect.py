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


def _representable(conv: nn.Conv2d) -> bool:
    """LayerSpec knows square strides and paddings, no dilation, zero padding only."""
    stride, pad, dil = _pair(conv.stride), conv.padding, _pair(conv.dilation)
    return (
        stride[0] == stride[1]
        and not isinstance(pad, str)
        and _pair(pad)[0] == _pair(pad)[1]
        and dil == (1, 1)
        and conv.padding_mode == "zeros"
    )


def conv_layers(model: nn.Module, input_shape: Sequence[int]) -> list[ConvInfo]:
    """Every ``nn.Conv2d`` of ``model`` that a forward pass reaches, in call order.

    A zero input of ``input_shape`` is run once (in eval mode, without
    gradients; the model's training flag is restored) with forward hooks that
    record each conv's input height and width. Convs with unequal strides or
    paddings, dilation or non-zero padding modes are left out: a
    :class:`LayerSpec` cannot describe them, so they are never pruned.

    Args:
        model: Any module; TorchScript modules are not introspectable, use the
            original ``nn.Module``.
        input_shape: ``(N, C, H, W)``; batch 1 is enough.

    Raises:
        ValueError: ``input_shape`` is not four positive integers, or the
            forward pass rejects it.
    """
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input shape must be four positive integers N,C,H,W; got {input_shape}")
    names = {id(m): n for n, m in model.named_modules()}
    seen: dict[str, ConvInfo] = {}
    handles = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        assert isinstance(module, nn.Conv2d)
        name = names[id(module)]
        if name in seen or not _representable(module):
            return
        h, w = int(args[0].shape[-2]), int(args[0].shape[-1])
        spec = LayerSpec(
            name=name,
            cin=module.in_channels,
            cout=module.out_channels,
            h=h,
            w=w,
            kh=_pair(module.kernel_size)[0],
            kw=_pair(module.kernel_size)[1],
            stride=_pair(module.stride)[0],
            padding=_pair(module.padding)[0],  # type: ignore[arg-type]
            groups=module.groups,
        )
        seen[name] = ConvInfo(name=name, spec=spec, module=module)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        with torch.no_grad():
            model(torch.zeros(shape, dtype=dtype))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"the model rejects input shape {','.join(map(str, shape))}: {first}"
        ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return list(seen.values())
