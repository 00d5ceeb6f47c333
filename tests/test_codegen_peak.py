"""The FMA peak microkernel: a physically possible rate, measured, on both targets."""

from __future__ import annotations

import dataclasses

import pytest

from codegen import aarch64_target, host_target
from codegen.peak import measure_peak, peak_source
from pattune_common import PattuneError

# No core issues more than 64 float MACs a cycle (two 512-bit FMA pipes) nor runs
# above 6 GHz: a rate above this means the loop was optimised away.
MAX_MACS_PER_CORE = 64 * 6e9


def test_the_host_peak_is_measured_not_optimised_away() -> None:
    one = measure_peak(host_target())
    assert one.threads == 1 and one.vector_floats == host_target().vector_floats
    assert 1e9 < one.macs_per_s < MAX_MACS_PER_CORE, one
    # Fewer chains than FMA latency x pipes cannot reach the peak: 1 chain is latency-bound.
    latency_bound = measure_peak(host_target(), chains=1)
    assert latency_bound.macs_per_s < 0.5 * one.macs_per_s, (latency_bound, one)


def test_two_threads_run_at_once() -> None:
    two = measure_peak(host_target(), threads=2)
    assert two.threads == 2 and 1e9 < two.macs_per_s < 2 * MAX_MACS_PER_CORE


def test_the_aarch64_microkernel_runs_under_qemu() -> None:
    peak = measure_peak(aarch64_target())
    assert peak.vector_floats == 4 and peak.macs_per_s > 0
    src = peak_source(aarch64_target())
    assert "#define CHAINS 24" in src and src.count("* x + y;") == 24


def test_a_missing_compiler_is_one_clear_error() -> None:
    broken = dataclasses.replace(host_target(), cc="/nonexistent/cc")
    with pytest.raises(PattuneError, match=r"^FMA peak microkernel: cannot run /nonexistent/cc"):
        measure_peak(broken)
