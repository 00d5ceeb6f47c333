"""The options several commands take, defined once so they read the same everywhere.

One name and one short form per meaning: ``--model/-m``, ``--out/-o``,
``--inventory/-i`` (a path), ``--device-type/-t``, ``--storage/-s`` (a database URL;
the farm's commands also accept their older ``--db``), ``--study``, ``--patterns/-k``,
``--seed``, ``--json``/``--json-out`` (see :mod:`pattune.cli._common`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StorageOpt = Annotated[str, typer.Option(
    "--storage", "-s", help="Study + records URL: sqlite:///FILE or postgresql://...")]
StudyOpt = Annotated[str, typer.Option("--study", help="Study name; the same name resumes it.")]
InventoryOpt = Annotated[Path | None, typer.Option(
    "--inventory", "-i", help="Inventory TOML of SSH devices (default: only the local device).")]
DeviceTypeOpt = Annotated[str, typer.Option(
    "--device-type", "-t", help="Device type to tune or measure on (local: this machine).")]
ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="example, a built-in name, package.module:factory or a TorchScript "
    "file.")]
PatternsOpt = Annotated[int, typer.Option(
    "--patterns", "-k", help="K: patterns in the (natural top-K) pattern set.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]
LeaseDbOpt = Annotated[str | None, typer.Option(
    "--storage", "--db", "-s", help="Lease database URL (leases, quarantines).")]
