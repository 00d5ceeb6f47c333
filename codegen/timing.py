"""In-process timing of computations bound to one input: one call each, round robin.

:class:`Implementation` is anything that computes once per :meth:`~Implementation.call`
(a generated kernel loaded with ctypes, :class:`Generated`; or a baseline such as
torch's conv2d in ``benchmarks``); :func:`interleaved_medians` times several of
them round robin in one process, so machine noise falls on all of them alike.
Times are seconds.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence

import numpy as np

from codegen.runtime import KernelLibrary


class Implementation(abc.ABC):
    """One way to compute a layer, bound to one input."""

    name: str = ""

    @abc.abstractmethod
    def call(self) -> None:
        """Compute the convolution once (what is timed)."""

    @abc.abstractmethod
    def output(self) -> np.ndarray:
        """Compute and return the output (1, cout, oh, ow) float32."""


class Generated(Implementation):
    """A generated kernel loaded with ctypes."""

    def __init__(self, name: str, lib: KernelLibrary, x: np.ndarray) -> None:
        self.name = name
        self._lib = lib
        self._x = np.ascontiguousarray(x, dtype=np.float32)
        self._y = lib.run(self._x)

    def call(self) -> None:
        self._lib.run_into(self._x, self._y)

    def output(self) -> np.ndarray:
        return self._lib.run(self._x)


def interleaved_medians(impls: Sequence[Implementation], *, rounds: int, warmup: int = 1,
                        settle_s: float = 0.02, warm_calls: int = 1) -> dict[str, list[float]]:
    """Time each implementation once per round, round robin; return all times (seconds).

    Interleaving spreads machine noise (other processes, frequency) over every
    implementation instead of penalising whichever ran during a slow spell.
    ``settle_s`` of idle time precede each implementation's turn: OpenMP pools (torch's,
    the generated kernels') spin-wait briefly after a parallel run, and without
    the pause the next implementation shares the cores with those threads.

    Then ``warm_calls`` untimed calls run before the timed one, so what is timed is the
    steady state (as TVM's ``time_evaluator`` and benchdnn time it): the first call
    after the pause and after the other implementations pays for the core waking up
    and for its caches and TLB being refilled. That cost is the interleaving's, not the
    implementation's, and on a shared VM it was 1-5 ms a call, the same for every
    implementation, so it pulled every ratio towards 1.
    """
    for impl in impls:
        for _ in range(warmup):
            time.sleep(settle_s)
            impl.call()
    times: dict[str, list[float]] = {impl.name: [] for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            time.sleep(settle_s)
            for _ in range(warm_calls):
                impl.call()
            t0 = time.perf_counter()
            impl.call()
            times[impl.name].append(time.perf_counter() - t0)
    return times
