"""The ``events`` table: delivery events from providers, stored once each, and their lookups.

Webhooks (``stamp serve``) and pulls (``stamp events pull``) both end here
through :func:`stampcli.service.events.record_events`, which decides what an
event means; this module only stores rows, finds the ledger row an event is
about, and counts. ``(provider, event_id)`` is unique, so a provider that
redelivers (they all do, at least once) leaves one row. ``event_cursors``
holds where each provider account's pull left off.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from stampcli.records import EventRow, EventWrite, LedgerRef
from stampcli.store.db import Store, now, store_error

# the event types :func:`counts` always names (bounced is split by kind)
COUNTED = (
    "queued", "sent", "delivered", "deferred", "bounced_hard", "bounced_soft", "rejected",
    "dropped", "failed", "complained", "unsubscribed", "subscribed", "opened", "clicked",
    "auto_replied", "opened_machine", "clicked_machine",
)  # fmt: skip
# opens and clicks by machines (own tracking: reason "machine: ...", see
# stampcli.service.tracking) are counted apart from people's
KIND_SQL = (
    "CASE WHEN type = 'bounced' THEN 'bounced_' || COALESCE(bounce_kind, 'soft') "
    "WHEN type IN ('opened', 'clicked') AND reason LIKE 'machine:%' THEN type || '_machine' "
    "ELSE type END"
)
_CHUNK = 500  # host parameters per statement, well under old SQLite's 999

_COLUMNS = (
    "provider, event_id, type, occurred_at, recipient, bounce_kind, auto_reply, campaign, "
    "campaign_id, ledger_id, matched_by, message_id, reason, url, raw"
)
_INSERT = (
    f"INSERT INTO events ({_COLUMNS}, received_at, applied) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (provider, event_id) DO NOTHING"
)
# auto-stop's numerators: through events_by_campaign, only the bounces and complaints
AUTOSTOP_COUNTS = (
    "SELECT COUNT(DISTINCT CASE WHEN type = 'bounced' THEN recipient END), "
    "COUNT(DISTINCT CASE WHEN type = 'complained' THEN recipient END) "
    "FROM events WHERE campaign_id = ? AND type IN ('bounced', 'complained') "
    "AND (type = 'complained' OR bounce_kind = 'hard') AND received_at >= ?"
)
_REF = "l.id, l.campaign_id, c.name, l.key, l.state"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def add(
    store: Store,
    rows: Sequence[EventRow],
    *,
    received_at: float,
    applied: Sequence[bool] | None = None,
) -> list[EventWrite]:
    """Store each row once by (provider, event id), all in one commit; see the protocol."""
    out: list[EventWrite] = []
    flags = [False] * len(rows) if applied is None else applied
    with store.transaction() as conn:
        execute = conn.execute
        for r, done in zip(rows, flags, strict=True):
            cur = execute(
                _INSERT,
                (
                    r.provider, r.event_id, r.type, r.occurred_at, r.recipient, r.bounce_kind,
                    int(r.auto_reply), r.campaign, r.campaign_id, r.ledger_id, r.matched_by,
                    r.message_id, r.reason, r.url, r.raw, received_at, int(done),
                ),
            )  # fmt: skip
            if cur.rowcount == 1:
                out.append(EventWrite(int(cur.lastrowid or 0), True, bool(done)))
                continue
            found = conn.execute(
                "SELECT id, applied FROM events WHERE provider = ? AND event_id = ?",
                (r.provider, r.event_id),
            ).fetchone()
            out.append(EventWrite(int(found[0]), False, bool(found[1])))
    return out


def mark_applied(store: Store, event_ids: Collection[int]) -> None:
    ids = sorted(set(event_ids))
    if not ids:
        return
    with store.transaction() as conn:
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            conn.execute(f"UPDATE events SET applied = 1 WHERE id IN ({marks})", list(chunk))


def by_key(store: Store, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], LedgerRef]:
    """Ledger rows by (campaign name, recipient key)."""
    found: dict[tuple[str, str], LedgerRef] = {}
    by_campaign: dict[str, list[str]] = {}
    for name, key in set(pairs):
        by_campaign.setdefault(name, []).append(key)
    with store.errors():
        conn = store.conn
        for name, keys in by_campaign.items():
            # the campaign first: a name no campaign has (another sender's, a test
            # event's) costs one lookup; the ledger is then read by (campaign_id, key)
            got = conn.execute("SELECT id FROM campaigns WHERE name = ?", (name,)).fetchone()
            if got is None:
                continue
            campaign_id = got[0]
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT id, key, state FROM ledger WHERE campaign_id = ? AND key IN ({marks})",
                    [campaign_id, *chunk],
                )
                for ledger_id, key, state in rows:
                    found[(name, key)] = LedgerRef(ledger_id, campaign_id, name, key, state)
    return found


def by_message_id(
    store: Store, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], LedgerRef]:
    """Ledger rows by (provider message id recorded at send, recipient key); the newest
    where several match (one API call may answer one id for a whole batch: SendGrid)."""
    found: dict[tuple[str, str], LedgerRef] = {}
    wanted = set(pairs)
    ids = sorted({mid for mid, _ in wanted})
    with store.errors():
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = store.conn.execute(
                f"SELECT l.provider_message_id, {_REF} FROM ledger l "
                f"JOIN campaigns c ON c.id = l.campaign_id "
                f"WHERE l.provider_message_id IN ({marks}) ORDER BY l.id",
                list(chunk),
            )
            for mid, *ref in rows:
                if (mid, ref[3]) in wanted:
                    found[(mid, ref[3])] = LedgerRef(*ref)  # id order: the newest wins
    return found


def by_address(store: Store, keys: Collection[str]) -> dict[str, LedgerRef]:
    """Per recipient key, the row of the most recent send to it (handed to a provider)."""
    found: dict[str, LedgerRef] = {}
    wanted = sorted(set(keys))
    with store.errors():
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            # campaigns first (CROSS JOIN fixes the order in SQLite): the ledger is then
            # searched by its (campaign_id, key) index, where ``key IN`` alone scans it whole
            rows = store.conn.execute(
                f"SELECT {_REF} FROM campaigns c CROSS JOIN ledger l "
                f"WHERE l.campaign_id = c.id AND l.key IN ({marks}) "
                f"AND l.first_attempt_at IS NOT NULL "
                f"ORDER BY COALESCE(l.sent_at, l.first_attempt_at), l.id",
                list(chunk),
            )
            for row in rows:
                found[row[3]] = LedgerRef(*row)  # oldest first: the most recent wins
    return found


def by_ledger_id(store: Store, ids: Collection[int]) -> dict[int, LedgerRef]:
    """Ledger rows by id (what a VERP token names)."""
    found: dict[int, LedgerRef] = {}
    with store.errors():
        for chunk in _chunks(sorted(set(ids))):
            marks = ",".join("?" * len(chunk))
            rows = store.conn.execute(
                f"SELECT {_REF} FROM ledger l JOIN campaigns c ON c.id = l.campaign_id "
                f"WHERE l.id IN ({marks})",
                list(chunk),
            )
            for row in rows:
                found[row[0]] = LedgerRef(*row)
    return found


def by_rfc_message_id(
    store: Store, pairs: Collection[tuple[str, str]]
) -> dict[tuple[str, str], LedgerRef]:
    """Ledger rows by (stamp's Message-ID of the message, recipient key)."""
    found: dict[tuple[str, str], LedgerRef] = {}
    wanted = set(pairs)
    keys = sorted({key for _, key in wanted})
    with store.errors():
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            # by key through the (campaign_id, key) index, as by_address; the message
            # id column has no index of its own (a claim would pay for it)
            rows = store.conn.execute(
                f"SELECT l.message_id, {_REF} FROM campaigns c CROSS JOIN ledger l "
                f"WHERE l.campaign_id = c.id AND l.key IN ({marks}) "
                f"AND l.message_id IS NOT NULL",
                list(chunk),
            )
            for mid, *ref in rows:
                if (mid, ref[3]) in wanted:
                    found[(mid, ref[3])] = LedgerRef(*ref)
    return found


def resolve(store: Store, moves: Sequence[tuple[int, str, str | None]]) -> int:
    """Rows still ``unknown`` take the state an event showed (sent or failed)."""
    if not moves:
        return 0
    ts = now()
    moved = 0
    with store.transaction() as conn:
        for ledger_id, state, error in moves:
            if state not in ("sent", "failed"):
                raise ValueError(f"resolve: an event cannot make a row {state!r}")
            moved += conn.execute(
                "UPDATE ledger SET state = ?, updated_at = ?, "
                "sent_at = CASE WHEN ? = 'sent' THEN COALESCE(sent_at, ?) ELSE sent_at END, "
                "last_error = ? WHERE id = ? AND state = 'unknown'",
                (state, ts, state, ts, error, ledger_id),
            ).rowcount
    return moved


def soft_bounces(store: Store, key: str, since: float) -> int:
    """Soft bounces to ``key`` at or after ``since`` and after its latest delivery."""
    with store.errors():
        row = store.conn.execute(
            "SELECT COUNT(*) FROM events WHERE recipient = ? AND type = 'bounced' "
            "AND bounce_kind = 'soft' AND occurred_at >= ? AND occurred_at > COALESCE("
            "(SELECT MAX(occurred_at) FROM events WHERE recipient = ? AND type = 'delivered'), 0)",
            (key, since, key),
        ).fetchone()
    return int(row[0])


def counts(
    store: Store, campaign_id: int, *, received_since: float | None = None
) -> dict[str, int]:
    """The campaign's events by type and distinct recipients per type (``<type>_unique``)."""
    out = {name: 0 for name in COUNTED}
    out.update({f"{name}_unique": 0 for name in COUNTED})
    try:
        rows = store.conn.execute(
            f"SELECT {KIND_SQL} AS kind, COUNT(*), COUNT(DISTINCT recipient) "
            "FROM events WHERE campaign_id = ? AND received_at >= ? GROUP BY kind",
            (campaign_id, received_since if received_since is not None else 0.0),
        ).fetchall()
    except sqlite3.Error as exc:
        # a store written before schema 3, opened read-only (status): it has no events yet
        if "no such table: events" in str(exc):
            return out
        raise store_error(exc, store.path) from None
    for kind, n, unique in rows:
        out[kind] = int(n)
        out[f"{kind}_unique"] = int(unique)
    return out


def autostop_counts(
    store: Store, campaign_id: int, *, received_since: float | None = None
) -> tuple[int, int]:
    with store.errors():
        row = store.conn.execute(
            AUTOSTOP_COUNTS,
            (campaign_id, received_since if received_since is not None else 0.0),
        ).fetchone()
    return int(row[0]), int(row[1])


def unmatched(store: Store) -> int:
    with store.errors():
        return int(
            store.conn.execute("SELECT COUNT(*) FROM events WHERE ledger_id IS NULL").fetchone()[0]
        )


def rows(store: Store, campaign_id: int | None = None, *, limit: int = 1000) -> list[EventRow]:
    """Stored events of a campaign (None: those that matched nothing), oldest first."""
    where = "campaign_id = ?" if campaign_id is not None else "ledger_id IS NULL"
    params: list[Any] = [campaign_id] if campaign_id is not None else []
    with store.errors():
        found = store.conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY occurred_at, id LIMIT ?",
            [*params, limit],
        ).fetchall()
    # _COLUMNS is in EventRow's field order
    return [
        EventRow(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            bool(r[6]),
            r[7],
            r[8],
            r[9],
            r[10],
            r[11],
            r[12],
            r[13],
            r[14],
        )
        for r in found
    ]


