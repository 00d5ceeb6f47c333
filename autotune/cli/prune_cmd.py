"""Commands of this group register on :mod:`autotune.cli._app`'s apps (not yet written)."""

from __future__ import annotations
