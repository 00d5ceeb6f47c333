"""pattune: tune pattern-pruned CNNs (PatDNN) for phone and board CPUs.

The Python API (``pattune.tune``, ``pattune.status``, ``pattune.export``,
``pattune.prune``, ``pattune.measure``) is the product; the ``pattune`` command
line is a thin layer over it (:mod:`pattune.cli`).
"""

from __future__ import annotations
