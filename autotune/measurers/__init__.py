"""The measurement seam: what a kernel config costs, from devices, a recording, or in-process.

Every :class:`Measurer` takes one layer and a batch of KernelConfigs and returns
one :class:`ConfigResult` per config, in order; the kernel search loop
(:class:`autotune.task.KernelTask`) drives any of them unchanged:

* :class:`FarmMeasurer`: claim in the records, build, verify against torch,
  run on a device of the type through the farm, record;
* :class:`ReplayMeasurer`: answer from a recorded measurement set (over its
  :class:`RecordedSpace`);
* :class:`LibraryMeasurer`: build shared libraries and time them in this process.
"""

from __future__ import annotations

from autotune.measurers._base import ConfigResult, Measurer, MeasureStats
from autotune.measurers.farm import FarmMeasurer, Runner
from autotune.measurers.library import LibraryMeasurer
from autotune.measurers.packaging import LayerInputs, kernel_job
from autotune.measurers.replay import RecordedSpace, ReplayMeasurer, replay_context

__all__ = [
    "ConfigResult",
    "FarmMeasurer",
    "LayerInputs",
    "LibraryMeasurer",
    "MeasureStats",
    "Measurer",
    "RecordedSpace",
    "ReplayMeasurer",
    "Runner",
    "kernel_job",
    "replay_context",
]
