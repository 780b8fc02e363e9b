"""Value types of campaign.yml: rates (``50/s``), durations (``30s``, ``24h``), sizes (``2MB``).

Each parser takes what YAML gives (a number or a string) and raises
``ValueError`` with the form to write, which the loader turns into a line
naming the file, the key and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_RATE_UNITS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}  # fmt: skip
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


@dataclass(frozen=True)
class Rate:
    """A token-bucket rate: ``count`` messages per ``per_seconds``."""

    count: float
    per_seconds: float
    text: str

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    def __str__(self) -> str:
        return self.text


def parse_rate(value: object) -> Rate:
    """``50/s``, ``3000/min``, ``100000/h``, ``2000/day`` or a bare number per second."""
    if isinstance(value, Rate):
        return value
    if isinstance(value, bool):
        raise ValueError("a rate is written like 50/s, 3000/min or 100000/h")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("a rate must be above zero")
        return Rate(float(value), 1.0, f"{value}/s")
    match = _RATE_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a rate; write it like 50/s, 3000/min or 100000/h")
    count = float(match.group(1))
    if count <= 0:
        raise ValueError("a rate must be above zero")
    return Rate(count, float(_RATE_UNITS[match.group(2)]), str(value).strip())


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``500ms``, ``30s``, ``15m``, ``24h`` or ``2d``."""
    if isinstance(value, bool):
        raise ValueError("a duration is written like 30s, 15m, 24h or 2d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m, 24h or 2d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: object) -> object:
    """Characters from ``2MB``, ``500kB``, ``1MiB`` or ``100000``; other types go to pydantic."""
    if not isinstance(value, str):
        return value
    m = _SIZE.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not a size (like 2MB, 500kB or 100000)")
    unit = (m.group(2) or "").lower().removesuffix("b")
    return int(float(m.group(1)) * _UNITS[unit])
