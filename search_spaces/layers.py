"""Layer shapes and pattern-pruned layers: what ``codegen`` reads.

A :class:`LayerSpec` is a conv layer's shape; a :class:`PrunedLayer` adds the
pruning outcome (pattern id per kernel, alive map) and the masked weights. Both
are frozen; the arrays inside a PrunedLayer are read-only and the record hashes
by content, so a kernel-tuning task can be keyed by ``PrunedLayer.weights_hash``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pattune_common import Record, canonical_json
from search_spaces.patterns import PatternSet


@dataclass(frozen=True)
class LayerSpec(Record):
    """Shape of one 2-D convolution with batch 1 (NCHW, float32).

    Attributes:
        name: Layer name in the model (``features.3``).
        cin: Input channels.
        cout: Output channels.
        h: Input height.
        w: Input width.
        kh: Kernel height.
        kw: Kernel width.
        stride: Stride in both directions.
        padding: Zero padding on every side.
        groups: Convolution groups (``cin`` for depthwise).
    """

    name: str
    cin: int
    cout: int
    h: int
    w: int
    kh: int = 3
    kw: int = 3
    stride: int = 1
    padding: int = 1
    groups: int = 1

    schema = "layer_spec"

    def __post_init__(self) -> None:
        for attr in ("cin", "cout", "h", "w", "kh", "kw", "stride", "groups"):
            if getattr(self, attr) < 1:
                raise ValueError(f"LayerSpec.{attr} must be >= 1; got {getattr(self, attr)}")
        if self.padding < 0:
            raise ValueError(f"LayerSpec.padding must be >= 0; got {self.padding}")
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError(
                f"cin ({self.cin}) and cout ({self.cout}) must be multiples of groups ({self.groups})"
            )
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(
                f"layer {self.name!r}: output would be empty ({self.out_h}x{self.out_w})"
            )

    @property
    def cin_per_group(self) -> int:
        """Input channels seen by one filter."""
        return self.cin // self.groups

    @property
    def out_h(self) -> int:
        """Output height."""
        return (self.h + 2 * self.padding - self.kh) // self.stride + 1

    @property
    def out_w(self) -> int:
        """Output width."""
        return (self.w + 2 * self.padding - self.kw) // self.stride + 1

    @property
    def is_depthwise(self) -> bool:
        """True for one kernel per channel (groups == cin == cout)."""
        return self.groups > 1 and self.groups == self.cin and self.cin_per_group == 1

    @property
    def dense_macs(self) -> int:
        """Multiply-accumulates of the dense layer."""
        return self.cout * self.cin_per_group * self.kh * self.kw * self.out_h * self.out_w

    def signature(self) -> str:
        """Shape-only key (no name), equal for layers of equal shape."""
        d = self.to_dict()
        d.pop("name")
        return canonical_json(d)


def output_shape(spec: LayerSpec, *, maxpool: bool = False) -> tuple[int, int, int, int]:
    """Output shape (1, cout, h, w) of a layer of shape ``spec``, 2x2-max-pooled when asked."""
    if maxpool:
        return (1, spec.cout, spec.out_h // 2, spec.out_w // 2)
    return (1, spec.cout, spec.out_h, spec.out_w)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


@dataclass(frozen=True, eq=False)
class PrunedLayer:
    """One pattern-pruned 3x3 conv layer: shape, pattern per kernel, alive map, values.

    What the layer computes is ``conv2d(x, weights) + bias``, then ``max(0, .)``
    when ``relu`` is set, then a 2x2/stride-2 max-pool (floor mode) when
    ``maxpool`` is set: the fused epilogue of a conv followed by BatchNorm, ReLU
    and max-pooling, with the BatchNorm already folded into ``weights`` and
    ``bias`` (see :mod:`search_spaces.fusion`). Generated kernels and their
    verification reference compute exactly that; the output has
    :attr:`output_shape`.

    Attributes:
        spec: The layer's shape.
        pattern_set: The patterns kernels may use.
        pattern_ids: int16 array (cout, cin_per_group): index into
            ``pattern_set`` of each kernel's pattern (meaningful where alive).
        alive: bool array (cout, cin_per_group): False where connectivity
            pruning removed the whole kernel.
        weights: float32 array (cout, cin_per_group, kh, kw), already masked:
            zero outside each alive kernel's pattern and on dead kernels.
        bias: float32 array (cout,) or None.
        relu: Apply ReLU to the output (after the bias).
        maxpool: Max-pool the (ReLU'd) output 2x2 with stride 2, dropping an odd
            last row/column (``nn.MaxPool2d(2)``).

    Equality and :meth:`weights_hash` are by content.
    """

    spec: LayerSpec
    pattern_set: PatternSet
    pattern_ids: np.ndarray
    alive: np.ndarray
    weights: np.ndarray
    bias: np.ndarray | None = None
    relu: bool = False
    maxpool: bool = False
    _hash: str = field(default="", repr=False, compare=False)

    schema = "pruned_layer"

    def __post_init__(self) -> None:
        s = self.spec
        kshape = (s.cout, s.cin_per_group)
        ids = _readonly(np.asarray(self.pattern_ids, dtype=np.int16))
        alive = _readonly(np.asarray(self.alive, dtype=bool))
        w = _readonly(np.asarray(self.weights, dtype=np.float32))
        if ids.shape != kshape or alive.shape != kshape:
            raise ValueError(
                f"pattern_ids and alive must have shape {kshape}; got {ids.shape}, {alive.shape}"
            )
        if w.shape != (s.cout, s.cin_per_group, s.kh, s.kw):
            raise ValueError(f"weights shape {w.shape} does not match layer {s.name!r}")
        if (s.kh, s.kw) != (self.pattern_set.k, self.pattern_set.k):
            raise ValueError(
                f"layer {s.name!r} is {s.kh}x{s.kw} but the pattern set is "
                f"{self.pattern_set.k}x{self.pattern_set.k}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.pattern_set)):
            raise ValueError(f"pattern_ids must lie in 0..{len(self.pattern_set) - 1}")
        masks = self.pattern_set.masks()[ids.astype(np.int64)] * alive[..., None, None]
        if np.any(w[masks == 0] != 0):
            raise ValueError("weights must be zero outside each alive kernel's pattern")
        bias = None if self.bias is None else _readonly(np.asarray(self.bias, dtype=np.float32))
        if bias is not None and bias.shape != (s.cout,):
            raise ValueError(f"bias must have shape ({s.cout},); got {bias.shape}")
        if not isinstance(self.relu, bool):
            raise TypeError(f"relu must be a bool; got {self.relu!r}")
        if not isinstance(self.maxpool, bool):
            raise TypeError(f"maxpool must be a bool; got {self.maxpool!r}")
        if self.maxpool and (s.out_h < 2 or s.out_w < 2):
            raise ValueError(
                f"layer {s.name!r}: a 2x2 max-pool needs an output of at least 2x2; "
                f"got {s.out_h}x{s.out_w}"
            )
        object.__setattr__(self, "pattern_ids", ids)
        object.__setattr__(self, "alive", alive)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", bias)
        h = hashlib.sha256()
        h.update(canonical_json(self._meta()).encode())
        for a in (ids, alive, w) + (() if bias is None else (bias,)):
            h.update(a.tobytes())
        object.__setattr__(self, "_hash", h.hexdigest()[:16])

    def _meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"spec": self.spec.to_dict(), "pattern_set": self.pattern_set.to_dict()}
        # Only when set, so layers without an epilogue keep the hashes (and the
        # records database keys) they had before epilogues existed.
        if self.relu:
            meta["relu"] = True
        if self.maxpool:
            meta["maxpool"] = True
        return meta

    # -- statistics ---------------------------------------------------------

    @property
    def weights_hash(self) -> str:
        """16-hex-digit content hash of shape, patterns, ids, alive map, values and epilogue."""
        return self._hash

    def stable_hash(self) -> str:
        """Same as :attr:`weights_hash` (the Record protocol's name)."""
        return self._hash

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """Shape (1, cout, h, w) of what the layer outputs: pooled when ``maxpool`` is set."""
        return output_shape(self.spec, maxpool=self.maxpool)

    @property
    def kernels_total(self) -> int:
        """Kernels before connectivity pruning."""
        return int(self.alive.size)

    @property
    def kernels_alive(self) -> int:
        """Kernels kept by connectivity pruning."""
        return int(self.alive.sum())

    @property
    def nonzeros(self) -> int:
        """Weights kept (alive kernels x pattern size)."""
        sizes = np.array([p.n for p in self.pattern_set], dtype=np.int64)
        return int(sizes[self.pattern_ids.astype(np.int64)][self.alive].sum())

    @property
    def pruned_macs(self) -> int:
        """Multiply-accumulates left after pruning."""
        return self.nonzeros * self.spec.out_h * self.spec.out_w

    def pattern_histogram(self) -> np.ndarray:
        """Count of alive kernels per pattern id, shape (K,)."""
        return np.bincount(
            self.pattern_ids[self.alive].astype(np.int64), minlength=len(self.pattern_set)
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrunedLayer) and other._hash == self._hash

    def __hash__(self) -> int:
        return hash(self._hash)

    # -- serialisation ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON form; arrays as little-endian base64 with dtype and shape."""

        def arr(a: np.ndarray) -> dict[str, Any]:
            a = a.astype(a.dtype.newbyteorder("<"))
            return {"dtype": a.dtype.str, "shape": list(a.shape), "data": _b64(a)}

        d = self._meta()
        d.update(
            pattern_ids=arr(self.pattern_ids),
            alive=arr(self.alive),
            weights=arr(self.weights),
            bias=None if self.bias is None else arr(self.bias),
            weights_hash=self._hash,
        )
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrunedLayer:
        """Inverse of :meth:`to_dict`; checks the stored hash."""

        def arr(d: dict[str, Any] | None) -> np.ndarray | None:
            if d is None:
                return None
            raw = base64.b64decode(d["data"])
            return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()

        layer = cls(
            spec=LayerSpec.from_dict(data["spec"]),
            pattern_set=PatternSet.from_dict(data["pattern_set"]),
            pattern_ids=arr(data["pattern_ids"]),  # type: ignore[arg-type]
            alive=arr(data["alive"]),  # type: ignore[arg-type]
            weights=arr(data["weights"]),  # type: ignore[arg-type]
            bias=arr(data.get("bias")),
            relu=bool(data.get("relu", False)),
            maxpool=bool(data.get("maxpool", False)),
        )
        stored = data.get("weights_hash")
        if stored and stored != layer.weights_hash:
            raise ValueError(
                f"pruned layer {layer.spec.name!r}: stored hash {stored} does not match contents"
            )
        return layer

    def to_json(self) -> str:
        """Canonical JSON of :meth:`to_dict`."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> PrunedLayer:
        """Parse :meth:`to_json`'s output."""
        return cls.from_dict(json.loads(text))

    def save_npz(self, path: str | Path) -> None:
        """Write arrays plus a JSON header (``meta``) to one ``.npz`` file."""
        buf = io.BytesIO()
        arrays = {
            "pattern_ids": self.pattern_ids,
            "alive": self.alive,
            "weights": self.weights,
            "meta": np.frombuffer(canonical_json(self._meta()).encode(), dtype=np.uint8),
        }
        if self.bias is not None:
            arrays["bias"] = self.bias
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load_npz(cls, path: str | Path) -> PrunedLayer:
        """Read a file written by :meth:`save_npz`."""
        with np.load(Path(path)) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            return cls(
                spec=LayerSpec.from_dict(meta["spec"]),
                pattern_set=PatternSet.from_dict(meta["pattern_set"]),
                pattern_ids=z["pattern_ids"],
                alive=z["alive"],
                weights=z["weights"],
                bias=z["bias"] if "bias" in z.files else None,
                relu=bool(meta.get("relu", False)),
                maxpool=bool(meta.get("maxpool", False)),
            )


def layer_stats(layer: PrunedLayer) -> dict[str, Any]:
    """Pruning statistics of a layer, as the records store them and the cost model reads them.

    Returns:
        ``kernels_total``, ``kernels_alive``, ``nonzeros`` (weights kept),
        ``patterns`` (K) and ``pattern_histogram`` (alive kernels per pattern
        id, K ints): plain JSON values.
    """
    return {
        "kernels_total": layer.kernels_total,
        "kernels_alive": layer.kernels_alive,
        "nonzeros": layer.nonzeros,
        "patterns": len(layer.pattern_set),
        "pattern_histogram": [int(x) for x in layer.pattern_histogram()],
    }
