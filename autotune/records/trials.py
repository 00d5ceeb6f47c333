"""The per-trial detail a study keeps outside Optuna: candidate and per-layer results.

Thread-safe: each call uses its own session. A second write to the same (study,
trial number) updates the fields it gives (the outer study writes the candidate,
the tuner the layers).
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from autotune.records._base import RecordsBase
from autotune.records._schema import TrialDetailRow


class TrialsMixin(RecordsBase):
    """Store and read :class:`TrialDetailRow` rows."""

    def save_trial_detail(self, *, study: str, trial_number: int,
                          candidate: dict[str, Any] | None = None,
                          layers: list[Any] | None = None) -> None:
        """Write the given fields of one trial's detail (others stay as they are)."""
        given = {k: v for k, v in (("candidate", candidate), ("layers", layers))
                 if v is not None}
        for _ in range(3):
            try:
                with self.session() as s:
                    row = s.execute(sa.select(TrialDetailRow).where(
                        TrialDetailRow.study == study,
                        TrialDetailRow.trial_number == trial_number)).scalar_one_or_none()
                    if row is None:
                        s.add(TrialDetailRow(study=study, trial_number=trial_number,
                                             updated=time.time(), **given))
                    else:
                        for key, value in given.items():
                            setattr(row, key, value)
                        row.updated = time.time()
                return
            except sa.exc.IntegrityError:
                continue  # another writer inserted the row first: update it
        raise RuntimeError(f"could not store the detail of trial {trial_number} of {study!r}")

    def trial_detail(self, study: str, trial_number: int) -> dict[str, Any] | None:
        """``{"candidate": ..., "layers": ...}`` of one trial, or None if none was stored."""
        with self.session() as s:
            row = s.execute(sa.select(TrialDetailRow).where(
                TrialDetailRow.study == study,
                TrialDetailRow.trial_number == trial_number)).scalar_one_or_none()
            return None if row is None else {"candidate": row.candidate, "layers": row.layers}
