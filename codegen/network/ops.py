"""The op records of a network graph: what the C runtime computes, one frozen record per op.

Every op reads tensors by name and writes one tensor (its ``output``); shapes are
batch-1 NCHW (``(1, C, H, W)``) or flat (``(1, N)``). Each kind is a frozen
dataclass with a stable JSON form (:meth:`Op.to_dict` adds ``"kind"``;
:func:`op_from_dict` reads it back), so ``model.json``, tests and the later export
all see the same list. Weights never sit in a record: the graph keeps them beside
the ops, keyed by op name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pattune_common import Record

#: Activations an op may apply to what it stores.
ACTIVATIONS = ("none", "relu", "relu6")


def _check_act(act: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(ACTIVATIONS)}; got {act!r}")


@dataclass(frozen=True, kw_only=True)
class Op(Record):
    """Fields every op has.

    Attributes:
        name: Unique op name (the ``torch.fx`` node of the op's last fused step).
        module: The torch module (or function) it comes from, for messages.
        inputs: Names of the tensors it reads, in order.
        output: Name of the tensor it writes.
        out_shape: Shape of ``output``.
    """

    kind: ClassVar[str] = ""
    name: str
    module: str
    inputs: tuple[str, ...]
    output: str
    out_shape: tuple[int, ...]

    schema = "network_op"

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with ``"kind"`` naming the record type."""
        return {"kind": self.kind, **super().to_dict()}

    @property
    def out_elems(self) -> int:
        """Floats in the output."""
        n = 1
        for d in self.out_shape:
            n *= d
        return n

    @property
    def aliases_input(self) -> bool:
        """True when the output is the input's memory seen with another shape (no code)."""
        return False


@dataclass(frozen=True, kw_only=True)
class Conv2d(Op):
    """2-D convolution (BatchNorm folded, bias, activation), any kernel, stride, padding, groups.

    Attributes:
        cin, h, w: Input channels, height and width.
        cout: Output channels.
        kh, kw: Kernel size.
        stride: Stride in both directions.
        padding: Zero padding on every side.
        groups: Convolution groups.
        act: Activation applied when storing (one of :data:`ACTIVATIONS`).
        fused: Modules folded or fused into it (BatchNorm, activation, max-pool).
        pattern: A tuned pattern layer (runs as its own kernel, see ``docs/network.md``).
        maxpool: Pattern layers only: the kernel ends with a 2x2/stride-2 max-pool, so
            ``out_shape`` is the pooled shape.
        layer_relu: Pattern layers only: the kernel itself applies the ReLU
            (``PrunedLayer.relu``); ``act`` may add one after it.
    """

    kind: ClassVar[str] = "conv2d"
    cin: int
    h: int
    w: int
    cout: int
    kh: int
    kw: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    act: str = "none"
    fused: tuple[str, ...] = ()
    pattern: bool = False
    maxpool: bool = False
    layer_relu: bool = False

    def __post_init__(self) -> None:
        _check_act(self.act)
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError(f"op {self.name!r}: channels must be multiples of groups")

    @property
    def out_h(self) -> int:
        """Height of the convolution's output (before a fused max-pool)."""
        return (self.h + 2 * self.padding - self.kh) // self.stride + 1

    @property
    def out_w(self) -> int:
        """Width of the convolution's output (before a fused max-pool)."""
        return (self.w + 2 * self.padding - self.kw) // self.stride + 1

    @property
    def is_depthwise(self) -> bool:
        """One filter per channel (groups == cin == cout)."""
        return self.groups == self.cin == self.cout and self.groups > 1

    @property
    def is_pointwise(self) -> bool:
        """A 1x1 convolution without padding or groups (a matrix product)."""
        return self.kh == self.kw == 1 and self.padding == 0 and self.groups == 1

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates."""
        return (self.cout * (self.cin // self.groups) * self.kh * self.kw
                * self.out_h * self.out_w)


@dataclass(frozen=True, kw_only=True)
class Pool2d(Op):
    """Max or average pooling over ``k x k`` windows.

    Attributes:
        mode: ``"max"`` or ``"avg"``.
        c, h, w: Input channels, height and width.
        k: Window size.
        stride: Stride.
        padding: Implicit padding (-inf for max, zeros for avg).
        count_include_pad: Average pooling divides by the whole window (torch's default)
            instead of its part inside the input.
    """

    kind: ClassVar[str] = "pool2d"
    mode: str
    c: int
    h: int
    w: int
    k: int
    stride: int
    padding: int = 0
    count_include_pad: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("max", "avg"):
            raise ValueError(f"Pool2d.mode must be one of max, avg; got {self.mode!r}")


@dataclass(frozen=True, kw_only=True)
class AdaptiveAvgPool2d(Op):
    """Adaptive average pooling to ``out_h x out_w`` (global when 1x1), torch's windows.

    Attributes:
        c, h, w: Input channels, height and width.
        oh, ow: Output height and width.
    """

    kind: ClassVar[str] = "adaptive_avg_pool2d"
    c: int
    h: int
    w: int
    oh: int
    ow: int

    @property
    def is_global(self) -> bool:
        """Pools each channel to one value."""
        return self.oh == self.ow == 1


@dataclass(frozen=True, kw_only=True)
class Add(Op):
    """Elementwise sum of two tensors of one shape, then an activation.

    Attributes:
        act: One of :data:`ACTIVATIONS`.
        fused: The activation module fused into it, if any.
    """

    kind: ClassVar[str] = "add"
    act: str = "none"
    fused: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_act(self.act)


@dataclass(frozen=True, kw_only=True)
class Activation(Op):
    """A ReLU or ReLU6 that could not be fused into its producer (it has other readers)."""

    kind: ClassVar[str] = "activation"
    act: str

    def __post_init__(self) -> None:
        _check_act(self.act)


@dataclass(frozen=True, kw_only=True)
class Flatten(Op):
    """``flatten(1)`` / ``view(1, -1)``: the same memory seen as ``(1, N)``: no code runs."""

    kind: ClassVar[str] = "flatten"

    @property
    def aliases_input(self) -> bool:
        """Always: NCHW with batch 1 is already the flat order."""
        return True


@dataclass(frozen=True, kw_only=True)
class Linear(Op):
    """``y = x W^T + b`` then an activation, on a flat input.

    Attributes:
        in_features: Input length.
        out_features: Output length.
        act: One of :data:`ACTIVATIONS`.
        fused: The activation module fused into it, if any.
    """

    kind: ClassVar[str] = "linear"
    in_features: int
    out_features: int
    act: str = "none"
    fused: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_act(self.act)


OP_KINDS: dict[str, type[Op]] = {
    cls.kind: cls for cls in (Conv2d, Pool2d, AdaptiveAvgPool2d, Add, Activation, Flatten, Linear)
}


def op_from_dict(data: dict[str, Any]) -> Op:
    """Inverse of :meth:`Op.to_dict`.

    Raises:
        ValueError: Unknown ``kind``.
    """
    d = dict(data)
    kind = d.pop("kind", None)
    if kind not in OP_KINDS:
        raise ValueError(f"unknown op kind {kind!r}; known: {', '.join(OP_KINDS)}")
    return OP_KINDS[kind].from_dict(d)


__all__ = [
    "ACTIVATIONS",
    "OP_KINDS",
    "Activation",
    "Add",
    "AdaptiveAvgPool2d",
    "Conv2d",
    "Flatten",
    "Linear",
    "Op",
    "Pool2d",
    "op_from_dict",
]
