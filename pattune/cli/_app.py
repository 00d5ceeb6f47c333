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
from collections.abc import Callable
from typing import Annotated, Any

import typer

from pattune.cli._argv import normalise
from pattune.cli._common import (
    QUIET,
    QuietOpt,
    VerboseOpt,
    apply_log_level,
    debug_enabled,
    env_log_level,
    reset_verbosity,
    set_verbosity,
    verbosity,
    with_verbosity,
)
from pattune_common import OutputError, PattuneError
from pattune_common.redaction import redact_text


class _Typer(typer.Typer):
    """A Typer app whose every command takes ``-v``/``-q`` (:func:`with_verbosity`)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)
        return lambda fn: register(with_verbosity(fn))


app = _Typer(
    name="pattune",
    help="Tune pattern-pruned CNNs (PatDNN) for phone and board CPUs.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
bench_app = _Typer(help="Benchmarks: accuracy, kernels, network, farm, search.", no_args_is_help=True)
devices_app = _Typer(
    help="Inspect and trust the devices of an inventory.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
app.add_typer(devices_app, name="devices")


def _show_version(value: bool) -> None:
    if value:
        from pattune import __version__

        print(f"pattune {__version__}")
        raise typer.Exit(0)


@app.callback()
def _group(
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Tune pattern-pruned CNNs (PatDNN) for phone and board CPUs.

    -v/-q work here and on every command; --json prints a command's result as JSON.
    """
    set_verbosity(verbose, quiet)


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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code.

    User errors (:class:`PattuneError`, ``ValueError``, ``TypeError`` raised on
    user input, bad flags, files that cannot be read or written) print
    ``pattune: error: <message>`` and return 2; an
    :class:`~pattune_common.OutputError` (work done, results not all written)
    returns 1. Anything else is a bug: one line naming it, exit code 70, and the
    traceback only with ``-vv`` (or ``PATTUNE_LOG_LEVEL=DEBUG``). No path prints a traceback
    by default: users run pattune overnight and in batch, where one line per
    failure is what a log can be searched for.
    """
    # Training XGBoost with busy-waiting OpenMP threads can stall on 2 cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    reset_verbosity()
    env = env_log_level()
    logging.basicConfig(level=logging.WARNING if env is None else env,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    apply_log_level()
    try:
        return _run(argv)
    except Exception as exc:  # noqa: BLE001  (the boundary: a bug, still one line)
        if debug_enabled():
            logging.getLogger("pattune").exception("internal error")
        print(f"pattune: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
              "-vv for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def _run(argv: list[str] | None) -> int:
    from pattune.cli import _register  # noqa: F401  (registers every command group)

    args, notes = normalise(sys.argv[1:] if argv is None else list(argv))
    try:
        result = app(args=args, standalone_mode=False, prog_name="pattune")
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
    for note in notes if verbosity() > QUIET else ():  # after the work: an error stays one line
        print(f"pattune: warning: {note}", file=sys.stderr)
    return int(result) if isinstance(result, int) else 0
