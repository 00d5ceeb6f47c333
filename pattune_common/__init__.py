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

__all__ = [
    "DEFAULT_STORAGE",
    "ConfigError",
    "OutputError",
    "PattuneError",
    "Record",
    "UserInputError",
    "canonical_json",
    "stable_hash",
]
