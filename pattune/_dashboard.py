"""``pattune.dashboard``: serve a study's storage in optuna-dashboard (an optional extra).

optuna-dashboard reads the same Optuna tables ``pattune tune`` writes: the objectives
under their metric names (``latency_ms``, ``accuracy``), K and the keep fractions as
numeric parameters (:mod:`search_spaces.encoding`), the short scalar trial attributes.
Install it with ``pip install 'pattune[dashboard]'``.
"""

from __future__ import annotations

from collections.abc import Callable

from pattune._args import in_range
from pattune_common import DEFAULT_STORAGE, UserInputError
from pattune_common.storage import require_existing

INSTALL_HINT = "pip install 'pattune[dashboard]' (or pip install optuna-dashboard)"


def dashboard(*, storage: str = DEFAULT_STORAGE, host: str = "127.0.0.1",
              port: int = 8080, on_start: Callable[[str], None] | None = None) -> None:
    """Serve optuna-dashboard on ``host:port`` for every study in ``storage``; blocks.

    Args:
        storage: The study's storage URL (it must exist: nothing is created).
        host: Address to listen on (``127.0.0.1``: this machine only; the dashboard
            has no login, so listen wider only on a trusted network).
        port: TCP port (1-65535).
        on_start: Called with the dashboard's URL once the storage is open, just before
            the server starts.

    Raises:
        UserInputError: optuna-dashboard is not installed, the storage does not exist,
            or the port is out of range.
    """
    in_range("--port", port, low=1, high=65535)
    try:
        import optuna_dashboard
    except ImportError:
        raise UserInputError(f"pattune dashboard needs optuna-dashboard: {INSTALL_HINT}") from None
    from autotune.records import RecordsDB

    require_existing(storage)
    optuna_storage = RecordsDB(storage).optuna_storage()
    if on_start is not None:
        on_start(f"http://{host}:{port}/")
    optuna_dashboard.run_server(optuna_storage, host=host, port=port)


__all__ = ["dashboard"]
