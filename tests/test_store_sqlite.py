"""The SQLite backend's own tests: schema, migrations, WAL checkpoints, the tuned statements.

What every backend must do is in ``test_store_contract.py``; this file looks
inside the SQLite one (``store.conn``, PRAGMAs, ``sqlite_master``), which is
why it alone may.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from stampcli.store import campaigns, ledger
from stampcli.store.db import SCHEMA_VERSION, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "stamp.db")


def _plan(store: Store, cid: int, keys: list[str]) -> int:
    return ledger.insert(store, cid, [ledger.NewRow(k, k, '{"n": 1}') for k in keys])


def _wal_growth(store: Store, cid: int, pause: float) -> int:
    """The WAL's size after 5 chunks of 2,000 new rows, a pause after each."""
    import time

    for n in range(5):
        _plan(store, cid, [f"u{n}-{i}@example.com" for i in range(2_000)])
        time.sleep(pause)  # a background checkpoint, if any, catches up
    return Path(f"{store.path}-wal").stat().st_size


def test_checkpoints_move_to_a_thread_while_sending(tmp_path: Path) -> None:
    """Inside the block no commit checkpoints; a thread does, so the WAL stays small."""
    import threading

    alone = Store(tmp_path / "alone.db")
    alone.conn.execute("PRAGMA wal_autocheckpoint = 0")  # nobody checkpoints
    unchecked = _wal_growth(alone, campaigns.ensure(alone, "c").id, 0)

    store = Store(tmp_path / "stamp.db")
    cid = campaigns.ensure(store, "c").id
    with store.checkpoints_in_background():
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert any(t.name == "stamp-checkpoint" for t in threading.enumerate())
        checked = _wal_growth(store, cid, 0.3)
    # each checkpoint lets the next commit write the WAL from its start again
    assert checked < unchecked / 2, (checked, unchecked)
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    assert not any(t.name == "stamp-checkpoint" for t in threading.enumerate())
    assert ledger.counts(store, cid)[ledger.PENDING] == 10_000


def test_the_wal_stays_bounded_under_writes_without_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passive checkpoints alone may never catch up; past the limit the log starts over."""
    import time

    from stampcli.store import db

    monkeypatch.setattr(db, "CHECKPOINT_EVERY", 0.02)
    monkeypatch.setattr(db, "WAL_RESTART_PAGES", 300)  # 1.2 MB of 4 KiB pages
    monkeypatch.setattr(db, "WAL_SIZE_LIMIT", 1 << 20)
    store = Store(tmp_path / "stamp.db")
    cid = campaigns.ensure(store, "c").id
    wal = Path(f"{store.path}-wal")
    biggest = 0
    with store.checkpoints_in_background():
        deadline = time.monotonic() + 1.5
        n = 0
        while time.monotonic() < deadline:  # commit after commit, no pause
            _plan(store, cid, [f"u{n}-{i}@example.com" for i in range(500)])
            n += 1
            biggest = max(biggest, wal.stat().st_size)
    written = ledger.counts(store, cid)[ledger.PENDING]
    assert written == n * 500 and n > 20
    # without restarts the log would hold every page written (~100 bytes a row)
    assert biggest < 6 << 20, (biggest, written)
    assert biggest < written * 100 / 2


# The ledger as schema 1 wrote it: the same columns, the state check as an IN list.
_LEDGER_V1 = """
CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, content_hash TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, paused_reason TEXT, paused_at REAL,
    audience_mark TEXT
);
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    key TEXT NOT NULL, email TEXT NOT NULL, fields TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    provider TEXT, provider_message_id TEXT, message_id TEXT, last_error TEXT,
    next_attempt_at REAL, first_attempt_at REAL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, sent_at REAL,
    UNIQUE (campaign_id, key),
    CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'unknown',
                     'suppressed', 'skipped'))
);
CREATE INDEX ledger_by_state ON ledger (campaign_id, state, id);
INSERT INTO campaigns VALUES (7, 'old', 'abc', 1.0, 2.0, NULL, NULL, '{"x": 1}');
INSERT INTO ledger VALUES (5, 7, 'a@x.test', 'A@x.test', '{"n": 1}', 'sent', 2, 'pm', 'pm-1',
    '<m@x>', NULL, NULL, 10.0, 1.0, 11.0, 11.0);
INSERT INTO ledger VALUES (9, 7, 'b@x.test', 'b@x.test', '{}', 'deferred', 1, 'sg', NULL,
    '<n@x>', 'busy', 99.0, 10.0, 1.0, 12.0, NULL);
