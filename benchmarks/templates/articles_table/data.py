"""Rows for the article-table newsletter: the common subscriber columns, nothing more.

The campaign's articles come from ``variables:`` in campaign.yml (six stories,
one without an image), as a site exports them.
"""

from __future__ import annotations

import random

from benchmarks.templates.people import person


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [person(rng, i) for i in range(n)]
