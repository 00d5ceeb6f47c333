"""``pattune dashboard``: optuna-dashboard on a study's storage (:func:`pattune.dashboard`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pattune.cli._app import app
from pattune.cli._common import QUIET, load_optuna, verbosity
from pattune.cli._options import StorageOpt
from pattune_common import DEFAULT_STORAGE


@app.command("dashboard")
def dashboard_cmd(
    storage: StorageOpt = DEFAULT_STORAGE,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on (the dashboard has no login).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port.")] = 8080,
) -> None:
    """Serve optuna-dashboard on the study's storage until Ctrl-C (needs the dashboard extra)."""
    import pattune
    from pattune_common.storage import redact_url

    load_optuna()

    def announce(url: str) -> None:
        if verbosity() > QUIET:
            print(f"pattune: optuna-dashboard for {redact_url(storage)} on {url} (Ctrl-C "
                  "stops it)", file=sys.stderr, flush=True)

    pattune.dashboard(storage=storage, host=host, port=port, on_start=announce)
