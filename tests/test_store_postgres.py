"""The PostgreSQL store's own ways: URLs, passwords, schema versions, concurrency.

What every backend must do is ``test_store_contract.py`` (which runs these
stores too); here is what only a server-backed store has: a URL with a
password that must not leak, schema versions in a table, and several
processes or threads at once. Each test gets an empty schema of the session's
throwaway cluster (``pg_url``; skipped where PostgreSQL is not installed).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pg_cluster
import psycopg
import pytest

from stampcli import redact
from stampcli.errors import StoreError
from stampcli.records import Claim, EventRow, EventWrite, NewRow, Suppression
from stampcli.store import open_store
from stampcli.store.postgres import db

pytestmark = pytest.mark.postgres


def _sql(url: str, sql: str) -> list[tuple[object, ...]]:
    """Run ``sql`` on the test's schema from a connection of our own (not the store's)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchall() if cur.description else []


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user, host = parts.netloc.split("@", 1)
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def made(pg_url: str) -> Iterator[str]:
    """``pg_url`` with a stamp store made in it (and closed again)."""
    open_store(pg_url).close()
    yield pg_url


# ----------------------------------------------------------------- URLs and passwords


def test_postgres_scheme_is_accepted_and_the_password_never_shown(pg_url: str) -> None:
    url = _with_password(pg_url, "s3cret-pw").replace("postgresql://", "postgres://", 1)
    with open_store(url) as store:
        assert store.location.startswith("postgres://stamp:***@127.0.0.1:")
        assert "s3cret-pw" not in store.location
        assert "s3cret-pw" in redact.known()  # so no log line or report can show it
        store.campaigns.ensure("c")
    with open_store(pg_url) as again:  # the same store under the other spelling
        assert again.campaigns.get("c") is not None


def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = f"postgresql://stamp:hunter2-pw@127.0.0.1:{_closed_port()}/stamp"
    with pytest.raises(StoreError, match="cannot reach the server") as info:
        open_store(url)
    assert "hunter2-pw" not in str(info.value)
    assert "stamp:***@127.0.0.1" in str(info.value)


def test_a_database_that_does_not_exist_is_named(pg_cluster: pg_cluster.Cluster) -> None:
    with pytest.raises(StoreError, match="no such database"):
        open_store(pg_cluster.url("nothing_here"))


def test_a_closed_store_says_so(pg_url: str) -> None:
    store = open_store(pg_url)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.campaigns.get("c")


# ----------------------------------------------------------------- schema versions


def test_a_new_store_records_its_schema_version(made: str) -> None:
    assert _sql(made, "SELECT version FROM stamp_schema") == [(db.SCHEMA_VERSION,)]
    open_store(made).close()  # opening again changes nothing
    assert _sql(made, "SELECT count(*) FROM stamp_schema") == [(1,)]


def test_a_store_from_a_newer_stamp_is_refused(made: str) -> None:
    _sql(made, "UPDATE stamp_schema SET version = 99")
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"newer stamp \(schema 99"):
            open_store(made, readonly=readonly)


