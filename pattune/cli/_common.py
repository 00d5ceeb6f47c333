"""What every command shares: verbosity, consoles, tables that survive a pipe, JSON output.

Verbosity is set once per process by ``-q``/``-v``/``-vv`` (on the ``pattune`` group or
on any command) and read by the commands' progress displays; it also sets the level
of Python's logging, the one global setting the style guide allows. Without a flag,
the documented fallback ``PATTUNE_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``,
``ERROR``) sets the logging level.

JSON documents (``--json`` to stdout, ``--json-out PATH`` to a file) carry a
``schema`` name and a ``schema_version``; docs/cli.md lists the schemas.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import render
from rich.table import Table

QUIET, NORMAL, VERBOSE, DEBUG = 0, 1, 2, 3
_LEVELS = {QUIET: logging.ERROR, NORMAL: logging.WARNING, VERBOSE: logging.INFO,
           DEBUG: logging.DEBUG}
_state = {"verbosity": NORMAL, "explicit": False}

F = TypeVar("F", bound=Callable[..., Any])


def env_log_level() -> int | None:
    """The logging level ``PATTUNE_LOG_LEVEL`` names, or None when unset or unknown."""
    name = os.environ.get("PATTUNE_LOG_LEVEL", "").strip().upper()
    level = logging.getLevelName(name) if name else None
    return level if isinstance(level, int) else None


def set_verbosity(verbose: int, quiet: bool) -> None:
    """Apply ``-v`` (a count) and ``-q``, given on the group or the command: ``-q`` wins."""
    if not verbose and not quiet:
        return
    was_quiet = _state["explicit"] and _state["verbosity"] == QUIET
    if quiet or was_quiet:
        level = QUIET
    else:
        level = min(DEBUG, max(int(_state["verbosity"]), NORMAL + verbose))
    _state.update(verbosity=level, explicit=True)
    apply_log_level()


def apply_log_level() -> None:
    """Set logging (ours, Optuna's, paramiko's) from the verbosity or ``PATTUNE_LOG_LEVEL``."""
    v = int(_state["verbosity"])
    env = None if _state["explicit"] else env_log_level()
    level = env if env is not None else _LEVELS[v]
    logging.getLogger().setLevel(level)
    logging.getLogger("pattune").setLevel(level)
    if "optuna" in sys.modules:  # Optuna logs every trial at INFO through its own handler
        import optuna

        optuna.logging.set_verbosity(max(level, logging.WARNING) if v < VERBOSE and env is None
                                     else level)
    # Alembic announces each plugin and migration step at INFO: detail for -vv only.
    logging.getLogger("alembic").setLevel(level if level <= logging.DEBUG
                                          else max(level, logging.WARNING))
    # paramiko logs every refused channel and lost connection at ERROR, with tracebacks;
    # pattune reports those itself, once, in the job's record.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL if level > logging.DEBUG
                                           else logging.DEBUG)


def load_optuna() -> None:
    """Import Optuna now and give its logger the verbosity (it sets its own on import)."""
    import optuna  # noqa: F401

    apply_log_level()


def verbosity() -> int:
    """QUIET (0), NORMAL (1), VERBOSE (2) or DEBUG (3)."""
    return int(_state["verbosity"])


def reset_verbosity() -> None:
    """Back to NORMAL (each in-process run of the CLI starts afresh)."""
    _state.update(verbosity=NORMAL, explicit=False)


def debug_enabled() -> bool:
    """Whether tracebacks of internal errors are shown (``-vv`` or ``PATTUNE_LOG_LEVEL=DEBUG``)."""
    return logging.getLogger("pattune").getEffectiveLevel() <= logging.DEBUG


VerboseOpt = Annotated[int, typer.Option(
    "--verbose", "-v", count=True, help="More output: -v info logs, -vv debug logs and tracebacks.")]
QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Only results and errors: no progress, no per-trial lines.")]


def with_verbosity(fn: F) -> F:
    """Give a command the ``-v``/``-q`` options (Typer reads the signature this sets)."""
    sig = inspect.signature(fn)
    # Resolved here: the wrapper's signature is read as it is, not evaluated again.
    hints = typing.get_type_hints(fn, include_extras=True)
    extra = [inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=0,
                               annotation=VerboseOpt),
             inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False,
                               annotation=QuietOpt)]
    params = list(sig.parameters.values())
    # Keyword-only parameters after positional-or-keyword ones keep the signature valid.
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                        annotation=hints.get(p.name, p.annotation)) for p in params] + extra

    @functools.wraps(fn)
    def wrapper(*args: Any, verbose: int = 0, quiet: bool = False, **kwargs: Any) -> Any:
        set_verbosity(verbose, quiet)
        return fn(*args, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**hints, "verbose": VerboseOpt, "quiet": QuietOpt}
    return wrapper  # type: ignore[return-value]


# -- consoles and tables -----------------------------------------------------------------


def out_console() -> Console:
    """stdout; made afresh so a test's redirected stdout is the one written to."""
    return Console(file=sys.stdout, soft_wrap=True)


