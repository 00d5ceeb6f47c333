"""The whole-network C runtime: a pruned torch model as one library, one weights file, one header.

Flow: :func:`build_graph` lowers the model (``torch.fx``) to op records
(:mod:`.ops`); :func:`generate_network` writes the C (dense ops from
``pt_network_ops.h``, each tuned pattern layer as its own unit, the arena planned by
:func:`plan_arena`) and the weights sections; :class:`NetworkCompiler` builds
``libpattune_model.a``, ``libpattune_model.so`` and ``run_model``;
:class:`NetworkLibrary` runs the library from Python. :func:`build_network` does all of
it in one call and :func:`verify_network` checks the result against torch. See
``docs/network.md``.

Importing this package imports torch; ``import codegen`` does not import it.
"""

from __future__ import annotations

from codegen.network._lower import NetworkError, UnsupportedOpError
from codegen.network._patterns import PatternLayers
from codegen.network.api import (
    NetworkBuild,
    NetworkBuildError,
    build_network,
    reference_output,
    run_build,
    verify_network,
)
from codegen.network.arena import ArenaPlan, Buffer, network_buffers, plan_arena
from codegen.network.build import PRODUCTS, NetworkCompiler, NetworkProducts
from codegen.network.emit import NetworkSources, generate_network
from codegen.network.graph import Graph, build_graph
from codegen.network.ops import (
    Activation,
    AdaptiveAvgPool2d,
    Add,
    Conv2d,
    Flatten,
    Linear,
    Op,
    Pool2d,
    op_from_dict,
)
from codegen.network.runtime import NetworkLibrary, run_network_executable
from codegen.network.weights import (
    WeightsError,
    WeightsFile,
    WeightsStatus,
    decode_weights,
    encode_weights,
    read_weights,
    write_weights,
)

__all__ = [
    "PRODUCTS",
    "Activation",
    "AdaptiveAvgPool2d",
    "Add",
    "ArenaPlan",
    "Buffer",
    "Conv2d",
    "Flatten",
    "Graph",
    "Linear",
    "NetworkBuild",
    "NetworkBuildError",
    "NetworkCompiler",
    "NetworkError",
    "NetworkLibrary",
    "NetworkProducts",
    "NetworkSources",
    "Op",
    "PatternLayers",
    "Pool2d",
    "UnsupportedOpError",
    "WeightsError",
    "WeightsFile",
    "WeightsStatus",
    "build_graph",
    "build_network",
    "decode_weights",
    "encode_weights",
    "generate_network",
    "network_buffers",
    "op_from_dict",
    "plan_arena",
    "read_weights",
    "reference_output",
    "run_build",
    "run_network_executable",
    "verify_network",
    "write_weights",
]
