"""One run per campaign, in PostgreSQL: :class:`stampcli.store.protocols.LockStore`.

The rules are :mod:`stampcli.store.locks`'s (owner ``host:pid:random``, a
heartbeat, a stale lock taken over); acquiring locks the campaign's row
first (``FOR UPDATE``), so two runs starting together, from any host,
cannot both win.
"""

from __future__ import annotations

from stampcli.errors import LockedError
from stampcli.records import LockInfo
from stampcli.store.db import now
from stampcli.store.locks import STALE_AFTER, stale_reason
from stampcli.store.postgres.db import PostgresStore

HOLDER = "SELECT owner, host, pid, acquired_at, heartbeat_at FROM locks WHERE campaign_id = %s"
# every acquirer of the campaign's lock waits here for the one before it
SERIALISE = "SELECT 1 FROM campaigns WHERE id = %s FOR UPDATE"
TAKE = (
    "INSERT INTO locks (campaign_id, owner, host, pid, acquired_at, heartbeat_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (campaign_id) DO UPDATE SET "
    "owner = excluded.owner, host = excluded.host, pid = excluded.pid, "
    "acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at"
)
HEARTBEAT = "UPDATE locks SET heartbeat_at = %s WHERE campaign_id = %s AND owner = %s"
RELEASE = "DELETE FROM locks WHERE campaign_id = %s AND owner = %s"


class PostgresLocks:
    """:class:`stampcli.store.protocols.LockStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def holder(self, campaign_id: int) -> LockInfo | None:
        with self._store.connection() as conn:
            row = conn.execute(HOLDER, (campaign_id,)).fetchone()
        return None if row is None else LockInfo(*row)

    def acquire(
        self,
        campaign_id: int,
        owner: str,
        *,
        campaign_name: str = "",
        stale_after: float = STALE_AFTER,
    ) -> LockInfo | None:
        host, pid = owner.split(":")[0], int(owner.split(":")[1])
        ts = now()
        with self._store.transaction() as conn:
            conn.execute(SERIALISE, (campaign_id,))
            row = conn.execute(HOLDER, (campaign_id,)).fetchone()
            old = None if row is None else LockInfo(*row)
            live = old is not None and stale_reason(old, at=ts, stale_after=stale_after) is None
            if old is not None and old.owner != owner and live:
                name = f" {campaign_name!r}" if campaign_name else ""
                raise LockedError(
                    f"campaign{name} is being sent by another run ({old.owner}, heartbeat "
                    f"{ts - old.heartbeat_at:.0f} s ago). Wait for it to finish, or stop it; "
                    f"a lock whose process died is taken over after {stale_after:.0f} s."
                )
            conn.execute(TAKE, (campaign_id, owner, host, pid, ts, ts))
        return old if old is not None and old.owner != owner else None

    def heartbeat(self, campaign_id: int, owner: str) -> bool:
        with self._store.connection() as conn:
            return conn.execute(HEARTBEAT, (now(), campaign_id, owner)).rowcount == 1

    def release(self, campaign_id: int, owner: str) -> None:
        with self._store.connection() as conn:
            conn.execute(RELEASE, (campaign_id, owner))
