"""Rows for the weekly digest: the common subscriber columns.

The digest marks the items tagged with one of the subscriber's ``interests``;
the 50 items themselves are campaign ``variables:`` (campaign.yml, written
once by ``make_items.py``).
"""

from __future__ import annotations

import random

from benchmarks.templates.people import person


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [person(rng, i) for i in range(n)]
