"""Flags kept as deprecated aliases, rewritten to today's names before parsing.

Before the one JSON convention (``--json`` prints to stdout, ``--json-out PATH``
writes a file), ``prune`` and every ``bench`` command took ``--json PATH`` and
``tune`` took ``--summary-json PATH``. Scripts written then keep working: on those
commands a ``--json`` followed by a value (``--json out.json`` or ``--json=out.json``)
is ``--json-out out.json``, and ``--summary-json`` is ``--json-out``; each use adds
a note that :func:`pattune.cli._app.main` prints as a warning line once the command
has succeeded (an error stays one line). Those commands take no positional
argument, so a word after ``--json`` can only be the old path.
"""

from __future__ import annotations

#: Commands whose ``--json`` took a path, as (command, subcommand or "").
_JSON_PATH = {("prune", ""), ("bench", "accuracy"), ("bench", "kernels"), ("bench", "farm"),
              ("bench", "search")}
_RENAMED = {("tune", ""): {"--summary-json": "--json-out"}}


def _command(argv: list[str]) -> tuple[tuple[str, str], int]:
    """The (command, subcommand) and the index after it; options before it are the group's."""
    words = [(i, a) for i, a in enumerate(argv) if not a.startswith("-")]
    if not words:
        return ("", ""), len(argv)
    i, cmd = words[0]
    if cmd in ("bench", "devices") and len(words) > 1 and words[1][0] == i + 1:
        return (cmd, words[1][1]), i + 2
    return (cmd, ""), i + 1


def normalise(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with deprecated flags renamed, and a note for each one renamed."""
    cmd, start = _command(argv)
    out, notes = list(argv[:start]), []
    rest = argv[start:]
    renamed = _RENAMED.get(cmd, {})
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--":
            out += rest[i:]
            break
        name, eq, value = a.partition("=")
        if name in renamed:
            out.append(renamed[name] + eq + value)
            notes.append(f"{name} is deprecated; use {renamed[name]}")
        elif cmd in _JSON_PATH and name == "--json" and (
                eq or (i + 1 < len(rest) and not rest[i + 1].startswith("-"))):
            if eq:
                out.append(f"--json-out={value}")
            else:
                out += ["--json-out", rest[i + 1]]
                i += 1
            notes.append("--json PATH is deprecated; use --json-out PATH (--json alone "
                         "prints the JSON on stdout)")
        else:
            out.append(a)
        i += 1
    return out, notes


__all__ = ["normalise"]
