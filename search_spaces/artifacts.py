"""Write and read a pruned model's files: what ``pattune prune --out DIR`` leaves behind.

Layout of ``DIR``::

    manifest.json        what is here: model, input shape, pattern set, config, layers
    pattern_set.json     the K patterns (PatternSet JSON)
    state_dict.pt        the pruned state_dict (usual keys, pruned weights are 0)
    masks.npz            0/1 weight mask per pruned layer name
    report.json          per-layer report (kernels, weights, MACs dense vs pruned)
    layers/NN_<name>.json / .npz
                         one PrunedLayer per 3x3 conv (pattern id per kernel,
                         alive map, masked weights, bias); codegen reads these

Layer files are numbered in forward order; ``<name>`` has dots turned into
underscores. :func:`load_pruned_layers` reads them back in order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pattune_common import UserInputError
from search_spaces.layers import PrunedLayer
from search_spaces.masking import pruned_state_dict
from search_spaces.patterns import PatternSet
from search_spaces.pruning import PruningPlan
from search_spaces.report import PruneReport, build_report

MANIFEST = "manifest.json"
SCHEMA = "pattune.pruned_model/1"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def layer_stem(index: int, name: str) -> str:
    """File stem of the ``index``-th pruned layer."""
    return f"{index:02d}_{name.replace('.', '_')}"


def save_pruned(
    out_dir: str | Path,
    model: nn.Module,
    plan: PruningPlan,
    *,
    input_shape: Sequence[int],
    model_name: str = "",
    extra: dict[str, Any] | None = None,
) -> PruneReport:
    """Write the pruned model's files (see the module docstring) and return its report.

    Args:
        out_dir: Created if missing; existing files of the same names are replaced.
        model: The masked model (its current weights are saved).
        plan: The plan the masks came from.
        input_shape: ``(N, C, H, W)`` recorded in the manifest.
        model_name: How the model was named on the command line.
        extra: More manifest fields (accuracies, timings).
    """
    out = Path(out_dir)
    (out / "layers").mkdir(parents=True, exist_ok=True)
    report = build_report(plan)
    layers = plan.pruned_layers(model)
    entries = []
    for i, layer in enumerate(layers):
        stem = layer_stem(i, layer.spec.name)
        _write(out / "layers" / f"{stem}.json", layer.to_json())
        layer.save_npz(out / "layers" / f"{stem}.npz")
        entries.append(
            {
                "name": layer.spec.name,
                "json": f"layers/{stem}.json",
                "npz": f"layers/{stem}.npz",
                "weights_hash": layer.weights_hash,
                "kernels_alive": layer.kernels_alive,
                "nonzeros": layer.nonzeros,
            }
        )
    torch.save(pruned_state_dict(model), out / "state_dict.pt")
    np.savez_compressed(out / "masks.npz", **plan.masks())  # type: ignore[arg-type]
    _write(out / "pattern_set.json", plan.pattern_set.to_json())
    _write(out / "report.json", json.dumps(report.to_dict(), indent=1, sort_keys=True))
    manifest = {
        "schema": SCHEMA,
        "model": model_name,
        "input_shape": [int(v) for v in input_shape],
        "pattern_set": plan.pattern_set.to_dict(),
        "config": plan.config.to_dict(),
        "layers": entries,
        "conv_compression": round(report.conv_compression, 4),
        **(extra or {}),
    }
    _write(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return report


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a directory written by :func:`save_pruned`."""
    path = Path(out_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserInputError(
            f"{path} is not a pruned-model manifest ({exc}); run 'pattune prune --out DIR' first"
        ) from None
    if data.get("schema") != SCHEMA:
        raise UserInputError(f"{path}: schema {data.get('schema')!r} is not {SCHEMA!r}")
    return data


def load_pruned_layers(out_dir: str | Path, *, fmt: str = "npz") -> list[PrunedLayer]:
    """The PrunedLayers of a pruned-model directory, in forward order.

    Args:
        out_dir: A directory written by :func:`save_pruned`.
        fmt: ``"npz"`` or ``"json"`` (the same content; the hash is checked).
    """
    if fmt not in ("npz", "json"):
        raise ValueError(f"fmt must be one of npz, json; got {fmt!r}")
    base = Path(out_dir)
    out = []
    for e in read_manifest(base)["layers"]:
        p = base / e[fmt]
        layer = PrunedLayer.load_npz(p) if fmt == "npz" else PrunedLayer.from_json(p.read_text())
        if layer.weights_hash != e["weights_hash"]:
            raise UserInputError(
                f"{p}: contents do not match the manifest's hash {e['weights_hash']}"
            )
        out.append(layer)
    return out


def load_pattern_set(out_dir: str | Path) -> PatternSet:
    """The pattern set of a pruned-model directory."""
    return PatternSet.from_dict(read_manifest(out_dir)["pattern_set"])
