"""What a choice becomes: C source and builds for one pruned layer and one KernelConfig.

Flow: :func:`config_space` gives the valid :class:`KernelConfig` s of a layer on a
:class:`Target`; :func:`generate` emits specialised C plus a weight blob; a
:class:`Builder` (:class:`LocalBuilder`) compiles executables and shared
libraries; :func:`verify` checks outputs against torch before any time counts.

Every kernel is reentrant under its own symbols: ``generate(..., symbol_prefix="ptl3")``
gives ``ptl3_create``/``ptl3_run``/``ptl3_destroy`` over an opaque ``ptl3_ctx``
(:attr:`GeneratedKernel.header` declares them), so a network links one object per
layer (:func:`object_command`) into one library.
"""

from __future__ import annotations

from codegen._base import Builder, BuildInput, BuildResult, Product
from codegen.config import (
    FORMATS,
    LOOP_ORDERS,
    THREAD_MAPPINGS,
    ConfigSpace,
    KernelConfig,
    config_space,
)
from codegen.generator import GeneratedKernel, generate
from codegen.harness import DEFAULT_PREFIX
from codegen.local_builder import LocalBuilder, default_cache_dir, object_command
from codegen.runtime import ExecutableRun, KernelLibrary, run_executable
from codegen.target import Target, aarch64_target, get_target, host_target
from codegen.verify import Verification, random_input, reference_output, verify

__all__ = [
    "DEFAULT_PREFIX",
    "FORMATS",
    "LOOP_ORDERS",
    "THREAD_MAPPINGS",
    "BuildInput",
    "BuildResult",
    "Builder",
    "ConfigSpace",
    "ExecutableRun",
    "GeneratedKernel",
    "KernelConfig",
    "KernelLibrary",
    "LocalBuilder",
    "Product",
    "Target",
    "Verification",
    "aarch64_target",
    "config_space",
    "default_cache_dir",
    "generate",
    "get_target",
    "host_target",
    "object_command",
    "random_input",
    "reference_output",
    "run_executable",
    "verify",
]
