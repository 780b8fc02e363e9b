"""The campaign ledger in PostgreSQL: :class:`stampcli.store.protocols.LedgerStore`.

The states and their moves are those of :mod:`stampcli.store.ledger` (the
SQLite side), and so is the order that makes a crash harmless: a claim
commits before its messages leave. A batch is one statement over arrays
(``unnest``), so planning 1,000 rows, claiming 500 or recording 500 is one
round trip and one commit, not one per row.

A claim locks the rows it takes with ``FOR UPDATE ... SKIP LOCKED``: a row
another worker is claiming at the same instant is left to it, not waited for.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterable, Sequence
from itertools import islice
from typing import Any

from stampcli.records import Claim, ErrorRow, LedgerRow, NewRow, Outcome, PendingRow
from stampcli.store.db import now
from stampcli.store.ledger import RETRYABLE, STALE_ERROR, STATES
from stampcli.store.postgres.db import PostgresStore

CHUNK = 1000  # rows planned per statement, each chunk its own commit (as SQLite's)
ANALYZE_AFTER = 1000  # rows planned past which the planner's statistics are refreshed

INSERT = (
    "INSERT INTO ledger (campaign_id, key, email, fields, state, last_error, "
    "created_at, updated_at) "
    "SELECT %s, r.key, r.email, r.fields, r.state, r.last_error, %s, %s "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) "
    "WITH ORDINALITY AS r(key, email, fields, state, last_error, n) ORDER BY r.n "
    "ON CONFLICT (campaign_id, key) DO NOTHING"
)
MARK_STALE = (
    "UPDATE ledger SET state = 'unknown', updated_at = %s, lease_owner = NULL, "
    "lease_expires_at = NULL, last_error = %s WHERE campaign_id = %s AND state = 'sending'"
)
COUNT_STALE = (
    "SELECT count(*) FROM ledger WHERE campaign_id = %s AND state = 'unknown' AND last_error = %s"
)
# sent in the second before the latest sent_at (one statement: the latest found by index)
LAST_SECOND = (
    "SELECT count(*) FROM ledger WHERE campaign_id = %(c)s AND state = 'sent' AND sent_at > "
    "(SELECT max(sent_at) FROM ledger WHERE campaign_id = %(c)s AND state = 'sent') - 1.0"
)
EXPIRE = (
    "UPDATE ledger SET state = 'failed', updated_at = %s, last_error = "
    "'gave up: still deferred ' || trunc(%s::float8)::bigint::text || ' s after the "
    "first attempt; last answer: ' || COALESCE(last_error, '') "
    "WHERE campaign_id = %s AND state = 'deferred' AND first_attempt_at IS NOT NULL "
    "AND first_attempt_at + %s <= %s"
)
REQUEUE = (
    "UPDATE ledger SET state = 'pending', updated_at = %s WHERE campaign_id = %s "
    "AND state = 'deferred' AND COALESCE(next_attempt_at, 0) <= %s"
)
READ_PENDING = (
    "SELECT id, key, email, fields, attempts, first_attempt_at FROM ledger "
    "WHERE campaign_id = %s AND state = 'pending' AND id > %s ORDER BY id LIMIT %s"
)
SUPPRESS = (
    "UPDATE ledger AS l SET state = 'suppressed', last_error = s.why, updated_at = %s "
    "FROM unnest(%b::bigint[], %b::text[]) AS s(id, why) "
    "WHERE l.id = ANY(%b::bigint[]) AND l.id + 0 = s.id AND l.state = 'pending'"
)
# Each batch statement finds its rows by `id = ANY(ids)` alone, through the primary key,
# and matches them to the arrays' values by `l.id + 0 = o.id`, which no index can serve.
# A join on `l.id = o.id` was planned as a scan of the whole ledger (8-20 ms a batch at
# 20k rows, and growing), and both conditions on the index as 500 probes of 500 ids
# each (a claim 30 -> 300 ms).
# Rows locked by another worker's claim are skipped, not waited for; the state is
# checked again once the lock is ours (READ COMMITTED re-reads a row it waited on).
CLAIM = (
    "WITH mine AS (SELECT id FROM ledger WHERE id = ANY(%(ids)b::bigint[]) "
    "AND state = 'pending' FOR UPDATE SKIP LOCKED) "
    "UPDATE ledger AS l SET state = 'sending', attempts = l.attempts + 1, "
    "message_id = c.message_id, first_attempt_at = COALESCE(l.first_attempt_at, %(ts)s), "
    "updated_at = %(ts)s "
    "FROM mine JOIN unnest(%(ids)b::bigint[], %(mids)b::text[]) AS c(id, message_id) "
    "ON c.id = mine.id WHERE l.id = ANY(%(ids)b::bigint[]) AND l.id + 0 = mine.id RETURNING l.id"
)
RECORD = (
    "UPDATE ledger AS l SET state = o.state, provider = COALESCE(o.provider, l.provider), "
    "provider_message_id = COALESCE(o.pmid, l.provider_message_id), last_error = o.error, "
    "next_attempt_at = o.next_at, attempts = l.attempts + o.extra, updated_at = %s, "
    # a claim undone before the message left (extra -1) was no attempt
    "first_attempt_at = CASE WHEN l.attempts + o.extra <= 0 THEN NULL "
    "ELSE l.first_attempt_at END, "
    "sent_at = CASE WHEN o.state = 'sent' THEN %s ELSE l.sent_at END, "
    "lease_owner = NULL, lease_expires_at = NULL "
    "FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::float8[], %b::integer[]) AS o(id, state, provider, pmid, error, next_at, extra) "
    "WHERE l.id = ANY(%b::bigint[]) AND l.id + 0 = o.id AND l.state IN ('sending', 'pending')"
)
RETRY = (
    "UPDATE ledger SET state = 'pending', next_attempt_at = NULL, first_attempt_at = NULL, "
    "updated_at = %s WHERE campaign_id = %s AND state = ANY(%b::text[])"
)
COUNTS = "SELECT state, count(*) FROM ledger WHERE campaign_id = %s GROUP BY state"
PROVIDER_COUNTS = (
    "SELECT provider, state, count(*) FROM ledger WHERE campaign_id = %s "
    'AND provider IS NOT NULL GROUP BY provider, state ORDER BY provider COLLATE "C"'
)
LAST_ERRORS = (
    "SELECT key, state, provider, last_error, attempts, updated_at FROM ledger "
    "WHERE campaign_id = %s AND last_error IS NOT NULL AND state IN "
    "('failed', 'deferred', 'unknown') ORDER BY updated_at DESC, id DESC LIMIT %s"
)
ANSWER_STATS = (
    "SELECT "
    "count(*) FILTER (WHERE l.state IN ('sent', 'failed', 'deferred')), "
    "count(*) FILTER (WHERE l.state = 'failed' AND s.reason IN ('hard_bounce', 'invalid')), "
    "count(*) FILTER (WHERE l.state = 'failed' AND s.reason = 'complaint') "
    "FROM ledger AS l LEFT JOIN suppressions AS s "
    "ON s.key = l.key AND s.scope = '' AND s.source = l.provider "
    "WHERE l.campaign_id = %s AND l.provider IS NOT NULL"
)
ATTEMPTED = "SELECT 1 FROM ledger WHERE campaign_id = %s AND attempts > 0 LIMIT 1"
ROW_COLUMNS = (
    "id, key, email, fields, state, attempts, provider, provider_message_id, message_id, "
    "last_error, next_attempt_at, first_attempt_at, created_at, updated_at, sent_at"
)


def _segments(outcomes: Sequence[Outcome]) -> Iterable[list[Outcome]]:
    """``outcomes`` cut into runs in which no row comes twice.

    One UPDATE writes a row once however often it is joined, so a row recorded
    twice in a batch (unclaimed, then sent) needs a second statement after the
    first: what it ends as depends on the order given. Nearly always one run.
    """
    run: list[Outcome] = []
    seen: set[int] = set()
    for o in outcomes:
        if o.id in seen:
            yield run
            run, seen = [], set()
        run.append(o)
        seen.add(o.id)
    if run:
        yield run


class PostgresLedger:
    """:class:`stampcli.store.protocols.LedgerStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def insert(self, campaign_id: int, rows: Iterable[NewRow]) -> int:
        counts = deque(self.insert_steps(campaign_id, rows), maxlen=1)  # the last is the total
        return counts[0] if counts else 0

    def insert_steps(self, campaign_id: int, rows: Iterable[NewRow]) -> Generator[int, None, int]:
        added = 0
        ts = now()
        it = iter(rows)
        while chunk := list(islice(it, CHUNK)):
            with self._store.connection() as conn:
                cur = conn.execute(
                    INSERT,
                    (
                        campaign_id,
                        ts,
                        ts,
                        [r.key for r in chunk],
                        [r.email for r in chunk],
                        [r.fields for r in chunk],
                        [r.state for r in chunk],
                        [r.last_error for r in chunk],
                    ),
                )
                added += cur.rowcount
            yield added
        if added >= ANALYZE_AFTER:
            self._store.analyze("ledger")
        return added

    def mark_stale_sending(self, campaign_id: int) -> int:
        with self._store.connection() as conn:
            return conn.execute(MARK_STALE, (now(), STALE_ERROR, campaign_id)).rowcount

    def count_stale_unknown(self, campaign_id: int) -> int:
        with self._store.connection() as conn:
            row = conn.execute(COUNT_STALE, (campaign_id, STALE_ERROR)).fetchone()
        return int(row[0]) if row else 0

    def last_second_rate(self, campaign_id: int) -> float:
        with self._store.connection() as conn:
            row = conn.execute(LAST_SECOND, {"c": campaign_id}).fetchone()
        return float(row[0]) if row else 0.0

    def requeue_due(self, campaign_id: int, *, at: float, expire_after: float) -> tuple[int, int]:
        with self._store.transaction() as conn:
            expired = conn.execute(
                EXPIRE, (at, expire_after, campaign_id, expire_after, at)
            ).rowcount
            requeued = conn.execute(REQUEUE, (at, campaign_id, at)).rowcount
        return requeued, expired

    def read_pending(self, campaign_id: int, *, after_id: int, limit: int) -> list[PendingRow]:
        with self._store.connection() as conn:
            rows = conn.execute(READ_PENDING, (campaign_id, after_id, limit)).fetchall()
        return list(map(PendingRow._make, rows))

    def claim(self, claims: Sequence[Claim], suppressed: Sequence[tuple[int, str]] = ()) -> int:
        ts = now()
        args = {"ids": [c.id for c in claims], "mids": [c.message_id for c in claims], "ts": ts}
        if not suppressed:  # the usual claim: one statement, its own commit
            if not claims:
                return 0
            with self._store.connection() as conn:
                return len(conn.execute(CLAIM, args).fetchall())
        with self._store.transaction() as conn:
            gone = [row_id for row_id, _ in suppressed]
            conn.execute(SUPPRESS, (ts, gone, [why for _, why in suppressed], gone))
            return len(conn.execute(CLAIM, args).fetchall()) if claims else 0

    def record(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        ts = now()
        segments = list(_segments(outcomes))
        with self._store.connection() as conn:
            if len(segments) == 1:
                conn.execute(RECORD, _record_args(ts, segments[0]))
                return
            with conn.transaction():
                for run in segments:
                    conn.execute(RECORD, _record_args(ts, run))

    def retry(self, campaign_id: int, states: Sequence[str]) -> int:
        wanted = [s for s in states if s in RETRYABLE]
        if not wanted:
            return 0
        with self._store.connection() as conn:
            return conn.execute(RETRY, (now(), campaign_id, wanted)).rowcount

    def counts(self, campaign_id: int) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        with self._store.connection() as conn:
            for state, n in conn.execute(COUNTS, (campaign_id,)):
                out[state] = n
        return out

    def provider_counts(self, campaign_id: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        with self._store.connection() as conn:
            for provider, state, n in conn.execute(PROVIDER_COUNTS, (campaign_id,)):
                out.setdefault(provider, {})[state] = n
        return out

    def last_errors(self, campaign_id: int, limit: int = 10) -> list[ErrorRow]:
        with self._store.connection() as conn:
            rows = conn.execute(LAST_ERRORS, (campaign_id, limit)).fetchall()
        return [ErrorRow(*row) for row in rows]

    def answer_stats(self, campaign_id: int) -> tuple[int, int, int]:
        with self._store.connection() as conn:
            row = conn.execute(ANSWER_STATS, (campaign_id,)).fetchone()
        assert row is not None  # an aggregate always has its row
        return int(row[0]), int(row[1]), int(row[2])

    def attempted(self, campaign_id: int) -> bool:
        with self._store.connection() as conn:
            return conn.execute(ATTEMPTED, (campaign_id,)).fetchone() is not None

    def rows(self, campaign_id: int, state: str | None = None) -> list[LedgerRow]:
        with self._store.connection() as conn:
            if state is None:
                found = conn.execute(
                    f"SELECT {ROW_COLUMNS} FROM ledger WHERE campaign_id = %s ORDER BY id",
                    (campaign_id,),
                ).fetchall()
            else:
                found = conn.execute(
                    f"SELECT {ROW_COLUMNS} FROM ledger WHERE campaign_id = %s AND state = %s "
                    "ORDER BY id",
                    (campaign_id, state),
                ).fetchall()
        return [LedgerRow(*r) for r in found]

    def row(self, campaign_id: int, key: str) -> LedgerRow | None:
        with self._store.connection() as conn:
            found = conn.execute(
                f"SELECT {ROW_COLUMNS} FROM ledger WHERE campaign_id = %s AND key = %s",
                (campaign_id, key),
            ).fetchone()
        return None if found is None else LedgerRow(*found)


def _record_args(ts: float, run: list[Outcome]) -> tuple[Any, ...]:
    return (
        ts,
        ts,
        [o.id for o in run],
        [o.state for o in run],
        [o.provider for o in run],
        [o.provider_message_id for o in run],
        [o.last_error for o in run],
        [None if o.next_attempt_at is None else float(o.next_attempt_at) for o in run],
        [o.extra_attempts for o in run],
        [o.id for o in run],
    )
