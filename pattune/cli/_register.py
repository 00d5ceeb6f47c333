"""Import every command module so its commands register on the shared apps."""

from __future__ import annotations

import importlib

# One module per command group; each owner edits only its own module.
_MODULES = ("prune_cmd", "kernels_cmd", "farm_cmd", "tune_cmd", "search_cmd", "network_cmd",
            "dashboard_cmd", "measurements_cmd")

for _name in _MODULES:
    importlib.import_module(f"pattune.cli.{_name}")
