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
from contextlib import nullcontext
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from stampcli.records import ApiMessageRow, Enqueued, EnqueueRequest, EventRow
from stampcli.store.api_queue import _COLUMNS, row_of
from stampcli.store.postgres.db import PostgresStore
from stampcli.store.postgres.events import COLUMNS as _EVENT_COLUMNS
from stampcli.store.postgres.events import _row as _event_row
from stampcli.store.postgres.quota import ENSURE
from stampcli.store.protocols import ApiQueueStore

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


class _OverQuota(Exception):
    """Raised inside a request's savepoint to undo its key: the quota had no room."""


def _enqueue_one(conn: psycopg.Connection[TupleRow], r: EnqueueRequest) -> Enqueued:
    """One request of a group, inside the group's transaction."""
    ids = [i for i, _ in r.items]
    if r.key is not None:
        conn.execute(
            "DELETE FROM api_idempotency WHERE pool = %s AND key = %s AND created_at < %s",
            (r.pool, r.key, r.now - r.ttl),
        )
    # the key first (a concurrent request with it waits here for this transaction), then
    # the quota; a request over its quota undoes its key with a savepoint (only needed then)
    undo = conn.transaction() if r.key is not None and r.quota is not None else nullcontext()
    try:
        with undo:
            if r.key is not None:
                made = conn.execute(
                    _INSERT_KEY, (r.pool, r.key, r.request_hash, json.dumps(ids), r.wait, r.now)
                ).fetchone()
                if made is None:  # the key is there (an earlier request, perhaps of this group)
                    found = conn.execute(
                        "SELECT message_ids, request_hash, wait FROM api_idempotency "
                        "WHERE pool = %s AND key = %s",
                        (r.pool, r.key),
                    ).fetchone()
                    assert found is not None  # rows are deleted only past their ttl
                    return Enqueued(tuple(json.loads(found[0])), False, found[1], bool(found[2]))
            if r.quota is not None:
                counter, day, limit = r.quota
                conn.execute(ENSURE, (counter, day))
                room = conn.execute(
                    "UPDATE quota_usage SET count = count + %s WHERE provider = %s AND day = %s "
                    "AND count + %s <= %s RETURNING count",
                    (len(ids), counter, day, len(ids), limit),
                ).fetchone()
                if room is None:
                    raise _OverQuota
    except _OverQuota:
        return Enqueued((), False, r.request_hash, r.wait, over_quota=True)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO api_messages (id, pool, state, request, created_at, updated_at, "
            "next_at) VALUES (%s, %s, 'queued', %s, %s, %s, %s)",
            [(mid, r.pool, request, r.now, r.now, r.next_at) for mid, request in r.items],
        )
    return Enqueued(tuple(ids), True, r.request_hash, r.wait)


class PostgresApiQueue(ApiQueueStore):
    """``api_messages`` and ``api_idempotency`` in the PostgreSQL store."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def enqueue_many(self, requests: Sequence[EnqueueRequest]) -> list[Enqueued]:
        # Every group takes its row locks in one order, the quota counters first, then
        # the keys, each sorted: two groups (two processes) holding the same keys or
        # counter in other orders would otherwise deadlock. Requests are handled in
        # that order; among equal keys the earlier request is the one that queues.
        order = sorted(
            range(len(requests)), key=lambda i: (requests[i].pool, requests[i].key or "")
        )
        counters = sorted({r.quota[:2] for r in requests if r.quota is not None})
        out: list[Enqueued | None] = [None] * len(requests)
        with self._store.transaction() as conn:
            for counter, day in counters:
                conn.execute(ENSURE, (counter, day))
                conn.execute(
                    "SELECT 1 FROM quota_usage WHERE provider = %s AND day = %s FOR UPDATE",
                    (counter, day),
                )
            for i in order:
                out[i] = _enqueue_one(conn, requests[i])
        return [o for o in out if o is not None]

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
