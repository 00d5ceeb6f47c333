"""The ``pattune`` console script."""

from __future__ import annotations

import sys

from pattune.cli._app import app, bench_app, devices_app, fail
from pattune.cli._app import main as _main

__all__ = ["app", "bench_app", "devices_app", "fail", "main"]


def main() -> None:
    """Console-script entry point."""
    sys.exit(_main(sys.argv[1:]))
