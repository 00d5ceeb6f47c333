"""Compile a network folder for a target: objects (cached), static and shared library, run_model.

The commands are the Makefile's (:func:`.templates.makefile`), run from Python so a
build needs no ``make`` and its objects are cached by content, as
:class:`codegen.LocalBuilder` caches kernels: ``<cache>/network/<key[:2]>/<key>.o`` with
``key`` the sha256 of the unit's source, the headers, compiler and flags. A second build
of an unchanged layer is a copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from codegen.local_builder import default_cache_dir
from codegen.network.templates import LIBRARY
from codegen.target import Target
from pattune_common import Record

#: What :func:`compile_network` can build.
PRODUCTS = ("static", "shared", "run_model")
_HEADERS = ("pattune_model.h", "pt_network_ops.h", "pt_network_runtime.h")


@dataclass(frozen=True)
class NetworkProducts(Record):
    """Paths of a network's built products, or an error; never both.

    Attributes:
        static_library: ``libpattune_model.a`` ("" when not built).
        shared_library: ``libpattune_model.so`` ("" when not built).
        run_model: The timing program ("" when not built).
        seconds: Wall time spent compiling and linking.
        cached_objects: Objects that came from the cache.
        error: ``"build: ..."`` with the compiler's first error line, else "".
    """

    static_library: str = ""
    shared_library: str = ""
    run_model: str = ""
    seconds: float = 0.0
    cached_objects: int = 0
    error: str = ""

    schema = "network_products"

    def __post_init__(self) -> None:
        if self.error and (self.static_library or self.shared_library or self.run_model):
            raise ValueError("NetworkProducts holds either products or an error, never both")

    @property
    def ok(self) -> bool:
        """True when the build succeeded."""
        return not self.error


class _BuildFailed(Exception):
    pass


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln:
            return ln
    return lines[0] if lines else "the compiler failed without a message"


def _tool(cc: str, tool: str) -> str:
    """``ar`` of the toolchain of ``cc``: ``gcc-ar`` for gcc, ``aarch64-linux-gnu-gcc-ar`` ..."""
    return f"{cc}-{tool}" if cc.endswith("gcc") and shutil.which(f"{cc}-{tool}") else tool


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                              check=False, env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise _BuildFailed(f"build: {cmd[0]} timed out after {timeout_s:g} s") from None
    except OSError as exc:
        raise _BuildFailed(f"build: cannot run {cmd[0]!r}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise _BuildFailed(f"build: {_first_error(proc.stderr + proc.stdout)}")


class NetworkCompiler:
    """Compiles network folders with ``target.cc`` on this machine.

    Args:
        workers: Units compiled at once (default: CPU count).
        cache_dir: Cache root (default :func:`codegen.default_cache_dir`; objects go to
            its ``network/`` folder).
        timeout_s: Seconds one compiler or linker call may take.
    """

    def __init__(self, *, workers: int | None = None, cache_dir: str | Path | None = None,
                 timeout_s: float = 600.0) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.cache = (Path(cache_dir) if cache_dir else default_cache_dir()) / "network"
        self.timeout_s = timeout_s

    def flags(self, target: Target) -> list[str]:
        """Compile flags of every unit (the Makefile's ``CFLAGS OPENMP`` and the rest)."""
        omp = ["-fopenmp"] if target.supports_openmp else []
        return [*target.compile_flags(), *omp, "-DPT_NO_SINGLE", "-fPIC", "-fvisibility=hidden"]

    def _object(self, folder: Path, unit: str, target: Target) -> tuple[Path, bool]:
        flags = self.flags(target)
        h = hashlib.sha256()
        for part in ((folder / unit).read_text(), *((folder / f).read_text() for f in _HEADERS),
                     target.cc, " ".join(flags)):
            h.update(part.encode())
            h.update(b"\0")
        key = h.hexdigest()
        cached = self.cache / key[:2] / f"{key}.o"
        out = folder / (unit[:-2] + ".o")
        if cached.is_file():
            shutil.copyfile(cached, out)
            return out, True
        _run([target.cc, *flags, "-c", "-o", out.name, unit], folder, self.timeout_s)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{key}.{os.getpid()}_{time.monotonic_ns()}")
        shutil.copyfile(out, tmp)
        tmp.replace(cached)
        return out, False

    def compile(self, folder: str | Path, units: tuple[str, ...], target: Target, *,
                products: tuple[str, ...] = PRODUCTS) -> NetworkProducts:
        """Build ``products`` from ``units`` in ``folder`` (which holds the generated files).

        Returns:
            The products' paths, or a result whose ``error`` starts with ``build:``.

        Raises:
            ValueError: An unknown product name.
        """
        bad = set(products) - set(PRODUCTS)
        if bad:
            raise ValueError(f"products must be among {', '.join(PRODUCTS)}; got {sorted(bad)}")
        d = Path(folder).resolve()
        t0 = time.perf_counter()
        try:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(units))) as pool:
                objs = list(pool.map(lambda u: self._object(d, u, target), units))
            names = [o.name for o, _ in objs]
            omp = ["-fopenmp"] if target.supports_openmp else []
            flags = [*target.compile_flags(), *omp]
            paths = {}
            if "static" in products or "run_model" in products:
                lib = d / f"{LIBRARY}.a"
                lib.unlink(missing_ok=True)
                _run([_tool(target.cc, "ar"), "rcs", lib.name, *names], d, self.timeout_s)
                paths["static_library"] = str(lib)
            if "shared" in products:
                so = d / f"{LIBRARY}.so"
                _run([target.cc, *flags, "-shared", "-Wl,--version-script=exports.map", "-o",
                      so.name, *names, "-lm"], d, self.timeout_s)
                paths["shared_library"] = str(so)
            if "run_model" in products:
                exe = d / "run_model"
                link = [*target.ldflags, *(["-static"] if target.static else [])]
                _run([target.cc, *flags, "-o", exe.name, "run_model.c", f"{LIBRARY}.a", *link,
                      "-lm"], d, self.timeout_s)
                paths["run_model"] = str(exe)
            if "static" not in products:
                paths.pop("static_library", None)
        except _BuildFailed as exc:
            return NetworkProducts(seconds=time.perf_counter() - t0, error=str(exc))
        return NetworkProducts(**paths, seconds=time.perf_counter() - t0,
                               cached_objects=sum(1 for _, c in objs if c))


__all__ = ["PRODUCTS", "NetworkCompiler", "NetworkProducts"]
