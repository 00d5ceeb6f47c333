"""Suite-wide settings.

Hypothesis: ``scripts/test.sh`` (what CI runs) selects the ``ci`` profile, which draws the
same examples on every run, so whether a clean checkout passes does not depend on which
examples one run happened to draw. A plain ``pytest`` run (or
``HYPOTHESIS_PROFILE=default bash scripts/test.sh``) draws new ones each time: that is how
the fuzz tests find new bugs, and a found example belongs in an ``@example`` line.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