def cursor(store: Store, provider: str, account: str) -> str | None:
    with store.errors():
        row = store.conn.execute(
            "SELECT cursor FROM event_cursors WHERE provider = ? AND account = ?",
            (provider, account),
        ).fetchone()
    return None if row is None else str(row[0])


def set_cursor(store: Store, provider: str, account: str, value: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO event_cursors (provider, account, cursor, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (provider, account) "
            "DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            (provider, account, value, now()),
        )


class SQLiteEvents:
    """:class:`stampcli.store.protocols.EventStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        rows: Sequence[EventRow],
        *,
        received_at: float,
        applied: Sequence[bool] | None = None,
    ) -> list[EventWrite]:
        return add(self._store, rows, received_at=received_at, applied=applied)

    def mark_applied(self, event_ids: Collection[int]) -> None:
        mark_applied(self._store, event_ids)

    def by_key(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], LedgerRef]:
        return by_key(self._store, pairs)

    def by_message_id(self, pairs: Collection[tuple[str, str]]) -> dict[tuple[str, str], LedgerRef]:
        return by_message_id(self._store, pairs)

    def by_address(self, keys: Collection[str]) -> dict[str, LedgerRef]:
        return by_address(self._store, keys)

    def by_ledger_id(self, ids: Collection[int]) -> dict[int, LedgerRef]:
        return by_ledger_id(self._store, ids)

    def by_rfc_message_id(
        self, pairs: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], LedgerRef]:
        return by_rfc_message_id(self._store, pairs)

    def resolve(self, moves: Sequence[tuple[int, str, str | None]]) -> int:
        return resolve(self._store, moves)

    def soft_bounces(self, key: str, since: float) -> int:
        return soft_bounces(self._store, key, since)

    def counts(self, campaign_id: int, *, received_since: float | None = None) -> dict[str, int]:
        return counts(self._store, campaign_id, received_since=received_since)

    def autostop_counts(
        self, campaign_id: int, *, received_since: float | None = None
    ) -> tuple[int, int]:
        return autostop_counts(self._store, campaign_id, received_since=received_since)

    def unmatched(self) -> int:
        return unmatched(self._store)

    def rows(self, campaign_id: int | None = None, *, limit: int = 1000) -> list[EventRow]:
        return rows(self._store, campaign_id, limit=limit)

    def cursor(self, provider: str, account: str) -> str | None:
        return cursor(self._store, provider, account)

    def set_cursor(self, provider: str, account: str, cursor: str) -> None:
        set_cursor(self._store, provider, account, cursor)
