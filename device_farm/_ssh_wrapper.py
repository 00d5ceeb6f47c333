"""The POSIX-sh wrapper every remote command runs in, and how its answers are read.

One ``exec`` does a job's whole remote side: it stores a file sent on stdin in
the content store (at most one per command, the artifact's new build), links
the artifact's files into its directory, changes into it, sets the
environment, times the program with the device's clock and reports how it
ended. Before, each of those was its own command and round trip.

What the wrapper says, it says on stderr, in lines that start with
``@PATTUNE``. Its first line is ``@PATTUNE pid <pid>`` (the PID is also the
process group, as sshd starts each session with ``setsid``: a timeout kills
the group). Its second is ``@PATTUNE go`` (the program starts now) or
``@PATTUNE fail <what> <detail>`` (the program never ran). The program only
starts after both are written and every command before it has its stderr
redirected, so a program cannot fake them, however it writes to stderr. The
last line, ``@PATTUNE t <start ns> <end ns> <exit code>``, carries the
device-side times.

Every argument is ``shlex.quote``-d and reaches the script as ``"$@"``; names
and environment keys are checked (:mod:`device_farm._checks`) before they get
here, and ``export "NAME=value"`` of a checked name cannot be read as an option.
The program and its children carry ``PATTUNE_RUN=<nonce>`` in their
environment, so a timeout kills even those that left the process group with
``setsid`` (:data:`KILL`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from device_farm._checks import check_env, check_texts

__all__ = ["KILL", "WRAPPER", "Head", "Prep", "Upload", "command", "kill_command", "parse_head",
           "split_trailer"]

WRAPPER = r"""echo "@PATTUNE pid $$" >&2
c=$1 n=$2 w=$3 u=$4 a=$5 l=$6; shift 6
if [ -n "$u" ]; then
  s=${u%%:*} z=${u#*:}; m=${z#*:} z=${z%%:*}; t="$w/tmp/$s.$n.part"
  if [ -f "$w/cas/$s" ] && [ $(($(wc -c <"$w/cas/$s"))) -eq "$z" ]; then cat >/dev/null
  else
    e=$( { mkdir -p "$w/cas" "$w/tmp" && cat >"$t"; } 2>&1 ) || {
      rm -f "$t"; printf '@PATTUNE fail upload %s\n' "$e" | head -n 1 >&2; exit 125; }
    [ $(($(wc -c <"$t"))) -eq "$z" ] || { rm -f "$t"; echo '@PATTUNE fail upload cut short' >&2; exit 125; }
    e=$( { chmod "$m" "$t" && mv -f "$t" "$w/cas/$s"; } 2>&1 ) || {
      rm -f "$t"; printf '@PATTUNE fail upload %s\n' "$e" | head -n 1 >&2; exit 125; }
  fi
fi
exec </dev/null
if [ -n "$a" ] && [ ! -d "$a" ]; then
  t="$w/tmp/a.$n" x=; i=0
  mkdir -p "$t" "$w/a" 2>/dev/null || { echo '@PATTUNE fail link cannot create a directory' >&2; exit 125; }
  while [ $i -lt "$l" ]; do
    [ -f "$w/cas/$2" ] || x="$x $2"
    ln -s "../../cas/$2" "$t/$1" 2>/dev/null
    shift 2; i=$((i+1))
  done
  if [ -n "$x" ]; then rm -rf "$t"; echo "@PATTUNE fail missing$x" >&2; exit 125; fi
  { mv -T "$t" "$a" || [ -d "$a" ] || mv "$t" "$a"; } 2>/dev/null; rm -rf "$t"
  [ -d "$a" ] || { echo '@PATTUNE fail link cannot move the directory' >&2; exit 125; }
else shift $((2*l)); fi
[ -z "$c" ] || cd "$c" 2>/dev/null || { echo '@PATTUNE fail nodir' >&2; exit 125; }
echo '@PATTUNE go' >&2
e=$1; shift
s=$(date +%s%N 2>/dev/null)
( i=0; while [ $i -lt "$e" ]; do export "$1"; shift; i=$((i+1)); done
  export PATTUNE_RUN="$n"; exec "$@" )
r=$?; t=$(date +%s%N 2>/dev/null)
printf '\n@PATTUNE t %s %s %s\n' "$s" "$t" "$r" >&2; exit $r"""

# Pairs of (process group, nonce): kill the group if our wrapper still leads it (PIDs
# mean other programs after a reboot), then every process whose environment carries the
# nonce, a few times over, for children that escaped the group with setsid or forked on.
# `kill -s KILL -- -G` is POSIX (dash has no `kill -KILL -- -G`); `-9 -G` is the fallback
# of shells without `--`.
KILL = r"""while [ $# -gt 1 ]; do
  g=$1 n=$2; shift 2
  grep -q '@PATTUNE' /proc/$g/cmdline 2>/dev/null &&
    { kill -s KILL -- -$g || kill -9 -$g; } 2>/dev/null
  for i in 1 2 3; do
    p=$(grep -l "PATTUNE_RUN=$n" /proc/[0-9]*/environ 2>/dev/null); [ -n "$p" ] || break
    for f in $p; do f=${f#/proc/}; kill -KILL "${f%/environ}" 2>/dev/null; done
  done
done; true"""

_PID = re.compile(rb"@PATTUNE pid (\d+)\n")
_GO = re.compile(rb"@PATTUNE pid (\d+)\n@PATTUNE go\n")
_FAIL = re.compile(rb"@PATTUNE pid (\d+)\n@PATTUNE fail ([a-z]+) ?([^\n]*)\n")
_TRAILER = re.compile(rb"\n@PATTUNE t (\S*) (\S*) (\d+)\n$")
_NONCE = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class Upload:
    """A file the command stores in the content store from its stdin."""

    sha256: str
    size: int
    executable: bool


@dataclass(frozen=True)
class Prep:
    """What a command does before the program: an upload, the artifact's directory.

    Attributes:
        work_dir: The device's work dir.
        artifact_dir: Directory to create from ``links`` if it does not exist ("": none).
        links: ``(name, sha256)`` of each file of the artifact.
        upload: The file sent on stdin, or None.
    """

    work_dir: str = ""
    artifact_dir: str = ""
    links: tuple[tuple[str, str], ...] = ()
    upload: Upload | None = None


def command(argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str] | None,
            nonce: str, prep: Prep | None = None) -> str:
    """The remote command line: ``exec sh -c WRAPPER sh ARGS...``, every argument quoted."""
    if not _NONCE.fullmatch(nonce):
        raise ValueError(f"nonce must be 8-64 lowercase hex digits; got {nonce!r}")
    pairs = check_env("env", dict(env or {}))
    words = check_texts("argv", list(argv))
    p = prep or Prep()
    up = p.upload
    spec = f"{up.sha256}:{up.size}:{755 if up.executable else 644}" if up else ""
    args = [cwd or "", nonce, p.work_dir, spec, p.artifact_dir, str(len(p.links))]
    for name, sha in p.links:
        args += [name, sha]
    args += [str(len(pairs)), *(f"{k}={v}" for k, v in pairs), *words]
    return " ".join(["exec", "sh", "-c", shlex.quote(WRAPPER), "sh",
                     *(shlex.quote(a) for a in args)])


def kill_command(groups: Sequence[tuple[int, str]]) -> str:
    """The command that kills each ``(process group, nonce)`` of :data:`KILL`."""
    args = [str(x) for g, n in groups for x in (int(g), n) if _NONCE.fullmatch(n)]
    return " ".join(["exec", "sh", "-c", shlex.quote(KILL), "sh", *args])


@dataclass(frozen=True)
class Head:
    """The wrapper's first stderr lines, read.

    Attributes:
        pid: The wrapper's process group, once it has said so, else None.
        started: Whether the program started (``@PATTUNE go``).
        fail: What failed before the program could start (``upload``, ``missing``,
            ``link``, ``nodir``), else "".
        detail: The failure's words (the missing sha256s, the upload's error).
    """

    pid: int | None = None
    started: bool = False
    fail: str = ""
    detail: str = ""


def parse_head(head: bytes) -> Head:
    """Read the wrapper's first lines; only lines at the very start of stderr count."""
    m = _GO.match(head)
    if m:
        return Head(pid=int(m.group(1)), started=True)
    m = _FAIL.match(head)
    if m:
        return Head(pid=int(m.group(1)), fail=m.group(2).decode(),
                    detail=m.group(3).decode("utf-8", "replace"))
    m = _PID.match(head)
    return Head(pid=int(m.group(1))) if m else Head()


def split_trailer(stderr: bytes) -> tuple[bytes, float | None]:
    """Stderr without the wrapper's lines, and the device-side wall time if it had one.

    The time is None when the device's ``date`` does not know ``%N`` (it then prints
    ``%N`` or seconds only): the host's own wall time is used instead.
    """
    m = _GO.match(stderr) or _FAIL.match(stderr) or _PID.match(stderr)
    if m:
        stderr = stderr[m.end():]
    t = _TRAILER.search(stderr)
    if not t:
        return stderr, None
    start, end = t.group(1), t.group(2)
    stderr = stderr[: t.start()]
    if start.isdigit() and end.isdigit() and len(start) > 12:
        return stderr, (int(end) - int(start)) / 1e9
    return stderr, None
