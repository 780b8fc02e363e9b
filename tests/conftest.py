"""Fixtures every test shares: an isolated store path, a clean secret registry, PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pg_cluster as pg_cluster_mod
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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg_cluster_mod.Cluster]:
    """A throwaway PostgreSQL cluster for the session (skips the test where there is none)."""
    why = pg_cluster_mod.unavailable()
    if why is not None:
        pytest.skip(why)
    cluster = pg_cluster_mod.start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: pg_cluster_mod.Cluster) -> Iterator[str]:
    """The URL of a fresh, empty store of the session's cluster (a schema), dropped after."""
    url, schema = pg_cluster.new_store_url()
    try:
        yield url
    finally:
        pg_cluster.drop_schema(schema)
