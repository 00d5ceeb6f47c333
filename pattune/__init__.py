"""pattune: tune pattern-pruned CNNs (PatDNN) for phone and board CPUs.

The Python API is the product; the ``pattune`` command line is a thin layer
over it (:mod:`pattune.cli`), and each function takes the keywords its
command takes as flags::

    import pattune

    summary = pattune.tune(model="example", trials=30, timeout="8h")
    print(pattune.status().best)
    exported = pattune.export(out="out/best")
    print(exported.latency_ms, exported.config_json)

===================  ==========================  =====================================
function             CLI                         returns
===================  ==========================  =====================================
:func:`tune`         ``pattune tune``            :class:`TuneSummary`
:func:`status`       ``pattune status``          :class:`StudyStatus`
:func:`export`       ``pattune export``          :class:`ExportResult`
:func:`prune`        ``pattune prune``           :class:`PruneResult`
:func:`measure`      ``pattune measure``         :class:`MeasureResult`
:func:`dashboard`    ``pattune dashboard``       (serves optuna-dashboard until stopped)
:func:`measurements` ``pattune measurements``    ``tuple[KernelMeasurement, ...]``
===================  ==========================  =====================================

Bad arguments raise :class:`UserInputError` (a :class:`PattuneError` and a
``ValueError``) with the rule and the allowed values. Nothing prints: progress
reaches the caller through the optional ``progress`` callback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotune.export import ExportResult
    from pattune._dashboard import dashboard
    from pattune._measure import MeasureProgress, MeasureResult, measure
    from pattune._prune import PruneResult, prune
    from pattune._records import KernelMeasurement, measurements
    from pattune._study import BestTrial, StudyStatus, export, status
    from pattune._tune import TrialReport, TuneProgress, TuneSummary, tune
    from pattune_common import PattuneError, UserInputError

# Where each public name lives. They are imported on first use, so that `import pattune`
# (and with it every CLI start, even `pattune --help`) does not import torch and optuna.
_WHERE = {
    "measurements": "pattune._records",
    "KernelMeasurement": "pattune._records",
    "dashboard": "pattune._dashboard",
    "tune": "pattune._tune",
    "TuneProgress": "pattune._tune",
    "TrialReport": "pattune._tune",
    "TuneSummary": "pattune._tune",
    "status": "pattune._study",
    "StudyStatus": "pattune._study",
    "BestTrial": "pattune._study",
    "export": "pattune._study",
    "ExportResult": "autotune.export",
    "prune": "pattune._prune",
    "PruneResult": "pattune._prune",
    "measure": "pattune._measure",
    "MeasureProgress": "pattune._measure",
    "MeasureResult": "pattune._measure",
    "PattuneError": "pattune_common",
    "UserInputError": "pattune_common",
}

#: The package's version (``pattune --version``); pyproject.toml carries the same.
__version__ = "0.1.0"

__all__ = [
    "BestTrial",
    "ExportResult",
    "KernelMeasurement",
    "MeasureProgress",
    "MeasureResult",
    "PattuneError",
    "PruneResult",
    "StudyStatus",
    "TrialReport",
    "TuneProgress",
    "TuneSummary",
    "UserInputError",
    "dashboard",
    "export",
    "measure",
    "measurements",
    "prune",
    "status",
    "tune",
]

if not TYPE_CHECKING:  # type checkers see the imports above, and so catch misspelt names

    def __getattr__(name: str) -> Any:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module 'pattune' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
