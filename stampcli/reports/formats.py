"""How each column kind of a section reads as text (HTML and terminal share it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def when(ts: float | None) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM`` UTC (``-`` for none)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def cell_text(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{float(value):.1%}" if value >= 0.001 or value == 0 else f"{float(value):.2%}"
    if kind == "ms":
        return "> 2 min" if int(value) >= 1_000_000 else f"≤ {int(value):,}"
    if kind == "time":
        return when(float(value))
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)
