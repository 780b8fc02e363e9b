"""Daily quotas: shared through the store, never overshot, permits given back."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

from stampcli.clock import FakeClock
from stampcli.store.db import SCHEMA, SCHEMA_VERSION, Store
from stampcli.store.quota import DailyQuota, usage, utc_day

DAY = 86_400.0


def prepared(path: Path) -> Path:
    """A database file with the schema in place (Store then skips its own migration)."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    return path


def test_in_memory_quota() -> None:
    quota = DailyQuota("smtp", 3, clock=FakeClock())
    days = [quota.reserve() for _ in range(4)]
    assert days[:3] == [quota.day] * 3
    assert days[3] is None
    assert quota.exhausted() and quota.used() == 3
    quota.give_back(quota.day)
    assert not quota.exhausted()
    assert quota.used() == 2 and quota.remaining == 1
    assert quota.reserve() is not None
    assert quota.reserve() is None


def test_two_runs_share_one_quota_exactly(tmp_path: Path) -> None:
    clock = FakeClock()
    with Store(prepared(tmp_path / "stamp.db")) as one, Store(tmp_path / "stamp.db") as two:
        a = DailyQuota("relay", 100, one, clock=clock)
        b = DailyQuota("relay", 100, two, clock=clock)
        granted = 0
        for _ in range(200):
            granted += a.reserve() is not None
            granted += b.reserve() is not None
        assert granted == 100
        assert usage(one, "relay", a.day) == 100
        # a hands back an unused permit and closes: b may use it
        a.give_back(a.day)
        a.close()
        assert b.reserve() is not None
        assert b.reserve() is None
        assert b.used() == 100


def test_unused_chunk_is_returned_on_close(tmp_path: Path) -> None:
    clock = FakeClock()
    with Store(prepared(tmp_path / "stamp.db")) as store:
        quota = DailyQuota("relay", 1000, store, clock=clock)
        assert quota.reserve() is not None
        assert usage(store, "relay", quota.day) == quota.chunk == 50
        assert quota.used() == 1
        quota.close()
        assert usage(store, "relay", quota.day) == 1


def test_a_new_utc_day_starts_a_new_count(tmp_path: Path) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    with Store(prepared(tmp_path / "stamp.db")) as store:
        quota = DailyQuota("relay", 2, store, clock=clock)
        first = quota.reserve()
        assert first == utc_day(1_700_000_000.0)
        assert quota.reserve() is not None
        assert quota.reserve() is None
        clock.advance(DAY)
        assert not quota.exhausted()
        today = quota.reserve()
        assert today is not None and today != first
        # yesterday's permit comes back to yesterday's row, not today's
        quota.give_back(first)
        assert usage(store, "relay", first) == 1
        assert quota.reserve() is not None
        assert quota.reserve() is None


def _grab(path: str, out: multiprocessing.Queue[int]) -> None:
    with Store(path) as store:
        quota = DailyQuota("shared", 500, store, chunk=7)
        got = 0
        while quota.reserve() is not None:
            got += 1
        out.put(got)


def test_concurrent_processes_never_overshoot(tmp_path: Path) -> None:
    path = str(prepared(tmp_path / "stamp.db"))
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=_grab, args=(path, out)) for _ in range(3)]
    for p in procs:
        p.start()
    totals = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sum(totals) == 500
    with Store(path) as store:
        day = utc_day(time.time())
        assert usage(store, "shared", day) == 500
