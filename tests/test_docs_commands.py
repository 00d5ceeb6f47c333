"""Every ``pattune`` command in the README and docs/ works as written.

Each command line of a shell block is classified below: **run** (it needs no remote
device and little time: run as written in a fresh copy of the repository, exit 0) or
**parse** (it needs a device on the network, a user's own file, or hours: its flags
and values must parse with today's CLI, and the files it reads must exist in the
repository). A command the table does not know fails the test, so a new one in the
docs gets classified when it is written.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tune.support import SPACE, env

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Run as written, in this order (status and export read what the tiny tune left).
RUN = [
    "pattune devices list --inventory examples/devices.toml",
    "pattune patterns",
    "pattune patterns --model resnet18-cifar -k 8",
    "pattune prune --model resnet18-cifar --out out/r18",
    "pattune status",
    "pattune export --out out/best",
]
# Parsed only, with why.
PARSE = {
    "pattune tune --trials 30 --timeout 8h": "hours of tuning",
    "pattune tune --trials 30": "hours of tuning",
    "pattune dashboard": "a server that runs until stopped (tests/test_tune_dashboard.py)",
    "pattune devices check --inventory examples/devices.toml": "the example's devices",
    "pattune measure --inventory examples/devices.toml --device-type pixel3-big --jobs "
    "jobs.jsonl --out results.jsonl": "the example's devices and the user's jobs",
    "pattune prune --model vgg16 --patterns 8 --connectivity 3.6x --out out/vgg16":
        "writes VGG-16's 0.5 GB of weights",
    "pattune devices list [-i examples/devices.toml] [--storage URL] [--json]": "synopsis",
    "pattune devices check [-i examples/devices.toml] [NAME...] [--json] [--storage URL]":
        "synopsis",
    "pattune devices trust NAME -i examples/devices.toml [--replace]": "synopsis",
    "pattune devices clean NAME -i examples/devices.toml": "synopsis",
    "pattune measure --inventory examples/devices.toml --device-type T --jobs jobs.jsonl "
    "--out results.jsonl [--storage URL]": "synopsis",
    "pattune bench farm --json-out out.json": "minutes of SSH measurement",
    "pattune prune --out out/example": "trains the example network (minutes)",
    "pattune prune --model mypkg.nets:make_net --input-shape 1,3,224,224 --evaluate "
    "mypkg.nets:accuracy --patterns 6 --connectivity 0.5 --out out/mine": "the user's model",
    "pattune prune --model net.pt --input-shape 1,3,32,32 --pattern-set "
    "1,3,4,5/1,4,5,7/3,4,5,7/4,5,7,8": "the user's own TorchScript file",
    "pattune bench accuracy --json-out acc.json [--quick]": "trains the example (minutes)",
    "pattune record --out data/measurements/vgg16-imagenet-k8-c3.6x.json.gz --passes 4":
        "hours of measurement",
    "pattune bench search --json-out out/search.json": "minutes of replay",
}
#: Flags whose value is a file the command reads: it must be in the repository.
INPUTS = ("--inventory", "-i", "--space", "--set")


def doc_commands() -> dict[str, list[str]]:
    """Command line (comments, continuations and synopsis spacing folded) -> files."""
    found: dict[str, list[str]] = {}
    for path in DOCS:
        for block in re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", path.read_text(),
                                re.S):
            text = re.sub(r"\\\n\s*", " ", block)
            for line in text.splitlines():
                line = line.split(" # ")[0].strip()
                if line.startswith("pattune "):
                    found.setdefault(" ".join(line.split()), []).append(path.name)
    return found


def _argv(line: str) -> list[str]:
    """The words of a line, a synopsis's [optional] parts taken and NAME... as NAME."""
    return [w for w in shlex.split(line.replace("[", "").replace("]", ""))[1:]
            if w != "NAME..."]


def _parse(argv: list[str]) -> None:
    from typer.main import get_command

    import pattune.cli._register  # noqa: F401
    from pattune.cli._app import app
    from pattune.cli._argv import normalise

    cmd = get_command(app)
    args, _ = normalise(argv)
    ctx = cmd.make_context("pattune", args)
    while hasattr(cmd, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]  # type: ignore[attr-defined]
        _, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(cmd.name, rest, parent=ctx)


def test_every_doc_command_is_classified_and_parses() -> None:
    found = doc_commands()
    unknown = sorted(set(found) - set(RUN) - set(PARSE))
    assert not unknown, f"classify these doc commands in RUN or PARSE: {unknown}"
    stale = sorted((set(RUN) | set(PARSE)) - set(found))
    assert not stale, f"no longer in the docs: {stale}"
    for line in found:
        argv = _argv(line)
        _parse(argv)
        for i, word in enumerate(argv[:-1]):
            if word in INPUTS:
                assert (ROOT / argv[i + 1]).is_file(), f"{line}: {argv[i + 1]} is not shipped"


def _fresh_copy(dest: Path) -> Path:
    """The repository's files as a clone has them (tracked and new, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.timeout(1500)
def test_doc_commands_that_need_no_device_run_as_written(tmp_path: Path) -> None:
    repo = _fresh_copy(tmp_path / "clone")
    # What `pattune status` and `pattune export` read: a study in the default storage,
    # tuned here briefly on a tiny model (the docs' `pattune tune` runs for hours).
    (repo / "space.toml").write_text(SPACE)
    prep = subprocess.run([sys.executable, "-m", "pattune", "-q", "tune", "--model",
                           "tests.tune.tiny:tiny_bn", "--input-shape", "1,1,12,12",
                           "--trials", "2", "--space", "space.toml"], cwd=repo, env=env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert prep.returncode == 0, prep.stderr
    for line in RUN:
        r = subprocess.run([sys.executable, "-m", "pattune", *_argv(line)], cwd=repo,
                           env={**env(), "PYTHONPATH": str(repo)}, capture_output=True,
                           text=True, timeout=600, check=False)
        assert r.returncode == 0, (line, r.stdout[-1500:], r.stderr[-1500:])
        assert "Traceback" not in r.stderr, line
    assert (repo / "out" / "best" / "config.json").is_file()
    assert (repo / "out" / "r18" / "report.json").is_file()
