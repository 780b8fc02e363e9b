"""The per-campaign lock: one live run, stale locks taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stampcli.errors import LockedError
from stampcli.store import campaigns, locks, testing
from stampcli.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "stamp.db")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_owner_is_refused_naming_the_holder(store: Store) -> None:
    cid = campaigns.ensure(store, "news").id
    first = locks.new_owner()
    assert locks.acquire(store, cid, first) is None
    second = locks.new_owner()
    with pytest.raises(LockedError, match="another run") as info:
        locks.acquire(store, cid, second, campaign_name="news")
    assert first in str(info.value)
    assert info.value.exit_code == 5
    locks.release(store, cid, second)  # not ours: nothing happens
    assert (h := locks.holder(store, cid)) is not None and h.owner == first
    locks.release(store, cid, first)
    assert locks.holder(store, cid) is None
    assert locks.acquire(store, cid, second) is None


def test_lock_of_dead_process_is_taken_over(store: Store) -> None:
    cid = campaigns.ensure(store, "news").id
    dead = f"{socket.gethostname()}:{_dead_pid()}:abcd"
    locks.acquire(store, cid, dead)
    taken = locks.acquire(store, cid, locks.new_owner())
    assert taken is not None and taken.owner == dead
    assert locks.stale_reason(taken, at=taken.heartbeat_at) is not None


def test_lock_with_old_heartbeat_is_taken_over(store: Store) -> None:
    cid = campaigns.ensure(store, "news").id
    other_host = f"elsewhere.invalid:{os.getpid()}:abcd"
    locks.acquire(store, cid, other_host)
    with pytest.raises(LockedError):
        locks.acquire(store, cid, locks.new_owner())
    assert testing.age_lock(store, cid, 120)
    taken = locks.acquire(store, cid, locks.new_owner())
    assert taken is not None and taken.owner == other_host


def test_heartbeat_reports_a_lost_lock(store: Store) -> None:
    cid = campaigns.ensure(store, "news").id
    me = locks.new_owner()
    locks.acquire(store, cid, me)
    assert locks.heartbeat(store, cid, me) is True
    locks.acquire(store, cid, "someone:1:x", stale_after=-1.0)  # taken over: ours is lost
    assert locks.heartbeat(store, cid, me) is False


def test_two_connections_cannot_both_win(tmp_path: Path) -> None:
    a, b = Store(tmp_path / "s.db"), Store(tmp_path / "s.db")
    cid = campaigns.ensure(a, "news").id
    locks.acquire(a, cid, locks.new_owner())
    with pytest.raises(LockedError):
        locks.acquire(b, cid, locks.new_owner())
