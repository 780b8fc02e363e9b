"""Rows for the segmented newsletter: subscriber columns plus ``trial_days_left``.

Only free accounts on a trial have ``trial_days_left`` (a number as text); the
other rows leave the cell empty, as a CRM export does.
"""

from __future__ import annotations

import random

from benchmarks.templates.people import person


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        row = person(rng, i)
        trial = row["plan"] in ("free", "") and rng.random() < 0.4
        row["trial_days_left"] = str(rng.randint(1, 14)) if trial else ""
        out.append(row)
    return out