PRAGMA user_version = 1;
"""


def _ledger_rows(store: Store) -> list[tuple[object, ...]]:
    return store.conn.execute("SELECT * FROM ledger ORDER BY id").fetchall()


def test_a_schema_1_store_keeps_its_ledger_and_loses_the_slow_check(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(_LEDGER_V1)
    before = old.execute("SELECT * FROM ledger ORDER BY id").fetchall()
    old.close()

    store = Store(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _ledger_rows(store) == before
    sql = store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'ledger'").fetchone()[0]
    assert " IN (" not in sql and "state = 'skipped'" in sql
    indexes = {r[1] for r in store.conn.execute("PRAGMA index_list(ledger)")}
    assert "ledger_by_state" in indexes
    assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # still the same ledger: ids go on, (campaign, key) stays unique, states stay checked
    assert _plan(store, 7, ["a@x.test", "c@x.test"]) == 1
    assert store.conn.execute("SELECT max(id) FROM ledger").fetchone()[0] == 10
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        store.conn.execute("UPDATE ledger SET state = 'gone' WHERE id = 5")
    store.close()
    Store(path).close()  # opened again: nothing more to migrate


def test_a_schema_2_store_gains_events_and_campaign_settings(tmp_path: Path) -> None:
    import sqlite3

    from stampcli.store.db import LEDGER_STATES

    chain = " OR ".join(f"state = '{s}'" for s in LEDGER_STATES)
    v2 = _LEDGER_V1.replace(
        "CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'unknown',\n"
        "                     'suppressed', 'skipped'))",
        f"CHECK ({chain})",
    ).replace("PRAGMA user_version = 1;", "PRAGMA user_version = 2;")
    assert f"CHECK ({chain})" in v2
    path = tmp_path / "v2.db"
    old = sqlite3.connect(path)
    old.executescript(v2)
    before = old.execute("SELECT * FROM ledger ORDER BY id").fetchall()
    old.close()
    with Store(path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert _ledger_rows(store) == before
        assert store.campaigns.settings(7) == {}
        store.campaigns.set_settings(7, {"auto_stop": {"min_answers": 1}})
        assert store.campaigns.get("old") is not None
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
        assert {"events", "event_cursors", "ledger_by_provider_message_id"} <= tables
        plan = store.conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM ledger WHERE provider_message_id IN ('pm-1')"
        ).fetchall()
        assert "ledger_by_provider_message_id" in str(plan)
        assert store.events.by_message_id({("pm-1", "a@x.test")})[("pm-1", "a@x.test")].key == (
            "a@x.test"
        )
    with Store(path) as store:  # opened again: nothing more to migrate
        assert store.campaigns.settings(7) == {"auto_stop": {"min_answers": 1}}


def test_a_schema_2_store_read_only_shows_no_events(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "v2.db"
    old = sqlite3.connect(path)
    old.executescript(_LEDGER_V1.replace("PRAGMA user_version = 1;", "PRAGMA user_version = 2;"))
    old.close()
    with Store(path, readonly=True) as store:  # `stamp status` does not migrate
        assert store.events.counts(7)["delivered"] == 0


def test_every_state_passes_the_check_and_no_other(store: Store) -> None:
    import sqlite3

    cid = campaigns.ensure(store, "c").id
    _plan(store, cid, ["a@x.test"])
    for state in ledger.STATES:
        store.conn.execute("UPDATE ledger SET state = ? WHERE campaign_id = ?", (state, cid))
    for bad in ("Pending", "", "pending "):
        with pytest.raises(sqlite3.IntegrityError):
            store.conn.execute("UPDATE ledger SET state = ? WHERE campaign_id = ?", (bad, cid))


def test_skipped_is_no_state_stamp_writes_but_a_store_still_takes_it(store: Store) -> None:
    """No version wrote 'skipped'; the table keeps accepting it, the code no longer lists it."""
    assert "skipped" not in ledger.STATES and not hasattr(ledger, "SKIPPED")
    cid = campaigns.ensure(store, "c").id
    _plan(store, cid, ["a@x.test", "b@x.test"])
    assert "skipped" not in ledger.counts(store, cid)
    store.conn.execute("UPDATE ledger SET state = 'skipped' WHERE key = 'b@x.test'")
    assert ledger.counts(store, cid) == {
        **dict.fromkeys(ledger.STATES, 0),
        "pending": 1,
        "skipped": 1,
    }


def test_the_short_statement_for_sent_rows_writes_what_the_general_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``record`` writes rows sent at the first try with a statement of their own."""
    out = ledger.Outcome
    outcomes = [
        out(0, "sent", provider="pm", provider_message_id="m0"),
        out(1, "sent", provider="pm", provider_message_id="m1", extra_attempts=2),
        out(2, "failed", provider="pm", last_error="550 no such user"),
        out(3, "sent", provider=None, provider_message_id=None),
        out(4, "deferred", provider="pm", last_error="421", next_attempt_at=5e9),
        out(5, "pending", extra_attempts=-1),
        out(6, "unknown", provider="pm", last_error="timeout"),
        out(7, "pending", extra_attempts=-1),
        out(7, "sent", provider="pm", provider_message_id="m7"),  # order matters
        out(6, "failed", provider="pm", last_error="a second answer for a final row: ignored"),
    ]
    monkeypatch.setattr(ledger, "now", lambda: 1_700_000_000.0)
    tables = []
    for general in (False, True):
        if general:
            monkeypatch.setattr(ledger, "_sent_first_time", lambda o: False)
        store = Store(tmp_path / f"s{general}.db")
        cid = campaigns.ensure(store, "c").id
        _plan(store, cid, [f"u{i}@x.test" for i in range(8)])
        rows = ledger.read_pending(store, cid, after_id=0, limit=10)
        ledger.claim(store, [ledger.Claim(r.id, f"<{r.key}>") for r in rows])
        store.conn.execute("UPDATE ledger SET provider = 'old', provider_message_id = 'x'")
        ledger.record(store, [o._replace(id=rows[o.id].id) for o in outcomes])
        tables.append(_ledger_rows(store))
        store.close()
    assert tables[0] == tables[1]
    states = [row[5] for row in tables[0]]
    assert states == ["sent", "sent", "failed", "sent", "deferred", "pending", "unknown", "sent"]


