"""The SQLite side of :class:`stampcli.store.protocols.FleetStore`: the queue and the workers.

``fleet_queue`` holds each campaign queued for ``stamp worker`` (definition,
files, when it is due, how its last run ended); ``fleet_workers`` one row per
worker process (heartbeat, what it sends). The tables are in the schema
(``stampcli.store.db.FLEET_SCHEMA``) and are also made here on first use, so
a store of the current version made before them gains them; a read-only store
without them reads as an empty queue and no workers.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from stampcli.records import QueuedDefinition, QueueEntry, WorkerRow
from stampcli.store.db import FLEET_SCHEMA, Store, now, store_error

_ENTRY = (
    "SELECT name, digest, state, due_at, added_at, updated_at, added_by, length(bundle), "
    "runs, last_run_at, last_reason, last_error, last_worker FROM fleet_queue"
)
_WORKER = (
    "SELECT id, host, pid, started_at, heartbeat_at, state, campaign, sent, stopped_at, rate "
    "FROM fleet_workers"
)


class SQLiteFleet:
    """:class:`stampcli.store.protocols.FleetStore` in the SQLite store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ready = store.readonly  # read-only: never create; a missing table reads empty

    def _ensure(self) -> None:
        if not self._ready:
            try:
                self._store.conn.executescript(f"BEGIN IMMEDIATE;\n{FLEET_SCHEMA}\nCOMMIT;")
            except sqlite3.Error as exc:
                self._store._rollback()
                raise store_error(exc, self._store.path) from None
            self._ready = True

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self._ensure()
        try:
            return list(self._store.conn.execute(sql, args).fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc) and self._store.readonly:
                return []
            raise store_error(exc, self._store.path) from None
        except sqlite3.Error as exc:
            raise store_error(exc, self._store.path) from None

    # ------------------------------------------------------------------ the queue

    def enqueue(
        self,
        name: str,
        definition: str,
        bundle: bytes,
        digest: str,
        *,
        added_by: str,
        due_at: float,
    ) -> bool:
        self._ensure()
        ts = now()
        with self._store.transaction() as conn:
            old = conn.execute("SELECT 1 FROM fleet_queue WHERE name = ?", (name,)).fetchone()
            conn.execute(
                "INSERT INTO fleet_queue (name, definition, bundle, digest, state, due_at, "
                "added_at, updated_at, added_by) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, "
                "bundle = excluded.bundle, digest = excluded.digest, state = 'queued', "
                "due_at = excluded.due_at, updated_at = excluded.updated_at, "
                "added_by = excluded.added_by, last_error = NULL",
                (name, definition, bundle, digest, due_at, ts, ts, added_by),
            )
        return old is None

    def dequeue(self, name: str) -> bool:
        self._ensure()
        with self._store.transaction() as conn:
            return conn.execute("DELETE FROM fleet_queue WHERE name = ?", (name,)).rowcount == 1

    def entries(self) -> list[QueueEntry]:
        return [QueueEntry(*r) for r in self._rows(f"{_ENTRY} ORDER BY name")]

    def due(self, at: float) -> list[QueueEntry]:
        rows = self._rows(
            f"{_ENTRY} WHERE state = 'queued' AND due_at <= ? ORDER BY due_at, name", (at,)
        )
        return [QueueEntry(*r) for r in rows]

    def definition(self, name: str) -> QueuedDefinition | None:
        rows = self._rows(
            "SELECT name, digest, definition, bundle FROM fleet_queue WHERE name = ?", (name,)
        )
        if not rows:
            return None
        n, digest, definition, bundle = rows[0]
        return QueuedDefinition(str(n), str(digest), str(definition), bytes(bundle))

    def settle(
        self,
        name: str,
        *,
        digest: str,
        state: str,
        due_at: float,
        reason: str,
        error: str | None,
        worker: str,
    ) -> bool:
        self._ensure()
        with self._store.transaction() as conn:
            cur = conn.execute(
                "UPDATE fleet_queue SET state = ?, due_at = ?, runs = runs + 1, "
                "last_run_at = ?, last_reason = ?, last_error = ?, last_worker = ? "
                "WHERE name = ? AND digest = ?",
                (state, due_at, now(), reason, error, worker, name, digest),
            )
            return cur.rowcount == 1

    # ------------------------------------------------------------------ workers

    def register_worker(self, worker: WorkerRow) -> None:
        self._ensure()
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO fleet_workers (id, host, pid, started_at, heartbeat_at, "
                "state, campaign, sent, stopped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (worker.id, worker.host, worker.pid, worker.started_at, worker.heartbeat_at,
                 worker.state, worker.campaign, worker.sent, worker.stopped_at),
            )  # fmt: skip

    def worker_heartbeat(
        self, worker_id: str, *, state: str, campaign: str | None, sent: int, rate: float = 0.0
    ) -> bool:
        self._ensure()
        with self._store.transaction() as conn:
            cur = conn.execute(
                "UPDATE fleet_workers SET heartbeat_at = ?, state = ?, campaign = ?, sent = ?, "
                "rate = ? WHERE id = ?",
                (now(), state, campaign, sent, rate, worker_id),
            )
            return cur.rowcount == 1

    def stop_worker(self, worker_id: str, *, sent: int) -> None:
        self._ensure()
        ts = now()
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE fleet_workers SET state = 'stopped', campaign = NULL, rate = 0, sent = ?, "
                "heartbeat_at = ?, stopped_at = ? WHERE id = ?",
                (sent, ts, ts, worker_id),
            )

    def workers(self) -> list[WorkerRow]:
        rows = self._rows(f"{_WORKER} ORDER BY started_at DESC, id")
        return [WorkerRow(*r) for r in rows]

    def forget_workers(self, seen_before: float) -> int:
        self._ensure()
        with self._store.transaction() as conn:
            cur = conn.execute("DELETE FROM fleet_workers WHERE heartbeat_at < ?", (seen_before,))
            return cur.rowcount
