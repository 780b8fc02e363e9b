"""The store contract of ``store.fleet`` (the queue of ``stamp worker`` and its workers).

Through the protocol only, once per backend of ``test_store_contract.BACKENDS``
(a SQLite file and a PostgreSQL schema of the session's throwaway cluster).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from test_store_contract import Backend, backend  # noqa: F401  (the fixture, per backend)

from stampcli.records import WorkerRow
from stampcli.store import open_store

BUNDLE = bytes(range(256)) * 40  # every byte value: a zip is binary


def test_enqueue_replaces_and_settle_moves_the_due_time(backend: Backend) -> None:  # noqa: F811
    with backend.open() as store:
        fleet = store.fleet
        assert fleet.entries() == [] and fleet.due(time.time()) == []
        assert fleet.enqueue("b", '{"x": 1}', BUNDLE, "d1", added_by="h:1", due_at=100.0)
        assert fleet.enqueue("a", "{}", b"zip", "d2", added_by="h:1", due_at=50.0)
        assert [e.name for e in fleet.due(100.0)] == ["a", "b"]  # longest due first
        assert [e.name for e in fleet.due(60.0)] == ["a"]
        b = fleet.entries()[1]
        assert (b.name, b.state, b.size, b.runs, b.added_by) == (
            "b",
            "queued",
            len(BUNDLE),
            0,
            "h:1",
        )
        got = fleet.definition("b")
        assert got is not None and got.bundle == BUNDLE and got.definition == '{"x": 1}'
        assert fleet.definition("none") is None
        # a run ends: the digest must still be the one taken
        assert not fleet.settle("b", digest="old", state="done", due_at=0, reason="complete",
                                error=None, worker="w")  # fmt: skip
        assert fleet.settle("b", digest="d1", state="queued", due_at=500.0, reason="refused",
                            error="SMTP_PASS is not set", worker="w1")  # fmt: skip
        b = fleet.entries()[1]
        assert (b.due_at, b.runs, b.last_reason, b.last_error, b.last_worker) == (
            500.0, 1, "refused", "SMTP_PASS is not set", "w1",
        )  # fmt: skip
        assert b.last_run_at is not None
        assert fleet.settle("a", digest="d2", state="done", due_at=60.0, reason="complete",
                            error=None, worker="w1")  # fmt: skip
        assert fleet.due(10_000.0) == [b]
        # queued again: replaced, due again, the error cleared, the history kept
        assert not fleet.enqueue("b", "{}", b"new", "d3", added_by="h:2", due_at=10.0)
        b = fleet.entries()[1]
        assert (b.digest, b.state, b.due_at, b.last_error, b.runs) == (
            "d3",
            "queued",
            10.0,
            None,
            1,
        )
        assert fleet.dequeue("b") and not fleet.dequeue("b")
        assert [e.name for e in fleet.entries()] == ["a"]


def test_workers_register_beat_stop_and_are_forgotten(backend: Backend) -> None:  # noqa: F811
    with backend.open() as store:
        fleet = store.fleet
        now = time.time()
        fleet.register_worker(WorkerRow("h:1:a", "h", 1, now - 10, now - 10, "idle"))
        fleet.register_worker(WorkerRow("h:2:b", "h", 2, now, now, "idle"))
        assert fleet.worker_heartbeat("h:1:a", state="sending", campaign="news", sent=7, rate=12.5)
        assert not fleet.worker_heartbeat("h:9:x", state="idle", campaign=None, sent=0)
        with backend.open(readonly=True) as reader:  # another process sees it at once
            first, second = reader.fleet.workers()
        assert second.id == "h:1:a"  # newest first
        assert (second.state, second.campaign, second.sent, second.rate) == (
            "sending",
            "news",
            7,
            12.5,
        )
        assert second.heartbeat_at >= now
        assert first.id == "h:2:b" and first.stopped_at is None
        fleet.stop_worker("h:1:a", sent=9)
        stopped = next(w for w in fleet.workers() if w.id == "h:1:a")
        assert (stopped.state, stopped.campaign, stopped.sent) == ("stopped", None, 9)
        assert stopped.stopped_at is not None
        assert fleet.forget_workers(now + 3600) == 2 and fleet.workers() == []


def test_a_sqlite_store_of_this_version_made_before_the_fleet_tables_gains_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with open_store(path):
        pass
    with sqlite3.connect(path) as conn:  # as a store made before them
        conn.execute("DROP TABLE fleet_queue")
        conn.execute("DROP TABLE fleet_workers")
    with open_store(path, readonly=True) as reader:
        assert reader.fleet.entries() == [] and reader.fleet.workers() == []
    with open_store(path) as store:
        assert store.fleet.enqueue("a", "{}", b"z", "d", added_by="h:1", due_at=0.0)
        assert [e.name for e in store.fleet.entries()] == ["a"]


def test_a_postgres_store_of_schema_1_is_upgraded_with_the_fleet_tables(pg_url: str) -> None:
    import psycopg

    with open_store(pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to schema 1, as made before
        conn.execute("DROP TABLE fleet_queue")
        conn.execute("DROP TABLE fleet_workers")
        conn.execute("DROP TABLE provider_answer_times")  # schema 2's report tables
        conn.execute("DROP TABLE provider_tallies")
        conn.execute("DROP TABLE api_messages, api_idempotency")  # schema 4's
        conn.execute("DROP TABLE schedules")  # schema 5's
        # schema 6's lease tables
        conn.execute("DROP TABLE campaign_workers, ledger_leases, campaign_plans, rate_buckets")
        conn.execute("DROP INDEX events_for_report")  # schema 7's
        conn.execute("DROP TABLE provider_breakers")  # schema 8's shared breakers
        conn.execute("UPDATE stamp_schema SET version = 1")
    with open_store(pg_url) as store:
        assert store.fleet.entries() == []
        assert store.fleet.enqueue("a", "{}", b"z", "d", added_by="h:1", due_at=0.0)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM stamp_schema").fetchall() == [(8,)]
