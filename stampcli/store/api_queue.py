"""The send API's queue in SQLite: :class:`stampcli.store.protocols.ApiQueueStore`.

Messages handed to ``POST /v1/messages`` are rows of ``api_messages``; an
Idempotency-Key is a row of ``api_idempotency`` written in the same commit as
the messages it made, so a key either stands for its messages or for nothing.
A claim moves due ``queued`` rows to ``sending`` under a lease in one
``BEGIN IMMEDIATE`` transaction (one writer at a time: two processes never claim
the same row); a ``sending`` row whose lease ran out belonged to a process that
died mid-send and becomes ``unknown``, never sent again by itself.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from stampcli.records import ApiMessageRow, Enqueued, EnqueueRequest, EventRow
from stampcli.store.db import Store
from stampcli.store.events import _COLUMNS as _EVENT_COLUMNS
from stampcli.store.protocols import ApiQueueStore

_COLUMNS = (
    "id, pool, state, request, created_at, updated_at, attempts, provider, results, detail, next_at"
)
_CHUNK = 500  # ids per IN (...) list, under SQLite's variable limit


def row_of(values: Sequence[Any]) -> ApiMessageRow:
    """An :class:`ApiMessageRow` from a row selected as ``_COLUMNS`` (both backends)."""
    return ApiMessageRow(
        values[0],
        values[1],
        values[2],
        values[3],
        float(values[4]),
        float(values[5]),
        int(values[6]),
        values[7],
        values[8],
        values[9],
        float(values[10]),
    )


def _enqueue_one(conn: sqlite3.Connection, r: EnqueueRequest) -> Enqueued:
    """One request of a group, inside the group's transaction."""
    ids = [i for i, _ in r.items]
    if r.key is not None:
        conn.execute(
            "DELETE FROM api_idempotency WHERE pool = ? AND key = ? AND created_at < ?",
            (r.pool, r.key, r.now - r.ttl),
        )
        found = conn.execute(
            "SELECT message_ids, request_hash, wait FROM api_idempotency "
            "WHERE pool = ? AND key = ?",
            (r.pool, r.key),
        ).fetchone()
        if found is not None:
            return Enqueued(tuple(json.loads(found[0])), False, found[1], bool(found[2]))
    if r.quota is not None:
        counter, day, limit = r.quota
        row = conn.execute(
            "SELECT count FROM quota_usage WHERE provider = ? AND day = ?", (counter, day)
        ).fetchone()
        if (int(row[0]) if row else 0) + len(ids) > limit:
            return Enqueued((), False, r.request_hash, r.wait, over_quota=True)
        conn.execute(
            "INSERT INTO quota_usage (provider, day, count) VALUES (?, ?, ?) "
            "ON CONFLICT (provider, day) DO UPDATE SET count = count + excluded.count",
            (counter, day, len(ids)),
        )
    if r.key is not None:
        conn.execute(
            "INSERT INTO api_idempotency (pool, key, request_hash, message_ids, wait, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (r.pool, r.key, r.request_hash, json.dumps(ids), int(r.wait), r.now),
        )
    conn.executemany(
        "INSERT INTO api_messages (id, pool, state, request, created_at, updated_at, "
        "next_at) VALUES (?, ?, 'queued', ?, ?, ?, ?)",
        [(mid, r.pool, request, r.now, r.now, r.next_at) for mid, request in r.items],
    )
    return Enqueued(tuple(ids), True, r.request_hash, r.wait)


class SQLiteApiQueue(ApiQueueStore):
    """``api_messages`` and ``api_idempotency`` in the SQLite store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Enqueued]:
        with self._store.transaction() as conn:
            return [_enqueue_one(conn, r) for r in requests]

    def claim(
        self,
        owner: str,
        *,
        now: float,
        lease: float,
        limit: int = 100,
        ids: Sequence[str] | None = None,
    ) -> list[ApiMessageRow]:
        with self._store.transaction() as conn:
            if ids is not None:
                wanted = list(ids)[:_CHUNK]
                marks = ",".join("?" * len(wanted))
                where = f"state = 'queued' AND id IN ({marks})"
                params: list[Any] = wanted
            else:
                where = (
                    "id IN (SELECT id FROM api_messages WHERE state = 'queued' AND next_at <= ? "
                    "ORDER BY next_at, created_at LIMIT ?)"
                )
                params = [now, limit]
            found = conn.execute(
                f"UPDATE api_messages SET state = 'sending', lease_owner = ?, lease_until = ?, "
                f"updated_at = ? WHERE {where} RETURNING {_COLUMNS}",
                [owner, now + lease, now, *params],
            ).fetchall()
        return sorted((row_of(r) for r in found), key=lambda r: (r.created_at, r.id))

    def settle(
        self,
        owner: str,
        fates: Sequence[tuple[str, str, str | None, str | None, int, str | None, float]],
        *,
        now: float,
    ) -> int:
        with self._store.transaction() as conn:
            cur = conn.executemany(
                "UPDATE api_messages SET state = ?, provider = ?, results = ?, "
                "attempts = attempts + ?, detail = ?, next_at = ?, updated_at = ?, "
                "lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND state = 'sending' AND lease_owner = ?",
                [
                    (state, provider, results, attempts, detail, next_at, now, mid, owner)
                    for mid, state, provider, results, attempts, detail, next_at in fates
                ],
            )
            return int(cur.rowcount)

    def expire_leases(self, now: float) -> int:
        with self._store.transaction() as conn:
            cur = conn.execute(
                "UPDATE api_messages SET state = 'unknown', updated_at = ?, lease_owner = NULL, "
                "lease_until = NULL, detail = 'the process sending it stopped mid-send; it may "
                "or may not have been accepted' WHERE state = 'sending' AND lease_until < ?",
                (now, now),
            )
            return int(cur.rowcount)

    def get(self, ids: Collection[str]) -> list[ApiMessageRow]:
        out: list[ApiMessageRow] = []
        wanted = list(ids)
        with self._store.errors():
            for start in range(0, len(wanted), _CHUNK):
                part = wanted[start : start + _CHUNK]
                out += [
                    row_of(r)
                    for r in self._store.conn.execute(
                        f"SELECT {_COLUMNS} FROM api_messages WHERE id IN "
                        f"({','.join('?' * len(part))})",
                        part,
                    ).fetchall()
                ]
        return out

    def counts(self) -> dict[str, int]:
        with self._store.errors():
            found = self._store.conn.execute(
                "SELECT state, count(*) FROM api_messages GROUP BY state"
            ).fetchall()
        return {str(s): int(n) for s, n in found}

    def events_for(self, message_id: str, *, limit: int = 1000) -> list[EventRow]:
        with self._store.errors():
            found = self._store.conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE campaign = ? "
                "ORDER BY occurred_at, id LIMIT ?",
                (message_id, limit),
            ).fetchall()
        names = [c.strip() for c in _EVENT_COLUMNS.split(",")]
        out = []
        for values in found:
            fields = dict(zip(names, values, strict=True))
            fields["auto_reply"] = bool(fields["auto_reply"])
            out.append(EventRow(**fields))
        return out

    def purge_keys(self, before: float) -> int:
        with self._store.transaction() as conn:
            cur = conn.execute("DELETE FROM api_idempotency WHERE created_at < ?", (before,))
            return int(cur.rowcount)
