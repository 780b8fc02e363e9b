"""Rows for the retail newsletter with macros and includes: the common subscriber columns.

The products come from ``variables:`` in campaign.yml (six, two without a
reduced price).
"""

from __future__ import annotations

import random

from benchmarks.templates.people import person


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [person(rng, i) for i in range(n)]
