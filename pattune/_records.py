"""``pattune.measurements``: the kernel-level measurements of a storage, as records.

A study's trials show whole-model figures; the hundreds of kernel measurements
behind them (one per layer and KernelConfig on a device type) are in the records
database. This reads them back for a log, a script or a notebook; ``pattune
measurements --json`` writes them in the ``pattune.measurements`` schema (docs/cli.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pattune_common import DEFAULT_STORAGE, UserInputError
from pattune_common.storage import require_existing

STATUSES = ("done", "failed", "claimed")


@dataclass(frozen=True)
class KernelMeasurement:
    """One kernel measurement: a layer's KernelConfig on a device type.

    Attributes:
        layer: The layer's name in its model (``features.3``).
        layer_hash: The pruned weights' hash (the records' layer key).
        shape: ``{cin, cout, h, w, stride, groups}`` of the layer.
        config: The KernelConfig's fields.
        config_hash: Its hash.
        status: ``done``, ``failed`` or ``claimed`` (being measured).
        latency_ms: Median latency in milliseconds when done, else None.
        spread: Relative spread of the timed repeats, or None.
        predicted_ms: What the cost model predicted (milliseconds), or None.
        cost_model_version: The cost model that predicted it, or None.
        device: The device that measured it, or None.
        error: Why it failed, or None.
    """

    layer: str
    layer_hash: str
    shape: dict[str, int]
    config: dict[str, Any]
    config_hash: str
    status: str
    latency_ms: float | None
    spread: float | None
    predicted_ms: float | None
    cost_model_version: int | None
    device: str | None
    error: str | None


def measurements(*, storage: str = DEFAULT_STORAGE, device_type: str = "local",
                 status: str | None = None) -> tuple[KernelMeasurement, ...]:
    """Every kernel measurement recorded for ``device_type``, oldest first.

    Args:
        storage: The storage URL (it must exist).
        device_type: The device type measured on.
        status: Only ``done``, ``failed`` or ``claimed`` ones; None for all.

    Raises:
        UserInputError: A storage that does not exist or a status not in the list.
    """
    if status is not None and status not in STATUSES:
        raise UserInputError(f"--status must be one of {', '.join(STATUSES)}; got {status!r}")
    from autotune.records import RecordsDB

    require_existing(storage)
    db = RecordsDB(storage)
    specs = db.layer_specs(device_type)
    out = []
    for m in db.measurements(device_type=device_type, status=status):
        spec = specs.get(m.layer_hash, {}).get("spec", {})
        out.append(KernelMeasurement(
            layer=str(spec.get("name", "?")), layer_hash=m.layer_hash,
            shape={k: int(spec[k]) for k in ("cin", "cout", "h", "w", "stride", "groups")
                   if k in spec},
            config=dict(m.config), config_hash=m.config_hash, status=m.status,
            latency_ms=None if m.median_s is None else m.median_s * 1e3, spread=m.spread,
            predicted_ms=None if m.predicted is None else m.predicted * 1e3,
            cost_model_version=m.cost_model_version, device=m.device_name, error=m.error,
        ))  # fmt: skip
    return tuple(out)


__all__ = ["KernelMeasurement", "measurements"]
