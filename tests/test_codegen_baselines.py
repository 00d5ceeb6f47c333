"""The in-process baselines of ``pattune bench kernels`` time fairly side by side."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.kernels.baselines import Implementation, OrtDense, TorchDense, interleaved_medians
from codegen.verify import random_input, reference_output, verify
from tests.codegen_support import required_layers


def test_ort_threads_do_not_spin_into_the_next_implementation() -> None:
    # A spinning ORT pool kept both cores busy after its run and doubled the time of
    # whatever was timed next; the session must be built with spinning off.
    layer = required_layers()["odd_width"]
    x = random_input(layer, seed=5)
    ort = OrtDense(layer, x, threads=2)
    opts = ort._sess.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 2
    assert verify(ort.output(), reference_output(layer, x)).ok
    assert verify(TorchDense(layer, x).output(), reference_output(layer, x)).ok


class _Clock(Implementation):
    """Records when each call starts."""

    def __init__(self, name: str, starts: list[tuple[str, float]]) -> None:
        self.name = name
        self._starts = starts

    def call(self) -> None:
        self._starts.append((self.name, time.perf_counter()))

    def output(self) -> np.ndarray:
        return np.zeros(1)


def test_interleaved_timing_is_round_robin_with_a_pause_and_a_warm_call_before_each() -> None:
    starts: list[tuple[str, float]] = []
    impls = [_Clock("a", starts), _Clock("b", starts)]
    times = interleaved_medians(impls, rounds=3, warmup=1, settle_s=0.01)
    # warm-up, then per round and implementation one untimed call and the timed one.
    assert [n for n, _ in starts] == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    gaps = [t1 - t0 for (_, t0), (_, t1) in zip(starts, starts[1:], strict=False)]
    # The pause comes before each implementation's turn, not between its warm and timed call.
    turns = gaps[1::2]
    assert min(turns) >= 0.01
    assert max(gaps[2::2]) < 0.01


def test_interleaved_timing_can_skip_the_warm_call() -> None:
    starts: list[tuple[str, float]] = []
    impls = [_Clock("a", starts), _Clock("b", starts)]
    interleaved_medians(impls, rounds=2, warmup=0, settle_s=0.0, warm_calls=0)
    assert [n for n, _ in starts] == ["a", "b"] * 2
