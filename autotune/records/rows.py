"""Get-or-create of the rows measurements point to: device types, devices, layers, configs, builds.

Each method returns the row's id, inserting the row on first use; concurrent
processes asking for the same key get the same id (the insert does nothing on
conflict). Layer and config rows are never changed or deleted, so their ids are
cached per instance (the caches are plain dicts: a race between threads only
looks a row up twice). Thread-safe otherwise: each call uses its own session.
"""

from __future__ import annotations

from typing import Any

from autotune.records._base import RecordsBase, now
from autotune.records._schema import BuildRow, DeviceRow, DeviceTypeRow, KernelConfigRow, LayerRow
from pattune_common import stable_hash
from search_spaces import PrunedLayer, layer_stats


class RowsMixin(RecordsBase):
    """Ids of device types, devices, layers, kernel configs and builds, created on first use."""

    def device_type(self, name: str, *, arch: str = "", info: dict[str, Any] | None = None) -> int:
        """Id of device type ``name``, created on first use."""
        with self.session() as s:
            return self._get_or_create(
                s, DeviceTypeRow, {"name": name}, {"arch": arch, "info": info or {}}
            )

    def device(self, name: str, *, device_type: str, info: dict[str, Any] | None = None) -> int:
        """Id of device ``name`` (of ``device_type``), created on first use."""
        dt = self.device_type(device_type)
        with self.session() as s:
            return self._get_or_create(
                s, DeviceRow, {"name": name}, {"device_type_id": dt, "info": info or {}}
            )

    def layer(self, layer: PrunedLayer) -> int:
        """Id of a PrunedLayer (by ``weights_hash``), created on first use."""
        cached = self._layer_ids.get(layer.weights_hash)
        if cached is not None:
            return cached
        with self.session() as s:
            lid = self._get_or_create(
                s,
                LayerRow,
                {"weights_hash": layer.weights_hash},
                {
                    "signature": layer.spec.signature(),
                    "spec": layer.spec.to_dict(),
                    "stats": layer_stats(layer),
                },
            )
        self._layer_ids[layer.weights_hash] = lid
        return lid

    def kernel_config(self, config: dict[str, Any]) -> tuple[int, str]:
        """``(id, hash)`` of a KernelConfig given in its ``to_dict()`` form."""
        h = stable_hash(config)
        cached = self._config_ids.get(h)
        if cached is None:
            with self.session() as s:
                cached = self._get_or_create(
                    s, KernelConfigRow, {"config_hash": h}, {"config": config}
                )
            self._config_ids[h] = cached
        return cached, h

    def record_build(
        self,
        *,
        build_hash: str,
        target: str,
        layer_id: int,
        config_id: int,
        error: str | None = None,
    ) -> int:
        """Record a build once per ``build_hash``; return its id."""
        with self.session() as s:
            return self._get_or_create(
                s,
                BuildRow,
                {"build_hash": build_hash},
                {
                    "target": target,
                    "layer_id": layer_id,
                    "config_id": config_id,
                    "status": "failed" if error else "done",
                    "error": error,
                    "created": now(),
                },
            )
