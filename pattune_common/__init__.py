"""Pieces every pattune package shares: the error base and the record helpers.

The four packages of the design card (``search_spaces``, ``codegen``,
``device_farm``, ``autotune``) import from here and never the other way round,
so ``device_farm`` can stay ignorant of layers and patterns while still raising
the project's one error type. The storage layer the records and the leases
share (URLs, engines, owners, the schema's migrations) is the subpackage
:mod:`pattune_common.storage`, imported by name because it needs SQLAlchemy.
"""

from __future__ import annotations

from pattune_common.errors import ConfigError, OutputError, PattuneError, UserInputError
from pattune_common.records import Record, canonical_json, stable_hash

#: The one database of a study, its records and the farm's leases, unless a URL is given.
DEFAULT_STORAGE = "sqlite:///pattune.db"

#: Fine-tune examples per tuning-time accuracy estimate of the example. At 2000 the
#: estimate ranked 8 configurations against their accuracy after the export's
#: retraining at Spearman 0.55-0.57; at 6000 0.69; at 12000 0.79-0.86
#: (``pattune bench accuracy --ranking``; docs/tuning.md).
ESTIMATE_SAMPLES = 12000

__all__ = [
    "DEFAULT_STORAGE",
    "ESTIMATE_SAMPLES",
    "ConfigError",
    "OutputError",
    "PattuneError",
    "Record",
    "UserInputError",
    "canonical_json",
    "stable_hash",
]
