"""Build on this machine with the target's compiler, in parallel, content-addressed.

Each product lives in ``<cache>/<key[:2]>/<key>/`` where ``key`` is the sha256 of
source, compiler, flags and product kind; a second build of the same thing is a
directory lookup. The cache root is ``cache_dir`` or ``$PATTUNE_CACHE/builds``
or ``~/.cache/pattune/builds``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codegen._base import Builder, BuildInput, BuildResult, Product
from codegen.generator import GeneratedKernel
from codegen.target import Target


def default_cache_dir() -> Path:
    """``$PATTUNE_CACHE/builds`` or ``~/.cache/pattune/builds``."""
    root = os.environ.get("PATTUNE_CACHE")
    return Path(root) / "builds" if root else Path.home() / ".cache" / "pattune" / "builds"


def _first_error(stderr: str) -> str:
    """The compiler's first ``error:`` line, without the temporary directory."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for pattern in (" error: ", "error:", "error"):
        for ln in lines:
            if pattern in ln:
                return re.sub(r"^\S*/(kernel\.c:)", r"\1", ln)
    return lines[0] if lines else "compiler failed without a message"


def object_command(kernel: GeneratedKernel, target: Target, source: str | Path,
                   output: str | Path) -> list[str]:
    """The compile line of ``kernel``'s source as one object of a network build.

    ``-DPT_NO_SINGLE`` leaves out the single-layer ``pt_*`` entry points (each layer
    would define them), so the object defines only ``P_create``, ``P_run`` and
    ``P_destroy`` of its ``symbol_prefix``; ``-fPIC`` lets it go into a shared library
    too. Link the objects with ``-fopenmp`` when any kernel has ``threads > 1``, and
    ``-lm``.
    """
    cmd = [target.cc, *target.compile_flags()]
    if kernel.threads > 1:
        cmd.append("-fopenmp")
    return cmd + ["-DPT_NO_SINGLE", "-fPIC", "-c", "-o", str(output), str(source)]


def executable_command(target: Target, source: str | Path, output: str | Path, *,
                       openmp: bool = False, defines: tuple[str, ...] = ()) -> list[str]:
    """The compile-and-link line of a standalone program for ``target`` (its flags,
    ``-fopenmp`` when asked, its link flags, ``-static`` where it links statically)."""
    cmd = [target.cc, *target.compile_flags(), *(["-fopenmp"] if openmp else []), *defines,
           "-o", str(output), str(source), *target.ldflags]
    return cmd + (["-static"] if target.static else []) + ["-lm"]


class LocalBuilder(Builder):
    """Compile with ``target.cc`` here; ``workers`` compiles at once.

    Args:
        workers: Parallel compiler processes (default: CPU count).
        cache_dir: Cache root (default :func:`default_cache_dir`).
        timeout_s: Seconds one compile may take before it fails as ``build: timeout``.
    """

    def __init__(self, *, workers: int | None = None, cache_dir: str | Path | None = None,
                 timeout_s: float = 300.0) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.timeout_s = timeout_s

    def build(self, inputs: list[BuildInput]) -> list[BuildResult]:
        """Build every input in parallel; see :class:`Builder`."""
        if not inputs:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(inputs))) as pool:
            return list(pool.map(self._build_one, inputs))

    def _command(self, inp: BuildInput, product: Product, src: Path, out: Path) -> list[str]:
        t, openmp = inp.target, inp.kernel.threads > 1
        if product is not Product.LIBRARY:
            return executable_command(t, src, out, openmp=openmp, defines=("-DPT_MAIN",))
        return [t.cc, *t.compile_flags(), *(["-fopenmp"] if openmp else []), "-shared",
                "-fPIC", "-fvisibility=hidden", "-o", str(out), str(src), "-lm"]

    def _key(self, inp: BuildInput, product: Product) -> str:
        h = hashlib.sha256()
        for part in (inp.kernel.source, inp.target.cc, " ".join(inp.target.compile_flags()),
                     " ".join(inp.target.ldflags), str(inp.target.static),
                     str(inp.kernel.threads), product.value):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def _build_product(self, inp: BuildInput, product: Product) -> tuple[Path, bool, float, str]:
        key = self._key(inp, product)
        d = self.cache_dir / key[:2] / key
        out = d / ("kernel.so" if product is Product.LIBRARY else "kernel")
        if out.is_file():
            return out, True, 0.0, ""
        tmp = d.with_name(f"{key}.tmp{os.getpid()}_{time.monotonic_ns()}")
        tmp.mkdir(parents=True, exist_ok=True)
        src = tmp / "kernel.c"
        src.write_text(inp.kernel.source)
        tmp_out = tmp / out.name
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(self._command(inp, product, src, tmp_out), capture_output=True,
                                  text=True, timeout=self.timeout_s, check=False,
                                  env={**os.environ, "LC_ALL": "C"})
        except subprocess.TimeoutExpired:
            shutil.rmtree(tmp, ignore_errors=True)
            return out, False, self.timeout_s, f"build: timeout after {self.timeout_s:g} s"
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            return out, False, 0.0, f"build: cannot run compiler {inp.target.cc!r}: {exc}"
        secs = time.perf_counter() - t0
        if proc.returncode != 0 or not tmp_out.is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            return out, False, secs, f"build: {inp.kernel.name}: {_first_error(proc.stderr)}"
        try:
            tmp.rename(d)
        except OSError:  # another process finished the same key first
            shutil.rmtree(tmp, ignore_errors=True)
        return out, False, secs, ""

    def _build_one(self, inp: BuildInput) -> BuildResult:
        paths: dict[str, str] = {}
        total, all_cached = 0.0, True
        for product in inp.products:
            out, cached, secs, err = self._build_product(inp, product)
            total += secs
            all_cached &= cached
            if err:
                return BuildResult(name=inp.kernel.name, seconds=total, error=err)
            paths[product.value] = str(out)
        wkey = hashlib.sha256(inp.kernel.weights).hexdigest()
        wdir = self.cache_dir / "weights" / wkey[:2]
        wdir.mkdir(parents=True, exist_ok=True)
        wpath = wdir / f"{wkey}.bin"
        if not wpath.is_file():
            tmpw = wpath.with_name(f"{wkey}.{os.getpid()}_{time.monotonic_ns()}")
            tmpw.write_bytes(inp.kernel.weights)
            tmpw.replace(wpath)
        first = Path(next(iter(paths.values())))
        return BuildResult(
            name=inp.kernel.name, executable=paths.get("exe", ""), library=paths.get("lib", ""),
            weights=str(wpath), source=str(first.parent / "kernel.c"),
            key=self._key(inp, inp.products[0]), seconds=total, cached=all_cached,
        )
