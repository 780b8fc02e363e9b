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
        # schema 6's lease tables
        conn.execute("DROP TABLE campaign_workers, ledger_leases, campaign_plans, rate_buckets")
        conn.execute("DROP INDEX events_for_report")  # schema 7's
        conn.execute("DROP TABLE provider_breakers")  # schema 8's shared breakers
        conn.execute("UPDATE stamp_schema SET version = 1")
    with open_store(pg_url) as store:  # every step of MIGRATIONS, 1 -> 8
        store.api_queue.enqueue("app", ITEMS, now=1.0)
        assert store.api_queue.counts() == {"queued": 2}
    with psycopg.connect(db.conninfo(pg_url), autocommit=True) as conn:
        row = conn.execute("SELECT version FROM stamp_schema").fetchone()
        assert row is not None and row[0] == db.SCHEMA_VERSION == 8


def test_enqueue_many_is_one_group_with_keys_and_quotas(backend: Backend) -> None:
    from stampcli.records import EnqueueRequest

    quota = ("pool:app", "2026-12-04", 3)
    with backend.open() as store:
        q = store.api_queue
        done = q.enqueue_many(
            [
                EnqueueRequest("app", (("m1", "{}"),), 1.0, key="k", request_hash="h1"),
                # the same key later in the same group: the first one's replay
                EnqueueRequest("app", (("m2", "{}"),), 1.0, key="k", request_hash="h2"),
                EnqueueRequest("app", (("m3", "{}"), ("m4", "{}")), 1.0, quota=quota),
                # 2 more do not fit in a quota of 3 with 2 used: nothing queued, no key kept
                EnqueueRequest(
                    "app", (("m5", "{}"), ("m6", "{}")), 1.0, key="q", quota=quota, wait=True
                ),
                EnqueueRequest("app", (("m7", "{}"),), 1.0, quota=quota),  # the last one fits
            ]
        )
        assert [d.new for d in done] == [True, False, True, False, True]
        assert done[1].ids == ("m1",) and done[1].request_hash == "h1"
        assert done[3].over_quota and done[3].ids == ()
        assert not any(d.over_quota for i, d in enumerate(done) if i != 3)
        assert {r.id for r in q.get([f"m{n}" for n in range(1, 8)])} == {"m1", "m3", "m4", "m7"}
        assert store.quota.usage("pool:app", "2026-12-04") == 3
        # the key refused for its quota is free: a retry (another day) queues under it
        retry = q.enqueue_many(
            [EnqueueRequest("app", (("m8", "{}"),), 2.0, key="q", quota=("pool:app", "x", 5))]
        )
        assert retry[0].new and retry[0].ids == ("m8",)
        assert q.enqueue_many([]) == []


def test_enqueue_many_groups_from_threads_with_one_key(backend: Backend) -> None:
    """Groups from several connections at once, all with one key: one queues, in all."""
    from stampcli.records import EnqueueRequest

    results: list[bool] = []
    errors: list[BaseException] = []
    # a timeout: a thread that fails before the barrier must fail the test, not hang it
    barrier = threading.Barrier(4, timeout=60)

    def one(n: int) -> None:
        try:
            with backend.open() as store:
                barrier.wait()
                group = [EnqueueRequest("app", ((f"m{n}-{i}", "{}"),), 1.0, key="same")
                         for i in range(3)]  # fmt: skip
                results.extend(d.new for d in store.api_queue.enqueue_many(group))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, [repr(e) for e in errors]
    assert sorted(results) == [False] * 11 + [True]
    with backend.open() as store:
        assert store.api_queue.counts() == {"queued": 1}


def test_enqueue_many_groups_in_opposite_orders_do_not_deadlock(backend: Backend) -> None:
    """Two writers whose groups hold the same keys in opposite orders, under one quota:
    each takes its locks in one order (no deadlock, no failed group), one queues per key."""
    from stampcli.records import EnqueueRequest

    errors: list[BaseException] = []
    new: list[str] = []
    barrier = threading.Barrier(2)

    def writer(flip: bool) -> None:
        try:
            with backend.open() as store:
                for round_ in range(15):
                    keys = [f"r{round_}-a", f"r{round_}-b", f"r{round_}-c"]
                    if flip:
                        keys.reverse()
                    group = [
                        EnqueueRequest(
                            "app",
                            ((f"{k}-{flip}", "{}"),),
                            1.0,
                            key=k,
                            quota=("pool:app", "d", 10**6),
                        )
                        for k in keys
                    ]
                    barrier.wait(timeout=30)
                    done = store.api_queue.enqueue_many(group)
                    new.extend(k for k, d in zip(keys, done, strict=True) if d.new)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(flip,)) for flip in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(new) == sorted({k for k in new}) and len(new) == 45
    with backend.open() as store:
        assert store.quota.usage("pool:app", "d") == 45
