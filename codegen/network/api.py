"""One call from a pruned torch model to a built, verified network library.

:func:`build_network` lowers the model (:func:`.graph.build_graph`), generates the C
(:func:`.emit.generate_network`), writes the folder (sources, header, Makefile, weights
file, ``model.json``) and compiles it (:class:`.build.NetworkCompiler`).
:func:`verify_network` checks the built network's output against the torch model's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from codegen.config import KernelConfig
from codegen.network.build import PRODUCTS, NetworkCompiler
from codegen.network.emit import NetworkSources, generate_network
from codegen.network.graph import Graph, NetworkError, build_graph
from codegen.network.pattern_kernel import layer_config
from codegen.network.runtime import NetworkLibrary, run_network_executable
from codegen.network.weights import write_weights
from codegen.target import Target
from codegen.verify import DEFAULT_TOLERANCE, Verification, verify
from pattune_common import Record
from search_spaces.layers import PrunedLayer

#: ``model.json``'s format version.
MODEL_JSON_VERSION = 1
WEIGHTS_FILE = "weights.bin"


class NetworkBuildError(NetworkError):
    """The generated network did not compile (a bug of pattune's or a broken toolchain)."""


@dataclass(frozen=True)
class NetworkBuild(Record):
    """A built network: its folder, products, shapes and sizes.

    Attributes:
        out_dir: The folder holding everything below.
        target: The target it was built for.
        prefix: The C API's prefix (``<prefix>_model_run`` ...).
        sources: The ``.c`` files of the library.
        header: ``pattune_model.h``.
        makefile: The ``Makefile`` (builds the same products with ``make``).
        static_library: ``libpattune_model.a`` ("" when not built).
        shared_library: ``libpattune_model.so`` ("" when not built).
        run_model: The timing program ("" when not built).
        weights: The weights file.
        model_json: ``model.json`` (shapes, ops, arena, configs).
        input_shape: The network's input shape.
        output_shape: Its output shape.
        arena_bytes: Bytes of the activation arena.
        weights_bytes: Bytes of the weights file.
        fingerprint: The network's fingerprint (16 hex digits).
    """

    out_dir: str
    target: Target
    prefix: str
    sources: tuple[str, ...]
    header: str
    makefile: str
    static_library: str
    shared_library: str
    run_model: str
    weights: str
    model_json: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    arena_bytes: int
    weights_bytes: int
    fingerprint: str

    schema = "network_build"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkBuild:
        """Inverse of :meth:`to_dict`."""
        d: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        d["target"] = Target.from_dict(data["target"])
        return cls(**d)

    def ops(self) -> list[dict[str, Any]]:
        """The op list of ``model.json``: each op's record, implementation and sizes."""
        return list(json.loads(Path(self.model_json).read_text())["ops"])

    def moved(self, folder: str | Path) -> NetworkBuild:
        """This build's record after its folder was moved to ``folder``."""
        old, new = Path(self.out_dir), Path(folder)

        def at(path: str) -> str:
            return str(new / os.path.relpath(os.path.abspath(path), os.path.abspath(old))
                       ) if path else ""

        return replace(self, out_dir=str(new), sources=tuple(at(p) for p in self.sources),
                       header=at(self.header), makefile=at(self.makefile),
                       static_library=at(self.static_library),
                       shared_library=at(self.shared_library), run_model=at(self.run_model),
                       weights=at(self.weights), model_json=at(self.model_json))

    def load(self, *, threads: int = 1) -> NetworkLibrary:
        """The shared library loaded in this process with the weights file bound.

        Raises:
            NetworkError: No shared library was built, or it cannot run here.
        """
        if not self.shared_library or not self.target.can_load_library:
            raise NetworkError(f"network: the {self.target.name} build has no shared library "
                               "this process can load; use run_network_executable")
        return NetworkLibrary(self.shared_library, self.weights, prefix=self.prefix,
                              threads=threads)


def _model_json(graph: Graph, src: NetworkSources, target: Target, weights_bytes: int) -> str:
    layers = {}
    for name, (layer, cfg) in graph.patterns.items():
        op = graph.op(name)
        layers[op.module] = {"op": name, "spec": layer.spec.to_dict(),
                             "weights_hash": layer.weights_hash, "relu": layer.relu,
                             "maxpool": layer.maxpool,
                             "implementation": "depthwise_op" if layer.spec.is_depthwise
                             else "pattern_kernel",
                             "config": None if layer.spec.is_depthwise
                             else layer_config(layer, cfg, target).to_dict(),
                             "config_tuned": cfg is not None}
    doc = {
        "schema": "pattune_network", "version": MODEL_JSON_VERSION, "prefix": src.prefix,
        "target": target.to_dict(), "fingerprint": f"{src.fingerprint:016x}",
        "input": graph.input, "input_shape": list(graph.input_shape),
        "output": graph.output, "output_shape": list(graph.output_shape),
        "arena_bytes": src.arena.bytes, "weights_bytes": weights_bytes,
        "weights_file": WEIGHTS_FILE, "sources": list(src.units), "ops": list(src.op_info),
        "pattern_layers": layers,
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def build_network(model: nn.Module, input_shape: tuple[int, ...],
                  pattern_layers: Mapping[str, tuple[PrunedLayer, KernelConfig | None]] | None,
                  target: Target, out_dir: str | Path, *, prefix: str = "pt",
                  products: tuple[str, ...] = PRODUCTS,
                  compiler: NetworkCompiler | None = None, handoff: bool = True) -> NetworkBuild:
    """Generate, write and compile the whole-network library of ``model``.

    Args:
        model: The pruned model in eval mode (pattern convs hold masked weights).
        input_shape: ``(1, C, H, W)``.
        pattern_layers: Conv module name -> ``(PrunedLayer, KernelConfig | None)`` of the
            tuned pattern layers (as ``PruningPlan.pruned_layers(model, fuse=True)``
            makes them); None or empty: every conv runs as a dense op.
        target: What to build for (:func:`codegen.host_target`, :func:`codegen.aarch64_target`).
        out_dir: Folder to write (created; files in it are replaced).
        prefix: The C API's prefix; give each network of one program its own.
        products: Which of ``static``, ``shared``, ``run_model`` to build.
        compiler: The compiler to use (default: a :class:`NetworkCompiler`).
        handoff: Let a pattern layer store its output straight into the next pattern
            layer's zero-bordered input (see :func:`codegen.network.generate_network`).

    Raises:
        UnsupportedOpError: The model runs an op the runtime has no code for.
        NetworkError: An untraceable model, training mode, mismatched pattern layers.
        NetworkBuildError: The generated code did not compile.
    """
    graph = build_graph(model, input_shape, pattern_layers=pattern_layers)
    src = generate_network(graph, target, prefix=prefix, handoff=handoff)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in src.files.items():
        (out / name).write_text(text)
    wbytes = write_weights(out / WEIGHTS_FILE, src.sections, src.fingerprint)
    (out / "model.json").write_text(_model_json(graph, src, target, wbytes))
    res = (compiler or NetworkCompiler()).compile(out, src.units, target, products=products)
    if not res.ok:
        raise NetworkBuildError(f"network: {res.error}")
    return NetworkBuild(
        out_dir=str(out), target=target, prefix=prefix,
        sources=tuple(str(out / u) for u in src.units), header=str(out / "pattune_model.h"),
        makefile=str(out / "Makefile"), static_library=res.static_library,
        shared_library=res.shared_library, run_model=res.run_model,
        weights=str(out / WEIGHTS_FILE), model_json=str(out / "model.json"),
        input_shape=graph.input_shape, output_shape=graph.output_shape,
        arena_bytes=src.arena.bytes, weights_bytes=wbytes, fingerprint=f"{src.fingerprint:016x}",
    )


def reference_output(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The torch model's output on ``x`` (no gradients), float32."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


def run_build(build: NetworkBuild, x: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """The built network's output on ``x``: in-process where the target loads here, else
    through ``run_model`` (qemu for aarch64).

    Raises:
        NetworkError: ``run_model`` failed (its message).
    """
    if build.shared_library and build.target.can_load_library:
        with build.load(threads=threads) as lib:
            return lib.run(x)
    if not build.run_model:
        raise NetworkError("network: the build has neither a loadable library nor run_model")
    res = run_network_executable(build.run_model, build.weights, x, build.output_shape,
                                 build.target, repeats=1, threads=threads)
    if res.error or res.output is None:
        raise NetworkError(f"network: {res.error}")
    return res.output


def verify_network(build: NetworkBuild, model: nn.Module, *, x: np.ndarray | None = None,
                   seed: int = 0, threads: int = 1,
                   tolerance: float = DEFAULT_TOLERANCE) -> Verification:
    """Compare the built network with the torch model on one input.

    Args:
        build: What :func:`build_network` returned.
        model: The torch model it was built from (eval mode).
        x: The input (default: seeded standard normal of the input shape).
        seed: Seed of the default input.
        threads: Threads the network runs with.
        tolerance: Largest allowed ``max |out - ref| / max |ref|``.

    Returns:
        The verification; a failure is a result (``"verify: ..."`` or ``"run: ..."``).
    """
    if x is None:
        x = np.random.default_rng(seed).standard_normal(build.input_shape).astype(np.float32)
    try:
        out = run_build(build, x, threads=threads)
    except NetworkError as exc:
        return Verification(float("inf"), str(exc).removeprefix("network: "))
    return verify(out, reference_output(model, x), tolerance=tolerance)


__all__ = ["MODEL_JSON_VERSION", "NetworkBuild", "NetworkBuildError", "build_network",
           "reference_output", "run_build", "verify_network"]
