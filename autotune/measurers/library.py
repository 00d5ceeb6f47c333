"""Time built kernels in this process, through ctypes (the kernel benchmark's measurer).

:class:`LibraryMeasurer` builds each config as a shared library, loads it,
verifies its output against torch, then times ``repeats`` calls after
``warmup`` calls. Its latency is the fastest call by default: on a shared
machine other processes only ever add time. It keeps every verified library
loaded, so the caller can time the finalists again side by side
(:meth:`LibraryMeasurer.confirm`) and time the winner next to torch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from autotune.measurers._base import ConfigResult, Measurer, check_distinct
from codegen import (
    Builder,
    BuildInput,
    GeneratedKernel,
    KernelConfig,
    KernelLibrary,
    Product,
    Target,
    generate,
    random_input,
    reference_output,
    verify,
)
from codegen.timing import Generated, interleaved_medians
from pattune_common import PattuneError
from search_spaces.layers import PrunedLayer

STATISTICS = ("min", "median")


class LibraryMeasurer(Measurer[PrunedLayer]):
    """Builds configs as shared libraries and times them in-process (host targets only).

    Args:
        target: A target whose libraries load here (``target.can_load_library``).
        builder: Builds the libraries (parallel, cached).
        device_type: Name the results are keyed by (default ``in-process``).
        warmup: Untimed calls before the timed ones.
        repeats: Timed calls per config.
        statistic: ``min`` (default) or ``median`` of the timed calls is the latency.
        seed: Seed of every layer's input.

    Raises:
        ValueError: The target's libraries cannot be loaded here, or a bad statistic.
    """

    def __init__(
        self,
        *,
        target: Target,
        builder: Builder,
        device_type: str = "in-process",
        warmup: int = 1,
        repeats: int = 5,
        statistic: str = "min",
        seed: int = 0,
    ) -> None:
        if not target.can_load_library:
            raise ValueError(
                f"target {target.name!r} cannot be loaded in this process; time it on a device "
                "of its type through the farm instead"
            )
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}; got {statistic!r}")
        if repeats < 1 or warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0; got {repeats}, {warmup}")
        super().__init__(device_type=device_type)
        self.target = target
        self.builder = builder
        self.warmup = warmup
        self.repeats = repeats
        self.statistic = statistic
        self.seed = seed
        self._inputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._loaded: dict[tuple[str, KernelConfig], tuple[GeneratedKernel, KernelLibrary]] = {}

    def inputs(self, layer: PrunedLayer) -> tuple[np.ndarray, np.ndarray]:
        """The layer's seeded input and torch's reference output (made once)."""
        h = layer.weights_hash
        if h not in self._inputs:
            x = random_input(layer, seed=self.seed)
            self._inputs[h] = (x, reference_output(layer, x))
        return self._inputs[h]

    def measure(
        self,
        layer: PrunedLayer,
        configs: Sequence[KernelConfig],
        *,
        predicted_s: Sequence[float | None] | None = None,
        cost_model_version: int | None = None,
    ) -> list[ConfigResult]:
        """Build every config in one parallel batch, verify each, time the good ones."""
        check_distinct(configs)
        preds: list[float | None] = (
            list(predicted_s) if predicted_s is not None else [None] * len(configs)
        )
        x, ref = self.inputs(layer)
        t0 = time.perf_counter()
        kernels = [generate(layer, c, self.target) for c in configs]
        builds = self.builder.build(
            [BuildInput(k, self.target, (Product.LIBRARY,)) for k in kernels]
        )
        self.stats.build_s += time.perf_counter() - t0
        self.stats.built += sum(1 for b in builds if b.ok and not b.cached)
        t1 = time.perf_counter()
        out = []
        for cfg, kernel, build, pred in zip(configs, kernels, builds, preds, strict=True):
            if not build.ok:
                out.append(self._failed(cfg, build.error, pred))
                continue
            try:
                lib = KernelLibrary(build.library, kernel.weights, layer.spec,
                                    maxpool=layer.maxpool)
            except PattuneError as exc:
                out.append(self._failed(cfg, f"load: {exc}", pred))
                continue
            v = verify(lib.run(x), ref)
            if not v.ok:
                lib.close()
                out.append(self._failed(cfg, v.error, pred))
                continue
            times = lib.time(x, warmup=self.warmup, repeats=self.repeats)
            self._loaded[(layer.weights_hash, cfg)] = (kernel, lib)
            self.stats.measured += 1
            lat = float(np.min(times) if self.statistic == "min" else np.median(times))
            out.append(ConfigResult(cfg, lat, predicted_s=pred, times_s=tuple(times),
                                    cv=_cv(times)))
        self.stats.measure_s += time.perf_counter() - t1
        return out

    def _failed(self, cfg: KernelConfig, error: str, pred: float | None) -> ConfigResult:
        self.stats.fail(error)
        return ConfigResult(cfg, error=error, predicted_s=pred)

    # -- the measured libraries ------------------------------------------------

    def loaded(self, layer: PrunedLayer, config: KernelConfig) -> tuple[GeneratedKernel,
                                                                       KernelLibrary] | None:
        """The generated kernel and loaded library of a verified config, or None."""
        return self._loaded.get((layer.weights_hash, config))

    def confirm(
        self, layer: PrunedLayer, configs: Sequence[KernelConfig], *, rounds: int = 5
    ) -> KernelConfig | None:
        """Time verified configs again round robin, warm; return the fastest (by its best call).

        The bench's own protocol (:func:`codegen.timing.interleaved_medians` with no
        pause between turns): each timed call follows an untimed one of the same
        library, so finalists are compared warm, not on who refills the caches
        after the others. Guards the pick against one lucky call in the search.
        """
        x, _ = self.inputs(layer)
        finalists = [c for c in configs if (layer.weights_hash, c) in self._loaded]
        if not finalists:
            return None
        t0 = time.perf_counter()
        impls = [Generated(str(i), self._loaded[(layer.weights_hash, c)][1], x)
                 for i, c in enumerate(finalists)]
        times = interleaved_medians(impls, rounds=rounds, warmup=0, settle_s=0.0)
        self.stats.measure_s += time.perf_counter() - t0
        return finalists[min(range(len(finalists)), key=lambda i: min(times[str(i)]))]

    def release(self, layer: PrunedLayer, *, keep: Iterable[KernelConfig] = ()) -> None:
        """Unload the layer's libraries except ``keep``'s."""
        kept = set(keep)
        for key in [k for k in self._loaded if k[0] == layer.weights_hash and k[1] not in kept]:
            self._loaded.pop(key)[1].close()

    def close(self) -> None:
        """Unload every library."""
        for _, lib in self._loaded.values():
            lib.close()
        self._loaded.clear()


def _cv(times: Sequence[float]) -> float | None:
    arr = np.asarray(times, dtype=float)
    mean = float(arr.mean())
    return float(arr.std(ddof=1) / mean) if arr.size > 1 and mean > 0 else None
