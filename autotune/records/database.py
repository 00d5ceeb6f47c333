"""The records database: every layer, config, build, measurement and cost model.

One :class:`RecordsDB` per process, on the study's storage URL (SQLite by
default, PostgreSQL when several hosts share a study). Its promise is the
tuner's: the same (device type, layer, pruned-weights hash, KernelConfig) is
never built or measured twice, across trials, studies, processes and restarts.
Processes arbitrate through the database alone: a measurement row is *claimed*
before anything is built, and the unique constraint decides who measures.
"""

from __future__ import annotations

from autotune.records.claims import ClaimsMixin
from autotune.records.cost_models import CostModelsMixin
from autotune.records.queries import QueriesMixin
from autotune.records.rows import RowsMixin
from autotune.records.trials import TrialsMixin
from autotune.records.workers import WorkersMixin


class RecordsDB(ClaimsMixin, QueriesMixin, CostModelsMixin, WorkersMixin, TrialsMixin,
                RowsMixin):
    """Records database on one storage URL.

    Each concern lives in its own module and is mixed in here: opening,
    sessions and Optuna's storage (``_base``), worker heartbeats and liveness
    (``workers``), get-or-create rows (``rows``), the claim/finish protocol
    (``claims``), queries (``queries``), cost-model blobs (``cost_models``) and each
    trial's candidate and per-layer results (``trials``).

    Thread safety: each method opens its own short session, so one instance may
    be shared by threads. Units: seconds for every time.

    Args:
        url: Storage URL (``sqlite:///pattune.db``, ``postgresql+psycopg://…``;
            a plain ``postgresql://`` is read as psycopg 3). The database's
            schema, records and farm tables alike, is brought to head on open.
        owner: Name written on claims; defaults to ``host:pid:random``.
        claim_ttl_s: A claim older than this is considered abandoned and may be
            taken over by another process.
        worker_ttl_s: A worker whose heartbeat is older than this is dead.

    Attributes:
        url: The normalised storage URL (password included: never print it,
            use :func:`pattune_common.storage.redact_url`).
        owner: This process's owner name.
        engine: The SQLAlchemy engine.
    """


__all__ = ["RecordsDB"]
