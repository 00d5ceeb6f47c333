"""Shared, read-only Fashion-MNIST splits for the search tests (loaded once per process)."""

from __future__ import annotations

from functools import cache

from search_spaces.data import Split, load_split


@cache
def split(name: str) -> Split:
    """The real Fashion-MNIST split ``name`` (train or test)."""
    return load_split(name)
