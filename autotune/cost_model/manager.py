"""Keeps one device type's cost model trained on every measurement it can see.

Training data are, with a records database, all finished measurements of the
device type across layers, trials and studies; without one (a replayed or an
in-process search), the samples it was given at the start plus what the
search loop observed (:meth:`CostModelManager.observe`). The model is retrained
when the data has grown enough since the last training (``min_new`` and
``retrain_growth``); with a database each version is stored there and a new
process starts from the newest stored version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from autotune.cost_model import CostModel, Sample, load_cost_model, make_cost_model
from autotune.records import RecordsDB

log = logging.getLogger(__name__)


class CostModelManager:
    """Owns the cost model of one device type.

    Args:
        device_type: Whose measurements train the model.
        records: The records database (training data and model versions), or None
            to keep the training data in memory.
        prior: In-memory mode: samples to train on from the start (other layers'
            measurements: transfer).
        kind: Cost-model kind (``xgb``).
        seed: Model seed.
        model_options: Keyword arguments of the model (``rounds``, ``nthread``, ...).
        min_new: Retrain only after at least this many new measurements.
        retrain_growth: ... and after the data grew by this fraction.

    Not thread safe: one manager per tuner thread.
    """

    def __init__(
        self,
        *,
        device_type: str,
        records: RecordsDB | None = None,
        prior: Sequence[Sample] = (),
        kind: str = "xgb",
        seed: int = 0,
        model_options: Mapping[str, Any] | None = None,
        min_new: int = 8,
        retrain_growth: float = 0.2,
    ) -> None:
        if records is not None and prior:
            raise ValueError("prior samples are for in-memory training data; the records "
                             "database already holds every measurement of the device type")
        self.records = records
        self.device_type = device_type
        self.kind = kind
        self.seed = seed
        self.model_options = dict(model_options or {})
        self.min_new = min_new
        self.retrain_growth = retrain_growth
        self._memory: list[Sample] = [s for s in prior if s.latency_s is not None]
        self.model: CostModel = self._new_model()
        self.version: int | None = None
        self.trained_on = 0
        self.train_s = 0.0
        stored = records.latest_cost_model(device_type) if records is not None else None
        if stored is not None:
            version, stored_kind, blob, metrics = stored
            if stored_kind == kind:
                self.model = load_cost_model(blob)
                self.version = version
                self.trained_on = int(metrics.get("n_train", 0))

    def _new_model(self) -> CostModel:
        return make_cost_model(self.kind, seed=self.seed, **self.model_options)

    def observe(self, samples: Sequence[Sample]) -> None:
        """New measured samples from the search loop (kept in memory mode; the database
        already has them otherwise)."""
        if self.records is None:
            self._memory += [s for s in samples if s.latency_s is not None]

    def count(self) -> int:
        """Training samples available now."""
        if self.records is None:
            return len(self._memory)
        return self.records.count_done(self.device_type)

    def samples(self) -> list[Sample]:
        """Every training sample: the device type's finished measurements, or the memory."""
        if self.records is None:
            return list(self._memory)
        layers = self.records.layer_specs(self.device_type)
        out = []
        for m in self.records.measurements(device_type=self.device_type):
            info = layers.get(m.layer_hash)
            if info is None or m.median_s is None:
                continue
            out.append(Sample(m.layer_hash, info["spec"], info["stats"], m.config, m.median_s))
        return out

    def maybe_retrain(self, *, force: bool = False) -> bool:
        """Retrain if enough new data arrived (and store the version). Returns whether it did."""
        grown = self.count() - self.trained_on
        if not force and (
            grown < self.min_new or grown < self.retrain_growth * max(1, self.trained_on)
        ):
            return False
        data = self.samples()
        t0 = time.perf_counter()
        model = self._new_model()
        model.fit(data)
        self.train_s += time.perf_counter() - t0
        if not model.fitted:
            return False
        self.model = model
        self.trained_on = len(data)
        if self.records is not None:
            self.version = self.records.save_cost_model(
                device_type=self.device_type,
                kind=self.kind,
                n_train=len(data),
                blob=model.to_bytes(),
                metrics={"n_train": len(data), "layers": len({s.group for s in data})},
            )
        else:
            self.version = (self.version or 0) + 1
        log.info("cost model v%s trained on %d measurements", self.version, len(data))
        return True
