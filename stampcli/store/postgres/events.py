"""Delivery events in PostgreSQL: :class:`stampcli.store.protocols.EventStore`.

The same rows and lookups as :mod:`stampcli.store.events` (the SQLite side);
what an event means is decided in :mod:`stampcli.service.events`. A batch is
one statement over arrays (``unnest``), as in :mod:`.ledger`: storing 500
webhook events, or finding their 500 ledger rows, is one round trip. A
redelivered event meets ``ON CONFLICT (provider, event_id) DO NOTHING`` and
leaves the first row as it was.

Ledger rows are found through ``ledger_by_key`` (schema.sql): by recipient,
then by campaign or provider message id among that recipient's few rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from stampcli.records import EventRow, EventWrite, LedgerRef
from stampcli.store.db import now
from stampcli.store.events import COUNTED, KIND_SQL
from stampcli.store.postgres.db import PostgresStore

# in EventRow's field order
COLUMNS = (
    "provider, event_id, type, occurred_at, recipient, bounce_kind, auto_reply, campaign, "
    "campaign_id, ledger_id, matched_by, message_id, reason, url, raw"
)
_ARRAYS = (
    "%(provider)b::text[], %(event_id)b::text[], %(type)b::text[], %(occurred_at)b::float8[], "
    "%(recipient)b::text[], %(bounce_kind)b::text[], %(auto_reply)b::boolean[], "
    "%(campaign)b::text[], %(campaign_id)b::bigint[], %(ledger_id)b::bigint[], "
    "%(matched_by)b::text[], %(message_id)b::text[], %(reason)b::text[], %(url)b::text[], "
    "%(raw)b::text[]"
)
# One statement: insert the first of each (provider, event id) not stored yet, in batch
# order, and answer per given row its id, whether it was this row that was stored, and
# whether the stored one was applied. Rows inserted here are invisible to the join on
# `events` (one snapshot), so they come from the INSERT's RETURNING.
ADD = (
    f"WITH r AS (SELECT * FROM unnest({_ARRAYS}) WITH ORDINALITY AS r({COLUMNS}, n)), "
    "firsts AS (SELECT provider, event_id, min(n) AS n FROM r GROUP BY provider, event_id), "
    f"ins AS (INSERT INTO events ({COLUMNS}, received_at, applied) "
    f"SELECT {', '.join('r.' + c.strip() for c in COLUMNS.split(','))}, %(received_at)s, "
    "a.applied FROM r JOIN firsts AS f ON f.n = r.n "
    "JOIN unnest(%(applied)b::boolean[]) WITH ORDINALITY AS a(applied, n) ON a.n = r.n "
    "ORDER BY r.n "
    "ON CONFLICT (provider, event_id) DO NOTHING RETURNING id, provider, event_id, applied) "
    "SELECT COALESCE(ins.id, e.id), ins.id IS NOT NULL AND f.n = r.n, "
    "COALESCE(ins.applied, e.applied, false) "
    "FROM r JOIN firsts AS f ON f.provider = r.provider AND f.event_id = r.event_id "
    "LEFT JOIN ins ON ins.provider = r.provider AND ins.event_id = r.event_id "
    "LEFT JOIN events AS e ON e.provider = r.provider AND e.event_id = r.event_id "
    "ORDER BY r.n"
)
# a row another process stored after ADD's snapshot was taken (its INSERT waited, then
# skipped it): read once that process has committed
FIND = (
    "SELECT e.provider, e.event_id, e.id, e.applied FROM events AS e "
    "JOIN unnest(%b::text[], %b::text[]) AS p(provider, event_id) "
    "ON e.provider = p.provider AND e.event_id = p.event_id"
)
MARK_APPLIED = "UPDATE events SET applied = true WHERE id = ANY(%b::bigint[]) AND NOT applied"
_REF = "l.id, l.campaign_id, c.name, l.key, l.state"
BY_KEY = (
    f"SELECT {_REF} FROM unnest(%b::text[], %b::text[]) AS p(name, key) "
    "JOIN campaigns AS c ON c.name = p.name "
    "JOIN ledger AS l ON l.campaign_id = c.id AND l.key = p.key"
)
# by recipient (indexed), then the id among its rows; ordered so the newest comes last
BY_MESSAGE_ID = (
    f"SELECT l.provider_message_id, {_REF} FROM ledger AS l "
    "JOIN campaigns AS c ON c.id = l.campaign_id "
    "WHERE l.key = ANY(%b::text[]) AND l.provider_message_id = ANY(%b::text[]) ORDER BY l.id"
)
BY_ADDRESS = (
    f"SELECT DISTINCT ON (l.key) {_REF} FROM ledger AS l "
    "JOIN campaigns AS c ON c.id = l.campaign_id "
    "WHERE l.key = ANY(%b::text[]) AND l.first_attempt_at IS NOT NULL "
    "ORDER BY l.key, COALESCE(l.sent_at, l.first_attempt_at) DESC, l.id DESC"
)
BY_LEDGER_ID = (
    f"SELECT {_REF} FROM ledger AS l JOIN campaigns AS c ON c.id = l.campaign_id "
    "WHERE l.id = ANY(%b::bigint[])"
)
BY_RFC_MESSAGE_ID = (
    f"SELECT l.message_id, {_REF} FROM ledger AS l "
    "JOIN campaigns AS c ON c.id = l.campaign_id "
    "WHERE l.key = ANY(%b::text[]) AND l.message_id = ANY(%b::text[])"
)
# matched by `l.id + 0` for the reason given in ledger.py (CLAIM)
RESOLVE = (
    "UPDATE ledger AS l SET state = m.state, updated_at = %(ts)s, "
    "sent_at = CASE WHEN m.state = 'sent' THEN COALESCE(l.sent_at, %(ts)s) ELSE l.sent_at END, "
    "last_error = m.error "
    "FROM unnest(%(ids)b::bigint[], %(states)b::text[], %(errors)b::text[]) "
    "AS m(id, state, error) "
    "WHERE l.id = ANY(%(ids)b::bigint[]) AND l.id + 0 = m.id AND l.state = 'unknown'"
)
SOFT_BOUNCES = (
    "SELECT count(*) FROM events WHERE recipient = %(key)s AND type = 'bounced' "
    "AND bounce_kind = 'soft' AND occurred_at >= %(since)s AND occurred_at > COALESCE("
    "(SELECT max(occurred_at) FROM events WHERE recipient = %(key)s AND type = 'delivered'), 0)"
)
COUNTS = (
    f"SELECT {KIND_SQL.replace('%', '%%')} AS kind, count(*), count(DISTINCT recipient) "
    "FROM events WHERE campaign_id = %s AND received_at >= %s GROUP BY 1"
)
AUTOSTOP_COUNTS = (
    "SELECT count(DISTINCT recipient) FILTER (WHERE type = 'bounced'), "
    "count(DISTINCT recipient) FILTER (WHERE type = 'complained') "
    "FROM events WHERE campaign_id = %s AND type IN ('bounced', 'complained') "
    "AND (type = 'complained' OR bounce_kind = 'hard') AND received_at >= %s"
)
UNMATCHED = "SELECT count(*) FROM events WHERE ledger_id IS NULL"
ROWS = f"SELECT {COLUMNS} FROM events WHERE campaign_id = %s ORDER BY occurred_at, id LIMIT %s"
ROWS_UNMATCHED = (
    f"SELECT {COLUMNS} FROM events WHERE ledger_id IS NULL ORDER BY occurred_at, id LIMIT %s"
)
CURSOR = "SELECT cursor FROM event_cursors WHERE provider = %s AND account = %s"
SET_CURSOR = (
    "INSERT INTO event_cursors (provider, account, cursor, updated_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (provider, account) "
    "DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
)
_FIELDS = tuple(c.strip() for c in COLUMNS.split(","))


def _row(values: Sequence[Any]) -> EventRow:
    fields = dict(zip(_FIELDS, values, strict=True))
    fields["auto_reply"] = bool(fields["auto_reply"])
    return EventRow(**fields)


class PostgresEvents:
    """:class:`stampcli.store.protocols.EventStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def add(
        self,
        rows: Sequence[EventRow],
        *,
        received_at: float,
        applied: Sequence[bool] | None = None,
    ) -> list[EventWrite]:
        if not rows:
            return []
        args: dict[str, Any] = {name: [getattr(r, name) for r in rows] for name in _FIELDS}
        args["applied"] = [False] * len(rows) if applied is None else [bool(a) for a in applied]
        args["auto_reply"] = [bool(r.auto_reply) for r in rows]
        args["occurred_at"] = [float(r.occurred_at) for r in rows]
        args["received_at"] = received_at
        with self._store.connection() as conn:
            found = conn.execute(ADD, args).fetchall()
            missing = sorted(
                {(r.provider, r.event_id) for r, f in zip(rows, found, strict=True) if f[0] is None}
            )
            late: dict[tuple[str, str], tuple[int, bool]] = {}
            if missing:
                cur = conn.execute(FIND, ([p for p, _ in missing], [e for _, e in missing]))
                late = {(p, e): (int(i), bool(a)) for p, e, i, a in cur}
        out: list[EventWrite] = []
        for r, (event_id, new, done) in zip(rows, found, strict=True):
            if event_id is None:
                event_id, done = late[(r.provider, r.event_id)]
            out.append(EventWrite(int(event_id), bool(new), bool(done)))
        return out

    def mark_applied(self, event_ids: Collection[int]) -> None:
        ids = sorted(set(event_ids))
        if not ids:
            return
        with self._store.connection() as conn:
            conn.execute(MARK_APPLIED, (ids,))

    def by_key(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], LedgerRef]:
        wanted = sorted(set(pairs))
        if not wanted:
            return {}
        with self._store.connection() as conn:
            rows = conn.execute(BY_KEY, ([n for n, _ in wanted], [k for _, k in wanted]))
            return {(row[2], row[3]): LedgerRef(*row) for row in rows}

    def by_message_id(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], LedgerRef]:
        wanted = set(pairs)
        if not wanted:
            return {}
        found: dict[tuple[str, str], LedgerRef] = {}
        keys = sorted({key for _, key in wanted})
        ids = sorted({mid for mid, _ in wanted})
        with self._store.connection() as conn:
            for mid, *ref in conn.execute(BY_MESSAGE_ID, (keys, ids)):
                if (mid, ref[3]) in wanted:
                    found[(mid, ref[3])] = LedgerRef(*ref)  # id order: the newest wins
        return found

    def by_address(self, keys: Collection[str]) -> dict[str, LedgerRef]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        with self._store.connection() as conn:
            return {row[3]: LedgerRef(*row) for row in conn.execute(BY_ADDRESS, (wanted,))}

    def by_ledger_id(self, ids: Collection[int]) -> dict[int, LedgerRef]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        with self._store.connection() as conn:
            return {row[0]: LedgerRef(*row) for row in conn.execute(BY_LEDGER_ID, (wanted,))}

    def by_rfc_message_id(
        self, pairs: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], LedgerRef]:
        wanted = set(pairs)
        if not wanted:
            return {}
        keys = sorted({key for _, key in wanted})
        mids = sorted({mid for mid, _ in wanted})
        found: dict[tuple[str, str], LedgerRef] = {}
        with self._store.connection() as conn:
            for mid, *ref in conn.execute(BY_RFC_MESSAGE_ID, (keys, mids)):
                if (mid, ref[3]) in wanted:
                    found[(mid, ref[3])] = LedgerRef(*ref)
        return found

    def resolve(self, moves: Sequence[tuple[int, str, str | None]]) -> int:
        first: dict[int, tuple[str, str | None]] = {}
        for ledger_id, state, error in moves:
            if state not in ("sent", "failed"):
                raise ValueError(f"resolve: an event cannot make a row {state!r}")
            # one UPDATE writes a row once: the first move of a row is the one that
            # applies, as it would one after another (the row is no longer unknown)
            first.setdefault(ledger_id, (state, error))
        if not first:
            return 0
        args = {
            "ts": now(),
            "ids": list(first),
            "states": [s for s, _ in first.values()],
            "errors": [e for _, e in first.values()],
        }
        with self._store.connection() as conn:
            return conn.execute(RESOLVE, args).rowcount

    def soft_bounces(self, key: str, since: float) -> int:
        with self._store.connection() as conn:
            row = conn.execute(SOFT_BOUNCES, {"key": key, "since": float(since)}).fetchone()
        return int(row[0]) if row else 0

    def counts(self, campaign_id: int, *, received_since: float | None = None) -> dict[str, int]:
        out = dict.fromkeys(COUNTED, 0)
        out.update({f"{name}_unique": 0 for name in COUNTED})
        since = float(received_since) if received_since is not None else 0.0
        with self._store.connection() as conn:
            for kind, n, unique in conn.execute(COUNTS, (campaign_id, since)):
                out[kind] = int(n)
                out[f"{kind}_unique"] = int(unique)
        return out

    def autostop_counts(
        self, campaign_id: int, *, received_since: float | None = None
    ) -> tuple[int, int]:
        since = float(received_since) if received_since is not None else 0.0
        with self._store.connection() as conn:
            row = conn.execute(AUTOSTOP_COUNTS, (campaign_id, since)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def unmatched(self) -> int:
        with self._store.connection() as conn:
            row = conn.execute(UNMATCHED).fetchone()
        return int(row[0]) if row else 0

    def rows(self, campaign_id: int | None = None, *, limit: int = 1000) -> list[EventRow]:
        with self._store.connection() as conn:
            if campaign_id is None:
                found = conn.execute(ROWS_UNMATCHED, (limit,)).fetchall()
            else:
                found = conn.execute(ROWS, (campaign_id, limit)).fetchall()
        return [_row(r) for r in found]

    def cursor(self, provider: str, account: str) -> str | None:
        with self._store.connection() as conn:
            row = conn.execute(CURSOR, (provider, account)).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, provider: str, account: str, cursor: str) -> None:
        with self._store.connection() as conn:
            conn.execute(SET_CURSOR, (provider, account, cursor, now()))
