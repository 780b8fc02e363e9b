"""Fixtures every test shares: an isolated store path and a clean secret registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stampcli import redact


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test writes ./stamp.db or inherits secrets registered by another test."""
    monkeypatch.setenv("STAMP_DB", str(tmp_path / "stamp.db"))
    monkeypatch.delenv("STAMP_DEBUG", raising=False)
    redact.clear()
    yield
    redact.clear()
