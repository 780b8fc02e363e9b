"""Rows for the Markdown letter: the common subscriber columns.

``members_books`` and the blog articles are campaign ``variables:``.
"""

from __future__ import annotations

import random

from benchmarks.templates.people import person


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [person(rng, i) for i in range(n)]
