"""Recorded measurement sets: the file format, recording, and replay.

A measurement set stores, for a few pruned layers, the measured latency of
every config of a (benchmark-sized) KernelConfig space on one device, with the
metadata that says how. :class:`RecordedSpace` and :class:`ReplayMeasurer`
let the search strategies run against it in seconds instead of on a device.
"""

from __future__ import annotations

from autotune.measurement_set._format import (
    FORMAT,
    VERSION,
    Entry,
    LayerRecord,
    MeasurementSet,
    load,
    save,
)

__all__ = ["FORMAT", "VERSION", "Entry", "LayerRecord", "MeasurementSet", "load", "save"]
