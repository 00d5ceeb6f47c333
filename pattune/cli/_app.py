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

from pattune_common import OutputError, PattuneError
from pattune_common.redaction import redact_text

app = typer.Typer(
    name="pattune",
    help="Tune pattern-pruned CNNs (PatDNN) for phone and board CPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: accuracy, kernels, network, farm, search.", no_args_is_help=True)
devices_app = typer.Typer(
    help="Inspect and trust the devices of an inventory.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
app.add_typer(devices_app, name="devices")

EXIT_USAGE = 2
#: A bug (EX_SOFTWARE of sysexits.h): not the user's input, not a failed write.
EXIT_INTERNAL = 70

# Typer 0.2x vendors its own click; find its exception base without naming the private module.
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def fail(message: str) -> None:
    """Raise the error the CLI prints as one line with exit code 2."""
    raise PattuneError(message)


def _one_line(exc: BaseException) -> str:
    """The first line of the error's text, any URL password hidden (messages may quote a
    driver's error, which may quote the URL)."""
    text = redact_text(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _log_level() -> int:
    name = os.environ.get("PATTUNE_LOG_LEVEL", "WARNING").upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.WARNING


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code.

    User errors (:class:`PattuneError`, ``ValueError``, ``TypeError`` raised on
    user input, bad flags, files that cannot be read or written) print
    ``pattune: error: <message>`` and return 2; an
    :class:`~pattune_common.OutputError` (work done, results not all written)
    returns 1. Anything else is a bug: one line naming it, exit code 70, and the
    traceback only with ``PATTUNE_LOG_LEVEL=DEBUG``. No path prints a traceback
    by default: users run pattune overnight and in batch, where one line per
    failure is what a log can be searched for.
    """
    # Training XGBoost with busy-waiting OpenMP threads can stall on 2 cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    level = _log_level()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if level > logging.DEBUG:
        # paramiko logs every refused channel and lost connection at ERROR, with
        # tracebacks; pattune reports those itself, once, in the job's record.
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    try:
        return _run(argv)
    except Exception as exc:  # noqa: BLE001  (the boundary: a bug, still one line)
        logging.getLogger("pattune").debug("internal error", exc_info=True)
        print(f"pattune: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
              "PATTUNE_LOG_LEVEL=DEBUG for the traceback, and please report it)",
              file=sys.stderr)
        return EXIT_INTERNAL


def _run(argv: list[str] | None) -> int:
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
        msg = redact_text(exc.format_message())  # type: ignore[attr-defined]
        print(f"pattune: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as exc:
        print(f"pattune: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except (PattuneError, ValueError, TypeError) as exc:
        print(f"pattune: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a file the user named: missing, a directory, unreadable
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"pattune: error: {redact_text(where)}{exc.strerror or _one_line(exc)}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pattune: interrupted", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0
