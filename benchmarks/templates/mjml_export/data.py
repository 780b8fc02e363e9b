"""Rows for the MJML-exported newsletter: subscriber columns plus activity figures.

A fitness app's export: ``workouts_done``, ``streak_days`` and
``minutes_total`` are numbers as text; people who never trained have them
empty (the template then leaves the "your year" section out).
"""

from __future__ import annotations

import random

from benchmarks.templates.people import person


def rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        row = person(rng, i)
        active = rng.random() < 0.7
        workouts = rng.randint(1, 320) if active else 0
        row["workouts_done"] = str(workouts) if active else ""
        row["streak_days"] = str(rng.randint(1, min(workouts, 60))) if active else ""
        row["minutes_total"] = f"{workouts * rng.randint(12, 45):,}" if active else ""
        out.append(row)
    return out
