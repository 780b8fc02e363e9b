"""Row leases for several workers on one campaign (SQLite): who holds which rows, until when.

A worker that shares a campaign (``stampcli.delivery.shared``) registers in
``campaign_workers`` (owner ``host:pid:random``, a heartbeat, an expiry) and *leases*
the pending rows it reads ahead (``ledger_leases``: row, owner, expiry), so the
other workers read other rows. A leased row stays ``pending`` until its message
is about to leave; then the claim turns it ``sending``, and only if the lease
still names this worker and the row is still ``pending`` (one compare-and-set:
whatever happened to the lease, a row is handed to a provider once).

The heartbeat extends the worker's expiry and every lease it holds. A worker
whose expiry passed (killed, frozen, cut off) is *reaped* by any other: its
``sending`` rows, which were on the wire, become ``unknown`` exactly as after a
crash of a single run (``ledger.STALE_ERROR``), and its leases go, so its
``pending`` rows, never handed over, are read again by the living.

Planning (audience to ledger rows) is leased the same way, once per campaign
(``campaign_plans``): the first worker plans, the others send what is planned
and wait for the rest; if the planner dies, one of them plans again (planning
only adds missing rows, so a second planning is harmless).

Every call is one ``BEGIN IMMEDIATE`` transaction: SQLite has one writer at a
time, so on one file several processes get the same guarantees as on
PostgreSQL (``stampcli.store.postgres.leases``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from stampcli.records import Claim, PendingRow, WorkerInfo
from stampcli.store.db import BREAKER_SCHEMA, LEASE_SCHEMA, Store, now, store_error
from stampcli.store.ledger import STALE_ERROR

LEASE_FOR = 30.0  # seconds a lease lasts without a heartbeat (a few heartbeats' worth)
PLAN = "plan"  # this worker plans (plan_turn)
WAIT = "wait"  # another live worker is planning
DONE = "done"  # the live fleet planned already

_WORKER_COLUMNS = "owner, campaign_id, host, pid, started_at, heartbeat_at, until, claimed, rate"
_TAKE = (
    "SELECT l.id, l.key, l.email, l.fields, l.attempts, l.first_attempt_at FROM ledger l "
    "WHERE l.campaign_id = ? AND l.state = 'pending' AND l.id > ? AND NOT EXISTS "
    "(SELECT 1 FROM ledger_leases x WHERE x.ledger_id = l.id AND x.until >= ?) "
    "ORDER BY l.id LIMIT ?"
)
_MINE = (
    "SELECT l.id FROM ledger l JOIN ledger_leases x ON x.ledger_id = l.id "
    "WHERE x.owner = ? AND l.state = 'pending' AND l.id IN (SELECT value FROM json_each(?))"
)
_CLAIM = (
    "UPDATE ledger SET state = 'sending', attempts = attempts + 1, message_id = ?, "
    "first_attempt_at = COALESCE(first_attempt_at, ?), updated_at = ? "
    "WHERE id = ? AND state = 'pending'"
)
_SUPPRESS = (
    "UPDATE ledger SET state = 'suppressed', last_error = ?, updated_at = ? "
    "WHERE id = ? AND state = 'pending'"
)
_OUTSTANDING = (
    "SELECT COUNT(*) FROM ledger_leases x JOIN ledger l ON l.id = x.ledger_id "
    "WHERE x.campaign_id = ? AND x.owner != ? AND x.until >= ? "
    "AND (l.state = 'pending' OR l.state = 'sending')"
)


def host_pid(owner: str) -> tuple[str, int]:
    """The host and pid of an owner ``host:pid:random``."""
    host, pid, *_ = owner.split(":")
    return host, int(pid)


def ensure_tables(store: Store) -> None:
    """Make the lease tables in a store of the current version made before them (a
    read-only store is left alone: its reads of workers find none)."""
    if store.readonly:
        return
    try:
        store.conn.executescript(f"BEGIN IMMEDIATE;\n{LEASE_SCHEMA}{BREAKER_SCHEMA}\nCOMMIT;")
    except sqlite3.Error as exc:
        store._rollback()
        raise store_error(exc, store.path) from None


class SQLiteLeases:
    """:class:`stampcli.store.protocols.LeaseStore` in the SQLite store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        ensure_tables(store)

    # ------------------------------------------------------------------ workers

    def join(self, campaign_id: int, owner: str, *, until: float) -> None:
        host, pid = host_pid(owner)
        ts = now()
        with self._store.transaction() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO campaign_workers ({_WORKER_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)",
                (owner, campaign_id, host, pid, ts, ts, until),
            )

    def renew(self, owner: str, *, until: float, claimed: int = 0, rate: float = 0.0) -> bool:
        with self._store.transaction() as conn:
            ours = conn.execute(
                "UPDATE campaign_workers SET heartbeat_at = ?, until = ?, claimed = ?, rate = ? "
                "WHERE owner = ?",
                (now(), until, claimed, rate, owner),
            ).rowcount
            if not ours:
                return False
            # leases of rows that reached a final state are dropped, the rest extended
            conn.execute(
                "DELETE FROM ledger_leases WHERE owner = ? AND ledger_id IN (SELECT id FROM "
                "ledger WHERE id = ledger_leases.ledger_id AND state != 'pending' "
                "AND state != 'sending')",
                (owner,),
            )
            conn.execute("UPDATE ledger_leases SET until = ? WHERE owner = ?", (until, owner))
            conn.execute(
                "UPDATE campaign_plans SET until = ? WHERE owner = ? AND done_at IS NULL",
                (until, owner),
            )
        return True

    def leave(self, owner: str) -> None:
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM ledger_leases WHERE owner = ?", (owner,))
            conn.execute(
                "UPDATE campaign_plans SET owner = NULL, until = 0 "
                "WHERE owner = ? AND done_at IS NULL",
                (owner,),
            )
            conn.execute("DELETE FROM campaign_workers WHERE owner = ?", (owner,))

    def expire(self, owners: Sequence[str]) -> None:
        with self._store.transaction() as conn:
            for owner in owners:
                conn.execute("UPDATE campaign_workers SET until = 0 WHERE owner = ?", (owner,))
                conn.execute("UPDATE ledger_leases SET until = 0 WHERE owner = ?", (owner,))
                conn.execute(
                    "UPDATE campaign_plans SET until = 0 WHERE owner = ? AND done_at IS NULL",
                    (owner,),
                )

    def workers(
        self, campaign_id: int | None = None, *, at: float | None = None
    ) -> list[WorkerInfo]:
        at = now() if at is None else at
        sql = (
            "SELECT w.owner, w.campaign_id, w.host, w.pid, w.started_at, w.heartbeat_at, "
            "w.until, w.claimed, w.rate, c.name FROM campaign_workers w "
            "JOIN campaigns c ON c.id = w.campaign_id WHERE w.until >= ?"
        )
        params: tuple[float | int, ...] = (at,)
        if campaign_id is not None:
            sql += " AND w.campaign_id = ?"
            params = (at, campaign_id)
        try:
            found = self._store.conn.execute(sql + " ORDER BY w.started_at, w.owner", params)
            return [WorkerInfo(*r) for r in found.fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) and self._store.readonly:
                return []  # a read-only store older than the lease tables: no workers
            raise store_error(exc, self._store.path) from None
        except sqlite3.Error as exc:
            raise store_error(exc, self._store.path) from None

    def reap(self, campaign_id: int, *, at: float | None = None, orphans: bool = False) -> int:
        at = now() if at is None else at
        with self._store.transaction() as conn:
            # `sending` under an expired lease: on the wire when its worker died; as after
            # any crash, nobody can tell whether it went out
            gone = conn.execute(
                "UPDATE ledger SET state = 'unknown', updated_at = ?, last_error = ? "
                "WHERE id IN (SELECT ledger_id FROM ledger_leases WHERE campaign_id = ? "
                "AND until < ?) AND state = 'sending'",
                (at, STALE_ERROR, campaign_id, at),
            ).rowcount
            if orphans:  # `sending` with no live lease at all: a single run's, left when it died
                gone += conn.execute(
                    "UPDATE ledger SET state = 'unknown', updated_at = ?, last_error = ? "
                    "WHERE campaign_id = ? AND state = 'sending' AND NOT EXISTS (SELECT 1 "
                    "FROM ledger_leases x WHERE x.ledger_id = ledger.id AND x.until >= ?)",
                    (at, STALE_ERROR, campaign_id, at),
                ).rowcount
            conn.execute(
                "DELETE FROM ledger_leases WHERE campaign_id = ? AND until < ?", (campaign_id, at)
            )
            conn.execute(
                "DELETE FROM campaign_workers WHERE campaign_id = ? AND until < ?",
                (campaign_id, at),
            )
        return gone

    # ------------------------------------------------------------------ rows

    def take(
        self, campaign_id: int, owner: str, *, after_id: int, limit: int, until: float
    ) -> list[PendingRow]:
        at = now()
        with self._store.transaction() as conn:
            found = conn.execute(_TAKE, (campaign_id, after_id, at, limit)).fetchall()
            if not found and after_id:  # rows below may have come free (a dead worker's)
                found = conn.execute(_TAKE, (campaign_id, 0, at, limit)).fetchall()
            conn.executemany(
                "INSERT OR REPLACE INTO ledger_leases (ledger_id, campaign_id, owner, until) "
                "VALUES (?, ?, ?, ?)",
                [(r[0], campaign_id, owner, until) for r in found],
            )
        return list(map(PendingRow._make, found))

    def claim(
        self, owner: str, claims: Sequence[Claim], suppressed: Sequence[tuple[int, str]] = ()
    ) -> list[int]:
        ts = now()
        wanted = [c.id for c in claims] + [row_id for row_id, _ in suppressed]
        with self._store.transaction() as conn:
            mine = {r[0] for r in conn.execute(_MINE, (owner, json.dumps(wanted)))}
            if suppressed:
                conn.executemany(_SUPPRESS, [(why, ts, i) for i, why in suppressed if i in mine])
            go = [c for c in claims if c.id in mine]
            conn.executemany(_CLAIM, [(c.message_id, ts, ts, c.id) for c in go])
        return [c.id for c in go]

    def outstanding(self, campaign_id: int, owner: str, *, at: float | None = None) -> int:
        at = now() if at is None else at
        with self._store.errors():
            (n,) = self._store.conn.execute(_OUTSTANDING, (campaign_id, owner, at)).fetchone()
        return int(n)

    # ------------------------------------------------------------------ planning

    def plan_turn(self, campaign_id: int, owner: str, *, until: float) -> str:
        at = now()
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT owner, until, done_at FROM campaign_plans WHERE campaign_id = ?",
                (campaign_id,),
            ).fetchone()
            if row is not None:
                planner, planner_until, done_at = row
                if done_at is None and planner not in (None, owner) and planner_until >= at:
                    return WAIT
                if done_at is not None:
                    (others,) = conn.execute(
                        "SELECT COUNT(*) FROM campaign_workers WHERE campaign_id = ? "
                        "AND owner != ? AND until >= ? AND started_at <= ?",
                        (campaign_id, owner, at, done_at),
                    ).fetchone()
                    if others:
                        return DONE
            conn.execute(
                "INSERT OR REPLACE INTO campaign_plans (campaign_id, owner, until, done_at) "
                "VALUES (?, ?, ?, NULL)",
                (campaign_id, owner, until),
            )
        return PLAN

    def plan_done(self, campaign_id: int, owner: str) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE campaign_plans SET done_at = COALESCE(done_at, ?) "
                "WHERE campaign_id = ? AND owner = ?",
                (now(), campaign_id, owner),
            )

    def planning(self, campaign_id: int, *, at: float | None = None) -> bool:
        at = now() if at is None else at
        with self._store.errors():
            row = self._store.conn.execute(
                "SELECT 1 FROM campaign_plans WHERE campaign_id = ? AND done_at IS NULL "
                "AND owner IS NOT NULL AND until >= ?",
                (campaign_id, at),
            ).fetchone()
        return row is not None


