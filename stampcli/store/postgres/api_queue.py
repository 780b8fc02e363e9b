"""The send API's queue in PostgreSQL: :class:`stampcli.store.protocols.ApiQueueStore`.

The same tables and rules as :mod:`stampcli.store.api_queue`. A claim takes due rows
``FOR UPDATE SKIP LOCKED``, so any number of serve processes and workers on any
number of hosts drain one queue without waiting on each other or claiming a row
twice; an Idempotency-Key is inserted ``ON CONFLICT DO NOTHING`` in the messages'
transaction, so of two concurrent requests with one key exactly one queues.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from stampcli.records import ApiMessageRow, Enqueued, EventRow
from stampcli.store.api_queue import _COLUMNS, row_of
from stampcli.store.postgres.db import PostgresStore
from stampcli.store.postgres.events import COLUMNS as _EVENT_COLUMNS
from stampcli.store.postgres.events import _row as _event_row

_INSERT_KEY = (
    "INSERT INTO api_idempotency (pool, key, request_hash, message_ids, wait, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (pool, key) DO NOTHING RETURNING key"
)
_SETTLE = (
    "UPDATE api_messages SET state = %s, provider = %s, results = %s, "
    "attempts = attempts + %s, detail = %s, next_at = %s, updated_at = %s, "
    "lease_owner = NULL, lease_until = NULL "
    "WHERE id = %s AND state = 'sending' AND lease_owner = %s"
)


class PostgresApiQueue:
    """``api_messages`` and ``api_idempotency`` in the PostgreSQL store."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def enqueue(
        self,
        pool: str,
        items: Sequence[tuple[str, str]],
        *,
        now: float,
        key: str | None = None,
        request_hash: str = "",
        wait: bool = False,
        ttl: float = 24 * 3600.0,
        next_at: float = 0.0,
    ) -> Enqueued:
        ids = [i for i, _ in items]
        with self._store.transaction() as conn:
            if key is not None:
                conn.execute(
                    "DELETE FROM api_idempotency WHERE pool = %s AND key = %s AND created_at < %s",
                    (pool, key, now - ttl),
                )
                made = conn.execute(
                    _INSERT_KEY, (pool, key, request_hash, json.dumps(ids), wait, now)
                ).fetchone()
                if made is None:  # the key's row exists (a concurrent insert waited for it)
                    found = conn.execute(
                        "SELECT message_ids, request_hash, wait FROM api_idempotency "
                        "WHERE pool = %s AND key = %s",
                        (pool, key),
                    ).fetchone()
                    assert found is not None  # rows are deleted only past their ttl
                    return Enqueued(tuple(json.loads(found[0])), False, found[1], bool(found[2]))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO api_messages (id, pool, state, request, created_at, updated_at, "
                    "next_at) VALUES (%s, %s, 'queued', %s, %s, %s, %s)",
                    [(mid, pool, request, now, now, next_at) for mid, request in items],
                )
        return Enqueued(tuple(ids), True, request_hash, wait)

    def claim(
        self,
        owner: str,
        *,
        now: float,
        lease: float,
        limit: int = 100,
        ids: Sequence[str] | None = None,
    ) -> list[ApiMessageRow]:
        if ids is not None:
            pick = (
                "SELECT id FROM api_messages WHERE state = 'queued' AND id = ANY(%s) "
                "FOR UPDATE SKIP LOCKED"
            )
            params: list[Any] = [list(ids)]
        else:
            pick = (
                "SELECT id FROM api_messages WHERE state = 'queued' AND next_at <= %s "
                "ORDER BY next_at, created_at LIMIT %s FOR UPDATE SKIP LOCKED"
            )
            params = [now, limit]
        with self._store.transaction() as conn:
            found = conn.execute(
                f"UPDATE api_messages SET state = 'sending', lease_owner = %s, lease_until = %s, "
                f"updated_at = %s WHERE id IN ({pick}) RETURNING {_COLUMNS}",
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
        with self._store.transaction() as conn, conn.cursor() as cur:
            done = 0
            for mid, state, provider, results, attempts, detail, next_at in fates:
                cur.execute(
                    _SETTLE, (state, provider, results, attempts, detail, next_at, now, mid, owner)
                )
                done += cur.rowcount
            return done

    def expire_leases(self, now: float) -> int:
        with self._store.connection() as conn:
            cur = conn.execute(
                "UPDATE api_messages SET state = 'unknown', updated_at = %s, lease_owner = NULL, "
                "lease_until = NULL, detail = 'the process sending it stopped mid-send; it may "
                "or may not have been accepted' WHERE state = 'sending' AND lease_until < %s",
                (now, now),
            )
            return int(cur.rowcount)

    def get(self, ids: Collection[str]) -> list[ApiMessageRow]:
        with self._store.connection() as conn:
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM api_messages WHERE id = ANY(%s)", (list(ids),)
            ).fetchall()
        return [row_of(r) for r in found]

    def counts(self) -> dict[str, int]:
        with self._store.connection() as conn:
            found = conn.execute(
                "SELECT state, count(*) FROM api_messages GROUP BY state"
            ).fetchall()
        return {str(s): int(n) for s, n in found}

    def events_for(self, message_id: str, *, limit: int = 1000) -> list[EventRow]:
        with self._store.connection() as conn:
            found = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE campaign = %s "
                "ORDER BY occurred_at, id LIMIT %s",
                (message_id, limit),
            ).fetchall()
        return [_event_row(r) for r in found]

    def purge_keys(self, before: float) -> int:
        with self._store.connection() as conn:
            cur = conn.execute("DELETE FROM api_idempotency WHERE created_at < %s", (before,))
            return int(cur.rowcount)