def err_console() -> Console:
    """stderr, as :func:`out_console`."""
    return Console(file=sys.stderr, soft_wrap=True)


def print_table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[str]],
                *, title: str | None = None, caption: str | None = None) -> None:
    """Rows under column names, through :func:`show_table`."""
    table = Table(*columns, title=title, caption=caption)
    for row in rows:
        table.add_row(*row)
    show_table(console, table)


def show_table(console: Console, table: Table) -> None:
    """A rich table on a terminal; plain tab-separated rows, never cut, anywhere else.

    Rich fits a table to the console's width (80 columns in a pipe) by cutting cells
    (``reacha…``); a log or a script needs every character, one row per line. The
    title and caption become ``# `` lines.
    """
    if console.is_terminal:
        console.print(table)
        return

    def plain(cell: Any) -> str:
        if isinstance(cell, str):
            text = render(cell).plain
        else:
            text = cell.plain if hasattr(cell, "plain") else str(cell)
        # one row per line, one cell per column, whatever a cell holds
        return " ".join(text.replace("\t", " ").splitlines())

    lines = [] if table.title is None else [f"# {plain(table.title)}"]
    if table.show_header:
        lines.append("\t".join(plain(c.header) for c in table.columns))
    cells = [list(c.cells) for c in table.columns]
    lines += ["\t".join(plain(col[i]) for col in cells) for i in range(table.row_count)]
    if table.caption is not None:
        lines.append(f"# {plain(table.caption)}")
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


# -- JSON --------------------------------------------------------------------------------

#: Every JSON document's schema name -> its version; docs/cli.md describes each one.
SCHEMAS = {
    "pattune.status": 1,
    "pattune.export": 1,
    "pattune.tune_summary": 1,
    "pattune.devices_list": 1,
    "pattune.devices_check": 1,
    "pattune.measure_summary": 1,
    "pattune.prune": 1,
    "pattune.patterns": 1,
    "pattune.bench_accuracy": 1,
    "pattune.bench_kernels": 1,
    "pattune.bench_network": 1,
    "pattune.bench_farm": 1,
    "pattune.bench_search": 1,
    "pattune.measurements": 1,
}

JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print the result as one JSON document on stdout (schema in docs/cli.md).")]
JsonOutOpt = Annotated[Path | None, typer.Option(
    "--json-out", help="Also write the result's JSON document to this file.")]


def document(schema: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` under its ``schema`` name and ``schema_version`` (first keys)."""
    from pattune_common.files import json_safe

    return {"schema": schema, "schema_version": SCHEMAS[schema], **json_safe(body)}


def check_json_out(path: Path | None, flag: str = "--json-out") -> None:
    """Refuse an unwritable output file before the work, not after it."""
    if path is not None:
        from pattune_common.files import check_output_file

        check_output_file(path, flag)


def emit_json(doc: dict[str, Any], *, to_stdout: bool, path: Path | None,
              what: str = "the JSON result") -> None:
    """Print ``doc`` on stdout (``--json``) and/or write it whole to ``path`` (``--json-out``)."""
    text = json.dumps(doc, indent=2, allow_nan=False)
    if path is not None:
        from pattune_common.files import write_text

        write_text(path, text + "\n", what=what)
    if to_stdout:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def deprecated(old: str, new: str) -> None:
    """One warning line on stderr for a flag kept as an alias (never with ``-q``)."""
    if verbosity() > QUIET:
        print(f"pattune: warning: {old} is deprecated; use {new}", file=sys.stderr)