class SQLiteRates:
    """:class:`stampcli.store.protocols.RateStore`: token buckets shared through the file."""

    def __init__(self, store: Store) -> None:
        self._store = store
        ensure_tables(store)

    def take_tokens(self, name: str, want: float, *, per_second: float, burst: float) -> float:
        with self._store.transaction() as conn:
            # the time is read once the write lock is held: read before, a writer that
            # got in first could leave a later stamp, and the time between would be
            # refilled twice (three workers on one file went ~30% over the rate)
            at = now()
            row = conn.execute(
                "SELECT tokens, stamp FROM rate_buckets WHERE name = ?", (name,)
            ).fetchone()
            tokens = (
                burst if row is None else min(burst, row[0] + max(0.0, at - row[1]) * per_second)
            )
            granted = max(0.0, min(want, tokens))
            conn.execute(
                "INSERT OR REPLACE INTO rate_buckets (name, tokens, stamp) VALUES (?, ?, ?)",
                (name, tokens - granted, at if row is None else max(at, row[1])),
            )
        return granted

    def give_tokens(self, name: str, n: float, *, burst: float) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE rate_buckets SET tokens = MIN(?, tokens + ?) WHERE name = ?",
                (burst, n, name),
            )

    def open_breaker(self, name: str, seconds: float, reason: str) -> None:
        with self._store.transaction() as conn:
            # a later end wins: two workers that both saw it down keep the longer spell
            conn.execute(
                "INSERT INTO provider_breakers (name, open_until, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET open_until = MAX(open_until, "
                "excluded.open_until), reason = excluded.reason",
                (name, now() + seconds, reason),
            )

    def close_breaker(self, name: str) -> None:
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM provider_breakers WHERE name = ?", (name,))

    def open_breakers(self) -> dict[str, tuple[float, str]]:
        at = now()
        with self._store.errors():
            rows = self._store.conn.execute(
                "SELECT name, open_until, reason FROM provider_breakers WHERE open_until > ?",
                (at,),
            ).fetchall()
        return {str(r[0]): (float(r[1]) - at, str(r[2])) for r in rows}
