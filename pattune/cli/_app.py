"""The ``pattune`` command line: one Typer app with sub-apps, and the error boundary.

Each command group lives in its own module (``prune_cmd``, ``kernels_cmd``,
``farm_cmd``, ``tune_cmd``, ``search_cmd``) and registers itself on the apps
defined here. :func:`main` is the console script: it turns user errors into one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from pattune_common import PattuneError

app = typer.Typer(
    name="pattune",
    help="Tune pattern-pruned CNNs (PatDNN) for phone and board CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: accuracy, kernels, farm, search.", no_args_is_help=True)
devices_app = typer.Typer(
    help="Inspect and trust the devices of an inventory.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
app.add_typer(devices_app, name="devices")

EXIT_USAGE = 2

# Typer 0.2x vendors its own click; find its exception base without naming the private module.
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def fail(message: str) -> None:
    """Raise the error the CLI prints as one line with exit code 2."""
    raise PattuneError(message)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code.

    User errors (:class:`PattuneError`, ``ValueError``, ``TypeError`` raised on
    user input, bad flags) print ``pattune: error: <message>`` and return 2.
    """
    # Training XGBoost with busy-waiting OpenMP threads can stall on 2 cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    logging.basicConfig(
        level=os.environ.get("PATTUNE_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # paramiko logs every refused channel and lost connection at ERROR, with
        # tracebacks; pattune reports those itself, once, in the job's record.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    from pattune.cli import _register  # noqa: F401  (registers every command group)

    try:
        result = app(args=argv, standalone_mode=False, prog_name="pattune")
    except typer.Abort:
        print("pattune: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except _ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            return EXIT_USAGE  # click has already printed the help
        print(f"pattune: error: {exc.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        return EXIT_USAGE
    except (PattuneError, ValueError, TypeError, FileNotFoundError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"pattune: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pattune: interrupted", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0
