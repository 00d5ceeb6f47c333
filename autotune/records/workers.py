"""Tuner processes in the records database: heartbeats and whether a claim's owner is alive.

Each process beats in ``pt_workers`` (epoch seconds) from a daemon thread;
another process reads the beat to decide whether a claim it meets is still
being worked on. The rule, in :meth:`WorkersMixin.is_alive`: dead when the
beat is older than ``worker_ttl_s`` seconds, or when the worker ran on this
host and its process is gone (the storage layer's liveness rule); a worker that
never beat counts as alive, and only its claim's expiry frees its work.

Thread safety: the heartbeat thread and the caller's threads each use their own
short sessions.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import sqlalchemy as sa

from autotune.records._base import RecordsBase
from autotune.records._schema import WorkerRow
from pattune_common.storage import process_gone, this_host


class WorkersMixin(RecordsBase):
    """Heartbeats and liveness of the processes sharing the records."""

    def heartbeat(self, info: dict[str, Any] | None = None) -> None:
        """Record that this process is alive (creates its worker row on first call)."""
        beat = time.time()
        with self.session() as s:
            row = s.get(WorkerRow, self.owner)
            if row is None:
                s.add(
                    WorkerRow(
                        owner=self.owner,
                        host=this_host(),
                        pid=os.getpid(),
                        heartbeat=beat,
                        info=info or {},
                    )
                )
            else:
                row.heartbeat = beat
                if info is not None:
                    row.info = info

    def start_heartbeat(self, interval_s: float = 10.0) -> None:
        """Beat from a daemon thread every ``interval_s`` until :meth:`stop_heartbeat`."""
        self.heartbeat()
        if self._beat_stop is not None:
            return
        stop = self._beat_stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.heartbeat()
                except sa.exc.SQLAlchemyError:  # a blip must not kill the tuner; next beat retries
                    continue

        threading.Thread(target=beat, name="pattune-heartbeat", daemon=True).start()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread and remove this worker's row."""
        if self._beat_stop is not None:
            self._beat_stop.set()
            self._beat_stop = None
        with self.session() as s:
            s.execute(sa.delete(WorkerRow).where(WorkerRow.owner == self.owner))

    def is_alive(self, owner: str) -> bool:
        """Whether ``owner`` (another worker) is still alive.

        Dead when its heartbeat is older than ``worker_ttl_s`` or, on this host,
        when its process no longer exists. A worker that never beat counts as
        alive (its claims still expire after ``claim_ttl_s``).
        """
        if owner == self.owner:
            return True
        with self.session() as s:
            row = s.get(WorkerRow, owner)
            if row is None:
                return True  # never beat: only its claim's expiry can free its work
            if time.time() - row.heartbeat > self.worker_ttl_s:
                return False
            return not process_gone(row.host, row.pid)
