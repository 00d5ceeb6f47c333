"""``pattune measurements``: the kernel-level measurements behind a study's trials."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.markup import escape

from pattune.cli._app import app
from pattune.cli._common import (
    JsonOpt,
    JsonOutOpt,
    check_json_out,
    document,
    emit_json,
    out_console,
    print_table,
)
from pattune.cli._options import DeviceTypeOpt, StorageOpt
from pattune_common import DEFAULT_STORAGE


def _config_text(config: dict[str, object]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


@app.command("measurements")
def measurements_cmd(
    storage: StorageOpt = DEFAULT_STORAGE,
    device_type: DeviceTypeOpt = "local",
    status: Annotated[str | None, typer.Option(
        "--status", help="Only done, failed or claimed measurements.")] = None,
    json_: JsonOpt = False,
    json_out: JsonOutOpt = None,
) -> None:
    """List every kernel measurement of a device type: layer, KernelConfig, latency, status."""
    import pattune

    check_json_out(json_out)
    rows = pattune.measurements(storage=storage, device_type=device_type, status=status)
    emit_json(document("pattune.measurements", {
        "device_type": device_type, "measurements": [dataclasses.asdict(m) for m in rows]}),
        to_stdout=json_, path=json_out)
    if json_:
        return
    print_table(out_console(), ["layer", "status", "latency (ms)", "predicted (ms)", "device",
                                "config", "error"],
                [[m.layer, m.status, "-" if m.latency_ms is None else f"{m.latency_ms:.4g}",
                  "-" if m.predicted_ms is None else f"{m.predicted_ms:.4g}", m.device or "-",
                  _config_text(m.config), escape(m.error or "")] for m in rows],
                title=f"kernel measurements on device type {device_type}")
