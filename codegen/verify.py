"""Verification, a step of its own: reference output, tolerance, shape and dtype first.

The reference is ``torch.nn.functional.conv2d`` on the layer's masked weights and
bias, followed by ``relu`` and a 2x2/stride-2 ``max_pool2d`` when the layer fuses them;
a kernel passes when ``max |out - ref| / max |ref| <= tolerance`` (1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search_spaces.layers import PrunedLayer

DEFAULT_TOLERANCE = 1e-4


def reference_output(layer: PrunedLayer, x: np.ndarray) -> np.ndarray:
    """The layer's output on ``x`` (1, cin, h, w) by torch's conv2d (+ ReLU, + max-pool), float32."""
    import torch

    s = layer.spec
    with torch.no_grad():
        y = torch.nn.functional.conv2d(
            torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            torch.from_numpy(np.array(layer.weights)),
            None if layer.bias is None else torch.from_numpy(np.array(layer.bias)),
            stride=s.stride, padding=s.padding, groups=s.groups,
        )
        if layer.relu:
            y = torch.relu(y)
        if layer.maxpool:
            y = torch.nn.functional.max_pool2d(y, 2, 2)
    return y.numpy()


def random_input(layer: PrunedLayer, seed: int = 0) -> np.ndarray:
    """A reproducible standard-normal input of the layer's shape."""
    s = layer.spec
    return np.random.default_rng(seed).standard_normal((1, s.cin, s.h, s.w)).astype(np.float32)


@dataclass(frozen=True)
class Verification:
    """Outcome of comparing one output with the reference.

    Attributes:
        max_rel_error: ``max |out - ref| / max |ref|`` (inf when shape/dtype differ).
        error: ``"verify: ..."`` on failure, else "".
    """

    max_rel_error: float
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the output matched."""
        return not self.error


def verify(output: np.ndarray, reference: np.ndarray, *,
           tolerance: float = DEFAULT_TOLERANCE) -> Verification:
    """Compare ``output`` with ``reference``: shape, dtype, then relative max error."""
    if output.shape != reference.shape:
        return Verification(float("inf"),
                            f"verify: output shape {output.shape} != reference {reference.shape}")
    if output.dtype != reference.dtype:
        return Verification(float("inf"),
                            f"verify: output dtype {output.dtype} != reference {reference.dtype}")
    if not np.all(np.isfinite(output)):
        return Verification(float("inf"), "verify: output has NaN or inf")
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    diff = float(np.max(np.abs(output.astype(np.float64) - reference))) if output.size else 0.0
    rel = diff / scale if scale > 0 else diff
    if rel > tolerance:
        return Verification(rel, f"verify: max relative error {rel:.1e} > {tolerance:g}")
    return Verification(rel)