def test_a_schema_3_store_gains_every_table_added_after_it(tmp_path: Path) -> None:
    """Tables added after schema 3 (report tallies, fleet, send API, schedules, leases)
    reach a store made at 3, which SCHEMA (run only on older stores) would otherwise skip."""
    path = tmp_path / "stamp.db"
    with Store(path) as store:
        want = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
        later = [
            "provider_tallies", "provider_answer_times", "fleet_queue", "fleet_workers",
            "api_messages", "api_idempotency", "schedules", "campaign_workers",
            "ledger_leases", "campaign_plans", "rate_buckets", "provider_breakers",
        ]  # fmt: skip
        assert set(later) <= want
        for table in later:
            store.conn.execute(f"DROP TABLE {table}")
        store.conn.execute("DROP INDEX events_for_report")
        store.conn.execute("PRAGMA user_version = 3")
    with Store(path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")} == want


def _open_at_once(path: Path, n: int) -> list[BaseException]:
    """``n`` threads open the store at ``path`` at the same moment; what each raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n, timeout=60)

    def one() -> None:
        try:
            barrier.wait()
            Store(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_stamp_commands_started_together_on_a_new_store_all_open_it(tmp_path: Path) -> None:
    """Switching a new store to WAL needs the file to itself, and SQLite refused it at
    once ("database is locked", no busy wait) while another opener was at it: a cron
    line starting two stamp commands on a fresh store failed one of them."""
    for trial in range(25):
        path = tmp_path / f"new{trial}.db"
        assert _open_at_once(path, 6) == []
        with Store(path) as store:
            assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_old_store_opened_by_several_at_once_is_upgraded_once(tmp_path: Path) -> None:
    """Schema 2 -> 3 adds a column: two upgrades racing used to run the ALTER TABLE twice
    (the version was read before the write lock was taken); now it is read under it."""
    for trial in range(10):
        path = tmp_path / f"old{trial}.db"
        with Store(path) as store:
            later = {
                r[0]
                for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            store.conn.execute("ALTER TABLE campaigns DROP COLUMN settings")
            store.conn.execute("PRAGMA user_version = 2")
        assert _open_at_once(path, 4) == []
        with Store(path) as store:
            assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            columns = [r[1] for r in store.conn.execute("PRAGMA table_info(campaigns)")]
            assert columns.count("settings") == 1
            names = "SELECT name FROM sqlite_master WHERE type = 'table'"
            assert {r[0] for r in store.conn.execute(names)} == later