def test_an_older_store_is_upgraded_by_its_migrations(
    made: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(made) as store:
        store.campaigns.ensure("kept")
    monkeypatch.setattr(db, "SCHEMA_VERSION", db.SCHEMA_VERSION + 1)
    monkeypatch.setitem(
        db.MIGRATIONS, db.SCHEMA_VERSION - 1, "ALTER TABLE campaigns ADD COLUMN note text;"
    )
    with pytest.raises(StoreError, match="older stamp.*run a command that writes"):
        open_store(made, readonly=True)  # read-only: refused, not misread
    with open_store(made) as store:
        assert store.campaigns.get("kept") is not None
    assert _sql(made, "SELECT version FROM stamp_schema") == [(db.SCHEMA_VERSION,)]
    assert _sql(made, "SELECT count(note) FROM campaigns") == [(0,)]
    with open_store(made, readonly=True) as ro:
        assert ro.campaigns.get("kept") is not None


def test_an_older_store_without_a_way_up_is_refused(made: str) -> None:
    _sql(made, "UPDATE stamp_schema SET version = 0")
    with pytest.raises(StoreError, match="schema 0 cannot be upgraded"):
        open_store(made)
    assert _sql(made, "SELECT version FROM stamp_schema") == [(0,)]  # rolled back, untouched


def test_tables_stamp_did_not_make_are_refused(pg_url: str) -> None:
    _sql(pg_url, "CREATE TABLE ledger (id int); CREATE TABLE runs (x text)")
    with pytest.raises(StoreError, match=r"tables stamp did not make \(ledger, runs\)"):
        open_store(pg_url)
    assert _sql(pg_url, "SELECT to_regclass('stamp_schema') IS NULL") == [(True,)]


def test_an_empty_schema_table_is_refused(made: str) -> None:
    _sql(made, "DELETE FROM stamp_schema")
    with pytest.raises(StoreError, match="stamp_schema table is empty"):
        open_store(made)


def test_workers_starting_together_make_the_schema_once(pg_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def opener() -> None:
        start.wait()
        try:
            open_store(pg_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _sql(pg_url, "SELECT count(*) FROM stamp_schema") == [(1,)]


def test_a_read_only_store_refuses_writes(made: str) -> None:
    with open_store(made, readonly=True) as ro:
        assert ro.campaigns.get("c") is None
        with pytest.raises(StoreError, match="read-only"):
            ro.campaigns.ensure("c")
    with open_store(made) as store:
        assert store.campaigns.get("c") is None


# ----------------------------------------------------------------- concurrency


def test_a_claim_skips_rows_another_worker_holds(made: str) -> None:
    with open_store(made) as store:
        cid = store.campaigns.ensure("c").id
        store.ledger.insert(cid, [NewRow(k, k, "{}") for k in ("a@x.test", "b@x.test", "c@x.test")])
        rows = store.ledger.read_pending(cid, after_id=0, limit=10)
        with psycopg.connect(made) as other:  # another worker, mid-claim of row b
            other.execute("SELECT 1 FROM ledger WHERE id = %s FOR UPDATE", (rows[1].id,))
            started = time.monotonic()
            assert store.ledger.claim([Claim(r.id, f"<{r.key}>") for r in rows]) == 2
            assert time.monotonic() - started < 5  # skipped, not waited for
            other.rollback()
        states = {r.key: r.state for r in store.ledger.rows(cid)}
        assert states == {"a@x.test": "sending", "b@x.test": "pending", "c@x.test": "sending"}
        assert store.ledger.claim([Claim(rows[1].id, "<b>")]) == 1


def test_the_daily_quota_never_overshoots_across_processes(made: str) -> None:
    granted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        with open_store(made) as store:  # a handle each, as separate processes have
            start.wait()
            while n := store.quota.take("relay", "2026-01-01", 7, 250):
                with lock:
                    granted.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 250
    with open_store(made) as store:
        assert store.quota.usage("relay", "2026-01-01") == 250


def test_one_store_serves_several_threads(made: str) -> None:
    errors: list[BaseException] = []
    with open_store(made) as store:

        def worker(n: int) -> None:
            try:
                items = [Suppression(f"t{n}-{i}@x.test", "manual", "cli") for i in range(200)]
                assert store.suppressions.add_many(items) == 200
                assert len(store.suppressions.suppressed([i.key for i in items])) == 200
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert store.suppressions.count() == {"manual": 1600}


def test_a_batch_naming_one_row_twice_keeps_the_order(made: str) -> None:
    with open_store(made) as store:
        items = [
            Suppression("a@x.test", "manual", "first"),
            Suppression("a@x.test", "complaint", "second", detail="later news"),
        ]
        assert store.suppressions.add_many(items) == 1
        got = store.suppressions.get("a@x.test")
        assert got is not None and (got.reason, got.source, got.detail) == (
            "complaint",
            "second",
            "later news",
        )


def test_an_event_another_process_is_storing_is_answered_as_stored(made: str) -> None:
    # The other insert commits after add()'s statement began: add() waits on the conflict,
    # skips the row, and must still answer the stored row's id (and that it was applied).
    got: list[list[EventWrite]] = []
    rows = [
        EventRow("sg", "e1", "delivered", 1.0, "a@x.test"),
        EventRow("sg", "e2", "opened", 2.0, "a@x.test"),
    ]
    with open_store(made) as store, psycopg.connect(made) as other:
        (theirs,) = other.execute(
            "INSERT INTO events (provider, event_id, type, occurred_at, received_at, recipient, "
            "raw, applied) VALUES ('sg', 'e1', 'delivered', 1.0, 1.0, 'a@x.test', '{}', true) "
            "RETURNING id"
        ).fetchone() or (None,)
        thread = threading.Thread(
            target=lambda: got.append(store.events.add(rows, received_at=3.0))
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not _sql(made, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND application_name = 'stamp'"):  # fmt: skip
            assert time.monotonic() < deadline, "add() never waited on the other insert"
            time.sleep(0.02)
        other.commit()
        thread.join(10)
    (writes,) = got
    assert (writes[0].id, writes[0].new, writes[0].applied) == (theirs, False, True)
    assert writes[1].new and not writes[1].applied
