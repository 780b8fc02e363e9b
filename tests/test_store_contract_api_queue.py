"""The send API queue's store contract (``store.api_queue``), on both backends.

Runs once per backend of ``tests/test_store_contract.py`` (SQLite, and PostgreSQL in
the throwaway cluster of ``tests/pg_cluster.py``), through the protocol only.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.test_store_contract import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


ITEMS = [("msg_a", '{"n": 1}'), ("msg_b", '{"n": 2}')]


def test_enqueue_claim_settle(backend: Backend) -> None:
    with backend.open() as store:
        q = store.api_queue
        done = q.enqueue("app", ITEMS, now=100.0)
        assert done.new and done.ids == ("msg_a", "msg_b")
        assert q.counts() == {"queued": 2}
        claimed = q.claim("w1", now=101.0, lease=60.0, limit=10)
        assert [r.id for r in claimed] == ["msg_a", "msg_b"]
        assert claimed[0].request == '{"n": 1}' and claimed[0].pool == "app"
        assert q.claim("w2", now=101.0, lease=60.0) == []  # nobody claims a row twice
        # only the owner settles
        assert q.settle("w2", [("msg_a", "sent", "p", "[]", 1, None, 0.0)], now=102.0) == 0
        fates = [
            ("msg_a", "sent", "p1", json.dumps([{"ok": True}]), 1, None, 0.0),
            ("msg_b", "queued", None, None, 2, "all down", 200.0),
        ]
        assert q.settle("w1", fates, now=102.0) == 2
        rows = {r.id: r for r in q.get(["msg_a", "msg_b", "nope"])}
        assert rows["msg_a"].state == "sent" and rows["msg_a"].provider == "p1"
        assert rows["msg_a"].attempts == 1 and json.loads(rows["msg_a"].results or "") == [
            {"ok": True}
        ]
        assert rows["msg_b"].state == "queued" and rows["msg_b"].next_at == 200.0
        # back-off: not due before next_at
        assert q.claim("w1", now=150.0, lease=60.0) == []
        again = q.claim("w1", now=201.0, lease=60.0)
        assert [r.id for r in again] == ["msg_b"] and again[0].attempts == 2


def test_claim_by_ids_and_lease_expiry(backend: Backend) -> None:
    with backend.open() as store:
        q = store.api_queue
        q.enqueue("app", ITEMS, now=100.0)
        got = q.claim("sync", now=100.0, lease=30.0, ids=["msg_b"])
        assert [r.id for r in got] == ["msg_b"]
        assert q.claim("sync", now=100.0, lease=30.0, ids=["msg_b"]) == []
        assert q.expire_leases(120.0) == 0
        assert q.expire_leases(131.0) == 1
        (row,) = q.get(["msg_b"])
        assert row.state == "unknown" and "stopped mid-send" in (row.detail or "")
        # a late settle of the dead owner changes nothing
        assert q.settle("sync", [("msg_b", "sent", "p", None, 1, None, 0.0)], now=132.0) == 0


def test_idempotency_key(backend: Backend) -> None:
    with backend.open() as store:
        q = store.api_queue
        first = q.enqueue("app", ITEMS[:1], now=100.0, key="k1", request_hash="h", wait=True)
        assert first.new
        again = q.enqueue("app", [("msg_x", "{}")], now=200.0, key="k1", request_hash="other")
        assert not again.new and again.ids == ("msg_a",) and again.request_hash == "h"
        assert again.wait
        assert q.get(["msg_x"]) == []  # nothing queued for the replay
        # another pool's key of the same name is another key
        assert q.enqueue("other", [("msg_y", "{}")], now=200.0, key="k1").new
        # 24 h later the key is free again
        late = q.enqueue("app", [("msg_z", "{}")], now=100.0 + 86_401, key="k1")
        assert late.new and late.ids == ("msg_z",)
        assert q.purge_keys(10**9) == 2


def test_concurrent_enqueue_with_one_key(backend: Backend) -> None:
    results = []
    barrier = threading.Barrier(6)

    def one(n: int) -> None:
        with backend.open() as store:
            barrier.wait()
            results.append(store.api_queue.enqueue("app", [(f"m{n}", "{}")], now=1.0, key="same"))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.new for r in results) == 1
    assert len({r.ids for r in results}) == 1
    with backend.open() as store:
        assert store.api_queue.counts() == {"queued": 1}


def test_events_for_message(backend: Backend) -> None:
    from stampcli.records import EventRow

    with backend.open() as store:
        store.api_queue.enqueue("app", ITEMS[:1], now=1.0)
        store.events.add(
            [
                EventRow("sendgrid", "e1", "delivered", 5.0, "ann@example.com", campaign="msg_a"),
                EventRow("sendgrid", "e2", "opened", 6.0, "ann@example.com", campaign="other"),
            ],
            received_at=7.0,
        )
        found = store.api_queue.events_for("msg_a")
        assert [(e.event_id, e.type) for e in found] == [("e1", "delivered")]


@pytest.mark.postgres
def test_postgres_schema_1_store_gains_the_api_tables(pg_url: str) -> None:
    import psycopg

    from stampcli.store import open_store
    from stampcli.store.postgres import db

    open_store(pg_url).close()
    with psycopg.connect(db.conninfo(pg_url), autocommit=True) as conn:
        conn.execute("DROP TABLE api_messages, api_idempotency")
        # and what schemas 2 and 3 added (report tallies, fleet), as a schema 1 store lacks
        conn.execute("DROP TABLE provider_answer_times, provider_tallies")
        conn.execute("DROP TABLE fleet_queue, fleet_workers")
        conn.execute("DROP TABLE schedules")  # schema 5's
        conn.execute("UPDATE stamp_schema SET version = 1")
    with open_store(pg_url) as store:  # every step of MIGRATIONS, 1 -> 6
        store.api_queue.enqueue("app", ITEMS, now=1.0)
        assert store.api_queue.counts() == {"queued": 2}
    with psycopg.connect(db.conninfo(pg_url), autocommit=True) as conn:
        row = conn.execute("SELECT version FROM stamp_schema").fetchone()
        assert row is not None and row[0] == db.SCHEMA_VERSION == 6
