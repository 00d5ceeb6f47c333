"""Keeps one device type's cost model trained on every measurement in the database.

Training data are all finished measurements of the device type, across layers,
trials and studies; the model is retrained when the data has grown enough since
the last training (``retrain_growth``), each version is stored in the records
database, and a new process starts from the newest stored version.
"""

from __future__ import annotations

import logging
import time

from autotune.cost_model import CostModel, Sample, load_cost_model, make_cost_model
from autotune.records import RecordsDB

log = logging.getLogger(__name__)


class CostModelManager:
    """Owns the cost model of one device type.

    Args:
        records: The records database (training data and model versions).
        device_type: Whose measurements train the model.
        kind: Cost-model kind (``xgb``).
        seed: Model seed.
        min_new: Retrain only after at least this many new measurements.
        retrain_growth: ... and after the data grew by this fraction.
    """

    def __init__(
        self,
        *,
        records: RecordsDB,
        device_type: str,
        kind: str = "xgb",
        seed: int = 0,
        min_new: int = 8,
        retrain_growth: float = 0.2,
    ) -> None:
        self.records = records
        self.device_type = device_type
        self.kind = kind
        self.seed = seed
        self.min_new = min_new
        self.retrain_growth = retrain_growth
        self.model: CostModel = make_cost_model(kind, seed=seed)
        self.version: int | None = None
        self.trained_on = 0
        self.train_s = 0.0
        stored = records.latest_cost_model(device_type)
        if stored is not None:
            version, stored_kind, blob, metrics = stored
            if stored_kind == kind:
                self.model = load_cost_model(blob)
                self.version = version
                self.trained_on = int(metrics.get("n_train", 0))

    def samples(self) -> list[Sample]:
        """Every finished measurement of the device type, as training samples."""
        layers = self.records.layer_specs(self.device_type)
        out = []
        for m in self.records.measurements(device_type=self.device_type):
            info = layers.get(m.layer_hash)
            if info is None or m.median_s is None:
                continue
            out.append(Sample(m.layer_hash, info["spec"], info["stats"], m.config, m.median_s))
        return out

    def maybe_retrain(self, *, force: bool = False) -> bool:
        """Retrain if enough new data arrived; store the new version. Returns whether it did."""
        grown = self.records.count_done(self.device_type) - self.trained_on
        if not force and (
            grown < self.min_new or grown < self.retrain_growth * max(1, self.trained_on)
        ):
            return False
        data = self.samples()
        t0 = time.perf_counter()
        model = make_cost_model(self.kind, seed=self.seed)
        model.fit(data)
        self.train_s += time.perf_counter() - t0
        if not model.fitted:
            return False
        self.model = model
        self.trained_on = len(data)
        self.version = self.records.save_cost_model(
            device_type=self.device_type,
            kind=self.kind,
            n_train=len(data),
            blob=model.to_bytes(),
            metrics={"n_train": len(data), "layers": len({s.group for s in data})},
        )
        log.info("cost model v%s trained on %d measurements", self.version, len(data))
        return True
