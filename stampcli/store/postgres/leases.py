"""Row leases for several workers on one campaign, in PostgreSQL.

:class:`stampcli.store.protocols.LeaseStore` and ``RateStore`` with the rules of
:mod:`stampcli.store.leases`. Workers on any number of hosts take rows with
``FOR UPDATE SKIP LOCKED`` (two takers never wait for each other, each gets
other rows), and claim with a compare-and-set on the row's state and lease
owner, so a row goes to a provider once whatever the timing. Leases live in
their own table so that taking and renewing them never rewrites ledger rows
(claims and records stay HOT updates, see schema.sql). Rate buckets count
time by the server's clock: the workers' clocks need not agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from stampcli.records import Claim, PendingRow, WorkerInfo
from stampcli.store.db import now
from stampcli.store.leases import DONE, PLAN, WAIT, host_pid
from stampcli.store.ledger import STALE_ERROR
from stampcli.store.postgres.db import PostgresStore

_WORKER_COLUMNS = "owner, campaign_id, host, pid, started_at, heartbeat_at, until, claimed, rate"
JOIN = (
    f"INSERT INTO campaign_workers ({_WORKER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, 0, 0) "
    "ON CONFLICT (owner) DO UPDATE SET campaign_id = excluded.campaign_id, "
    "started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
    "until = excluded.until, claimed = 0, rate = 0"
)
RENEW_WORKER = (
    "UPDATE campaign_workers SET heartbeat_at = %s, until = %s, claimed = %s, rate = %s "
    "WHERE owner = %s"
)
# leases of rows that reached a final state are dropped, the rest extended
DROP_SETTLED = (
    "DELETE FROM ledger_leases AS x USING ledger AS l WHERE x.owner = %s "
    "AND l.id = x.ledger_id AND l.state <> 'pending' AND l.state <> 'sending'"
)
RENEW_LEASES = "UPDATE ledger_leases SET until = %s WHERE owner = %s"
RENEW_PLAN = "UPDATE campaign_plans SET until = %s WHERE owner = %s AND done_at IS NULL"
LEAVE_LEASES = "DELETE FROM ledger_leases WHERE owner = %s"
LEAVE_PLAN = (
    "UPDATE campaign_plans SET owner = NULL, until = 0 WHERE owner = %s AND done_at IS NULL"
)
LEAVE_WORKER = "DELETE FROM campaign_workers WHERE owner = %s"
WORKERS = (
    "SELECT w.owner, w.campaign_id, w.host, w.pid, w.started_at, w.heartbeat_at, w.until, "
    "w.claimed, w.rate, c.name FROM campaign_workers w JOIN campaigns c ON c.id = w.campaign_id "
    "WHERE w.until >= %s"
)
REAP = (
    "UPDATE ledger AS l SET state = 'unknown', updated_at = %s, last_error = %s "
    "FROM ledger_leases AS x WHERE x.campaign_id = %s AND x.until < %s "
    "AND l.id = x.ledger_id AND l.state = 'sending'"
)
# `sending` rows with no live lease at all: a single run's, left when it died
REAP_ORPHANS = (
    "UPDATE ledger AS l SET state = 'unknown', updated_at = %s, last_error = %s "
    "WHERE l.campaign_id = %s AND l.state = 'sending' AND NOT EXISTS "
    "(SELECT 1 FROM ledger_leases AS x WHERE x.ledger_id = l.id AND x.until >= %s)"
)
DROP_EXPIRED_LEASES = "DELETE FROM ledger_leases WHERE campaign_id = %s AND until < %s"
DROP_EXPIRED_WORKERS = "DELETE FROM campaign_workers WHERE campaign_id = %s AND until < %s"
# The rows come from `free` itself: every free row is leased (the upsert always writes),
# and joining the ledger again to the upsert's RETURNING made the planner scan the
# campaign's whole ledger once a batch (238 us a row at 10,000 rows, growing with it).
TAKE = (
    "WITH free AS (SELECT l.id, l.key, l.email, l.fields, l.attempts, l.first_attempt_at "
    "FROM ledger AS l WHERE l.campaign_id = %(c)s "
    "AND l.state = 'pending' AND l.id > %(after)s AND NOT EXISTS (SELECT 1 FROM "
    "ledger_leases AS x WHERE x.ledger_id = l.id AND x.until >= %(at)s) "
    "ORDER BY l.id LIMIT %(n)s FOR UPDATE OF l SKIP LOCKED), "
    "leased AS (INSERT INTO ledger_leases (ledger_id, campaign_id, owner, until) "
    "SELECT id, %(c)s, %(owner)s, %(until)s FROM free ON CONFLICT (ledger_id) DO UPDATE "
    "SET owner = excluded.owner, until = excluded.until) "
    "SELECT id, key, email, fields, attempts, first_attempt_at FROM free ORDER BY id"
)
MINE = (
    "SELECT l.id FROM ledger AS l JOIN ledger_leases AS x ON x.ledger_id = l.id "
    "WHERE x.owner = %s AND l.id = ANY(%s::bigint[]) AND l.state = 'pending' FOR UPDATE OF l"
)
SUPPRESS = (
    "UPDATE ledger AS l SET state = 'suppressed', last_error = s.why, updated_at = %s "
    "FROM unnest(%s::bigint[], %s::text[]) AS s(id, why) "
    "WHERE l.id = s.id AND l.state = 'pending'"
)
CLAIM = (
    "UPDATE ledger AS l SET state = 'sending', attempts = l.attempts + 1, "
    "message_id = c.message_id, first_attempt_at = COALESCE(l.first_attempt_at, %s), "
    "updated_at = %s FROM unnest(%s::bigint[], %s::text[]) AS c(id, message_id) "
    "WHERE l.id = ANY(%s::bigint[]) AND l.id + 0 = c.id AND l.state = 'pending' RETURNING l.id"
)
# the same claim in one statement, for the rows a lease of ``owner`` holds (no suppressed
# rows: the common case): one round trip and one commit a batch, not four and one
CLAIM_MINE = (
    "UPDATE ledger AS l SET state = 'sending', attempts = l.attempts + 1, "
    "message_id = c.message_id, first_attempt_at = COALESCE(l.first_attempt_at, %s), "
    "updated_at = %s FROM unnest(%s::bigint[], %s::text[]) AS c(id, message_id) "
    "WHERE l.id = ANY(%s::bigint[]) AND l.id + 0 = c.id AND l.state = 'pending' "
    "AND EXISTS (SELECT 1 FROM ledger_leases AS x WHERE x.ledger_id = l.id AND x.owner = %s) "
    "RETURNING l.id"
)
OUTSTANDING = (
    "SELECT COUNT(*) FROM ledger_leases AS x JOIN ledger AS l ON l.id = x.ledger_id "
    "WHERE x.campaign_id = %s AND x.owner <> %s AND x.until >= %s "
    "AND (l.state = 'pending' OR l.state = 'sending')"
)
SERIALISE = "SELECT 1 FROM campaigns WHERE id = %s FOR UPDATE"
PLAN_ROW = "SELECT owner, until, done_at FROM campaign_plans WHERE campaign_id = %s"
FLEET_ALIVE = (
    "SELECT COUNT(*) FROM campaign_workers WHERE campaign_id = %s AND owner <> %s AND until >= %s "
    "AND started_at <= %s"
)
TAKE_PLAN = (
    "INSERT INTO campaign_plans (campaign_id, owner, until, done_at) VALUES (%s, %s, %s, NULL) "
    "ON CONFLICT (campaign_id) DO UPDATE SET owner = excluded.owner, until = excluded.until, "
    "done_at = NULL"
)
PLAN_DONE = (
    "UPDATE campaign_plans SET done_at = COALESCE(done_at, %s) "
    "WHERE campaign_id = %s AND owner = %s"
)
PLANNING = (
    "SELECT 1 FROM campaign_plans WHERE campaign_id = %s AND done_at IS NULL "
    "AND owner IS NOT NULL AND until >= %s"
)
# The bucket row is locked, refilled by the server's clock, and what it holds is taken.
ENSURE_BUCKET = (
    "INSERT INTO rate_buckets (name, tokens, stamp) "
    "VALUES (%s, %s, extract(epoch FROM clock_timestamp())) ON CONFLICT (name) DO NOTHING"
)
TAKE_TOKENS = (
    "WITH b AS (SELECT name, LEAST(%(burst)s, tokens + GREATEST(0, "
    "extract(epoch FROM clock_timestamp()) - stamp) * %(rate)s) AS full FROM rate_buckets "
    "WHERE name = %(name)s FOR UPDATE) "
    "UPDATE rate_buckets AS r SET tokens = b.full - LEAST(%(want)s, GREATEST(0, b.full)), "
    "stamp = GREATEST(r.stamp, extract(epoch FROM clock_timestamp())) "
    "FROM b WHERE r.name = b.name "
    "RETURNING LEAST(%(want)s, GREATEST(0, b.full))"
)
GIVE_TOKENS = "UPDATE rate_buckets SET tokens = LEAST(%s, tokens + %s) WHERE name = %s"
# Shared breakers, by the server's clock (hosts' clocks may differ): the later end wins
OPEN_BREAKER = (
    "INSERT INTO provider_breakers (name, open_until, reason) "
    "VALUES (%s, extract(epoch FROM clock_timestamp()) + %s, %s) ON CONFLICT (name) DO UPDATE "
    "SET open_until = GREATEST(provider_breakers.open_until, excluded.open_until), "
    "reason = excluded.reason"
)
CLOSE_BREAKER = "DELETE FROM provider_breakers WHERE name = %s"
OPEN_BREAKERS = (
    "SELECT name, open_until - extract(epoch FROM clock_timestamp()), reason "
    "FROM provider_breakers WHERE open_until > extract(epoch FROM clock_timestamp())"
)


class PostgresLeases:
    """:class:`stampcli.store.protocols.LeaseStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def join(self, campaign_id: int, owner: str, *, until: float) -> None:
        host, pid = host_pid(owner)
        ts = now()
        with self._store.connection() as conn:
            conn.execute(JOIN, (owner, campaign_id, host, pid, ts, ts, until))

    def renew(self, owner: str, *, until: float, claimed: int = 0, rate: float = 0.0) -> bool:
        with self._store.transaction() as conn:
            if not conn.execute(RENEW_WORKER, (now(), until, claimed, rate, owner)).rowcount:
                return False
            conn.execute(DROP_SETTLED, (owner,))
            conn.execute(RENEW_LEASES, (until, owner))
            conn.execute(RENEW_PLAN, (until, owner))
        return True

    def leave(self, owner: str) -> None:
        with self._store.transaction() as conn:
            conn.execute(LEAVE_LEASES, (owner,))
            conn.execute(LEAVE_PLAN, (owner,))
            conn.execute(LEAVE_WORKER, (owner,))

    def expire(self, owners: Sequence[str]) -> None:
        if not owners:
            return
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE campaign_workers SET until = 0 WHERE owner = ANY(%s)", (list(owners),)
            )
            conn.execute(
                "UPDATE ledger_leases SET until = 0 WHERE owner = ANY(%s)", (list(owners),)
            )
            conn.execute(
                "UPDATE campaign_plans SET until = 0 WHERE owner = ANY(%s) AND done_at IS NULL",
                (list(owners),),
            )

    def workers(
        self, campaign_id: int | None = None, *, at: float | None = None
    ) -> list[WorkerInfo]:
        at = now() if at is None else at
        with self._store.connection() as conn:
            if campaign_id is None:
                found = conn.execute(WORKERS + " ORDER BY w.started_at, w.owner", (at,))
            else:
                found = conn.execute(
                    WORKERS + " AND w.campaign_id = %s ORDER BY w.started_at, w.owner",
                    (at, campaign_id),
                )
            return [WorkerInfo(*r) for r in found.fetchall()]

    def reap(self, campaign_id: int, *, at: float | None = None, orphans: bool = False) -> int:
        at = now() if at is None else at
        with self._store.transaction() as conn:
            gone = conn.execute(REAP, (at, STALE_ERROR, campaign_id, at)).rowcount
            if orphans:
                gone += conn.execute(REAP_ORPHANS, (at, STALE_ERROR, campaign_id, at)).rowcount
            conn.execute(DROP_EXPIRED_LEASES, (campaign_id, at))
            conn.execute(DROP_EXPIRED_WORKERS, (campaign_id, at))
        return gone

    def take(
        self, campaign_id: int, owner: str, *, after_id: int, limit: int, until: float
    ) -> list[PendingRow]:
        args = {"c": campaign_id, "after": after_id, "at": now(), "n": limit, "owner": owner}
        args["until"] = until
        with self._store.connection() as conn:
            found = conn.execute(TAKE, args).fetchall()
            if not found and after_id:  # rows below may have come free (a dead worker's)
                found = conn.execute(TAKE, {**args, "after": 0}).fetchall()
        return list(map(PendingRow._make, found))

    def claim(
        self, owner: str, claims: Sequence[Claim], suppressed: Sequence[tuple[int, str]] = ()
    ) -> list[int]:
        ts = now()
        wanted = [c.id for c in claims] + [row_id for row_id, _ in suppressed]
        if not wanted:
            return []
        if not suppressed:
            ids = [c.id for c in claims]
            with self._store.connection() as conn:
                done = conn.execute(
                    CLAIM_MINE, (ts, ts, ids, [c.message_id for c in claims], ids, owner)
                )
                claimed = {r[0] for r in done.fetchall()}
            return [c.id for c in claims if c.id in claimed]
        with self._store.transaction() as conn:
            mine = {r[0] for r in conn.execute(MINE, (owner, wanted))}
            gone = [(i, why) for i, why in suppressed if i in mine]
            if gone:
                conn.execute(SUPPRESS, (ts, [i for i, _ in gone], [w for _, w in gone]))
            go = [c for c in claims if c.id in mine]
            if not go:
                return []
            ids = [c.id for c in go]
            done = conn.execute(CLAIM, (ts, ts, ids, [c.message_id for c in go], ids))
            claimed = {r[0] for r in done.fetchall()}
        return [c.id for c in go if c.id in claimed]

    def outstanding(self, campaign_id: int, owner: str, *, at: float | None = None) -> int:
        at = now() if at is None else at
        with self._store.connection() as conn:
            row = conn.execute(OUTSTANDING, (campaign_id, owner, at)).fetchone()
        return int(row[0]) if row else 0

    def plan_turn(self, campaign_id: int, owner: str, *, until: float) -> str:
        at = now()
        with self._store.transaction() as conn:
            conn.execute(SERIALISE, (campaign_id,))  # one decider at a time per campaign
            row = conn.execute(PLAN_ROW, (campaign_id,)).fetchone()
            if row is not None:
                planner, planner_until, done_at = row
                if done_at is None and planner not in (None, owner) and planner_until >= at:
                    return WAIT
                if done_at is not None:
                    alive = conn.execute(FLEET_ALIVE, (campaign_id, owner, at, done_at))
                    found = alive.fetchone()
                    if found is not None and found[0]:
                        return DONE
            conn.execute(TAKE_PLAN, (campaign_id, owner, until))
        return PLAN

    def plan_done(self, campaign_id: int, owner: str) -> None:
        with self._store.connection() as conn:
            conn.execute(PLAN_DONE, (now(), campaign_id, owner))

    def planning(self, campaign_id: int, *, at: float | None = None) -> bool:
        at = now() if at is None else at
        with self._store.connection() as conn:
            return conn.execute(PLANNING, (campaign_id, at)).fetchone() is not None


class PostgresRates:
    """:class:`stampcli.store.protocols.RateStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def take_tokens(self, name: str, want: float, *, per_second: float, burst: float) -> float:
        args = {"name": name, "want": want, "rate": per_second, "burst": burst}
        with self._store.connection() as conn:
            row = conn.execute(TAKE_TOKENS, args).fetchone()
            if row is None:  # the bucket's first use: made full, then taken from
                conn.execute(ENSURE_BUCKET, (name, burst))
                row = conn.execute(TAKE_TOKENS, args).fetchone()
        return float(row[0]) if row else 0.0

    def give_tokens(self, name: str, n: float, *, burst: float) -> None:
        with self._store.connection() as conn:
            conn.execute(GIVE_TOKENS, (burst, n, name))

    def open_breaker(self, name: str, seconds: float, reason: str) -> None:
        with self._store.connection() as conn:
            conn.execute(OPEN_BREAKER, (name, seconds, reason))

    def close_breaker(self, name: str) -> None:
        with self._store.connection() as conn:
            conn.execute(CLOSE_BREAKER, (name,))

    def open_breakers(self) -> dict[str, tuple[float, str]]:
        with self._store.connection() as conn:
            rows = conn.execute(OPEN_BREAKERS).fetchall()
        return {str(r[0]): (float(r[1]), str(r[2])) for r in rows}
