"""One run per campaign: a lock row with an owner and a heartbeat.

The owner is ``host:pid:random``. A live run refreshes ``heartbeat_at`` every
few seconds; a second run finds the row and stops with :class:`LockedError`
naming the owner. A lock is stale, and is taken over, when its process is
known to be gone (same host, pid not alive) or its heartbeat is older than
``stale_after`` seconds (a process on another host, or a frozen one).
Acquiring is one IMMEDIATE transaction, so two runs starting together cannot
both win.
"""

from __future__ import annotations

import os
import secrets
import socket

from stampcli.errors import LockedError
from stampcli.records import LockInfo as LockInfo
from stampcli.store.db import Store, now

STALE_AFTER = 60.0  # seconds without a heartbeat before a lock is taken over
HEARTBEAT_EVERY = 5.0  # seconds between heartbeats of a live run


def new_owner() -> str:
    """``host:pid:random`` for this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just is not ours
    return True


def stale_reason(lock: LockInfo, *, at: float, stale_after: float = STALE_AFTER) -> str | None:
    """Why ``lock`` may be taken over, or None while its holder looks alive."""
    if lock.host == socket.gethostname() and not pid_alive(lock.pid):
        return f"its process {lock.pid} is gone"
    age = at - lock.heartbeat_at
    if age > stale_after:
        return f"no heartbeat for {age:.0f} s"
    return None


def holder(store: Store, campaign_id: int) -> LockInfo | None:
    """The lock on the campaign, live or stale, or None."""
    with store.errors():
        row = store.conn.execute(
            "SELECT owner, host, pid, acquired_at, heartbeat_at FROM locks WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
    return None if row is None else LockInfo(*row)


def acquire(
    store: Store,
    campaign_id: int,
    owner: str,
    *,
    campaign_name: str = "",
    stale_after: float = STALE_AFTER,
) -> LockInfo | None:
    """Take the campaign's lock for ``owner``.

    Returns the stale lock that was taken over (for a notice), or None. Raises
    :class:`LockedError` naming the holder when a live run has it.
    """
    host, pid = owner.split(":")[0], int(owner.split(":")[1])
    ts = now()
    with store.transaction() as conn:
        row = conn.execute(
            "SELECT owner, host, pid, acquired_at, heartbeat_at FROM locks WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchone()
        old = None if row is None else LockInfo(*row)
        live = old is not None and stale_reason(old, at=ts, stale_after=stale_after) is None
        if old is not None and old.owner != owner and live:
            name = f" {campaign_name!r}" if campaign_name else ""
            raise LockedError(
                f"campaign{name} is being sent by another run ({old.owner}, heartbeat "
                f"{ts - old.heartbeat_at:.0f} s ago). Wait for it to finish, or stop it; "
                f"a lock whose process died is taken over after {stale_after:.0f} s."
            )
        conn.execute(
            "INSERT OR REPLACE INTO locks (campaign_id, owner, host, pid, acquired_at, "
            "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)",
            (campaign_id, owner, host, pid, ts, ts),
        )
    return old if old is not None and old.owner != owner else None


def heartbeat(store: Store, campaign_id: int, owner: str) -> bool:
    """Refresh the heartbeat; False if the lock is no longer ours (taken over)."""
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE locks SET heartbeat_at = ? WHERE campaign_id = ? AND owner = ?",
            (now(), campaign_id, owner),
        )
        return cur.rowcount == 1


def release(store: Store, campaign_id: int, owner: str) -> None:
    """Drop the lock if it is still ours."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM locks WHERE campaign_id = ? AND owner = ?", (campaign_id, owner))


class SQLiteLocks:
    """:class:`stampcli.store.protocols.LockStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def holder(self, campaign_id: int) -> LockInfo | None:
        return holder(self._store, campaign_id)

    def acquire(
        self,
        campaign_id: int,
        owner: str,
        *,
        campaign_name: str = "",
        stale_after: float = STALE_AFTER,
    ) -> LockInfo | None:
        return acquire(
            self._store, campaign_id, owner, campaign_name=campaign_name, stale_after=stale_after
        )

    def heartbeat(self, campaign_id: int, owner: str) -> bool:
        return heartbeat(self._store, campaign_id, owner)

    def release(self, campaign_id: int, owner: str) -> None:
        release(self._store, campaign_id, owner)
