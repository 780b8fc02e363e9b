"""The queue of ``stamp worker`` and its workers, in PostgreSQL: :class:`FleetStore`.

The same tables as the SQLite store's (:mod:`stampcli.store.fleet`), in
``schema.sql`` (schema 2). Each call is one statement: a worker on any host
sees another's writes as soon as they are made.
"""

from __future__ import annotations

from stampcli.records import QueuedDefinition, QueueEntry, WorkerRow
from stampcli.store.db import now
from stampcli.store.postgres.db import PostgresStore

ENTRY = (
    "SELECT name, digest, state, due_at, added_at, updated_at, added_by, octet_length(bundle), "
    "runs, last_run_at, last_reason, last_error, last_worker FROM fleet_queue"
)
ENQUEUE = (
    "INSERT INTO fleet_queue (name, definition, bundle, digest, state, due_at, added_at, "
    "updated_at, added_by) VALUES (%s, %s, %s, %s, 'queued', %s, %s, %s, %s) "
    "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, "
    "bundle = excluded.bundle, digest = excluded.digest, state = 'queued', "
    "due_at = excluded.due_at, updated_at = excluded.updated_at, "
    "added_by = excluded.added_by, last_error = NULL "
    "RETURNING (xmax = 0)"  # true: inserted, false: an existing row was updated
)
DEQUEUE = "DELETE FROM fleet_queue WHERE name = %s"
DEFINITION = "SELECT name, digest, definition, bundle FROM fleet_queue WHERE name = %s"
SETTLE = (
    "UPDATE fleet_queue SET state = %s, due_at = %s, runs = runs + 1, last_run_at = %s, "
    "last_reason = %s, last_error = %s, last_worker = %s WHERE name = %s AND digest = %s"
)
WORKER = (
    "SELECT id, host, pid, started_at, heartbeat_at, state, campaign, sent, stopped_at, rate "
    "FROM fleet_workers"
)
REGISTER = (
    "INSERT INTO fleet_workers (id, host, pid, started_at, heartbeat_at, state, campaign, "
    "sent, stopped_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
    "SET host = excluded.host, pid = excluded.pid, started_at = excluded.started_at, "
    "heartbeat_at = excluded.heartbeat_at, state = excluded.state, "
    "campaign = excluded.campaign, sent = excluded.sent, stopped_at = excluded.stopped_at"
)
HEARTBEAT = (
    "UPDATE fleet_workers SET heartbeat_at = %s, state = %s, campaign = %s, sent = %s, "
    "rate = %s WHERE id = %s"
)
STOP = (
    "UPDATE fleet_workers SET state = 'stopped', campaign = NULL, rate = 0, sent = %s, "
    "heartbeat_at = %s, stopped_at = %s WHERE id = %s"
)
FORGET = "DELETE FROM fleet_workers WHERE heartbeat_at < %s"


class PostgresFleet:
    """:class:`stampcli.store.protocols.FleetStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

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
        ts = now()
        with self._store.connection() as conn:
            row = conn.execute(
                ENQUEUE, (name, definition, bundle, digest, due_at, ts, ts, added_by)
            ).fetchone()
        return bool(row and row[0])

    def dequeue(self, name: str) -> bool:
        with self._store.connection() as conn:
            return conn.execute(DEQUEUE, (name,)).rowcount == 1

    def entries(self) -> list[QueueEntry]:
        with self._store.connection() as conn:
            rows = conn.execute(f"{ENTRY} ORDER BY name".encode()).fetchall()
        return [QueueEntry(*r) for r in rows]

    def due(self, at: float) -> list[QueueEntry]:
        sql = f"{ENTRY} WHERE state = 'queued' AND due_at <= %s ORDER BY due_at, name"
        with self._store.connection() as conn:
            rows = conn.execute(sql.encode(), (at,)).fetchall()
        return [QueueEntry(*r) for r in rows]

    def definition(self, name: str) -> QueuedDefinition | None:
        with self._store.connection() as conn:
            row = conn.execute(DEFINITION, (name,)).fetchone()
        if row is None:
            return None
        return QueuedDefinition(str(row[0]), str(row[1]), str(row[2]), bytes(row[3]))

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
        with self._store.connection() as conn:
            cur = conn.execute(SETTLE, (state, due_at, now(), reason, error, worker, name, digest))
            return cur.rowcount == 1

    def register_worker(self, worker: WorkerRow) -> None:
        with self._store.connection() as conn:
            conn.execute(
                REGISTER,
                (worker.id, worker.host, worker.pid, worker.started_at, worker.heartbeat_at,
                 worker.state, worker.campaign, worker.sent, worker.stopped_at),
            )  # fmt: skip

    def worker_heartbeat(
        self, worker_id: str, *, state: str, campaign: str | None, sent: int, rate: float = 0.0
    ) -> bool:
        with self._store.connection() as conn:
            cur = conn.execute(HEARTBEAT, (now(), state, campaign, sent, rate, worker_id))
            return cur.rowcount == 1

    def stop_worker(self, worker_id: str, *, sent: int) -> None:
        ts = now()
        with self._store.connection() as conn:
            conn.execute(STOP, (sent, ts, ts, worker_id))

    def workers(self) -> list[WorkerRow]:
        with self._store.connection() as conn:
            rows = conn.execute(f"{WORKER} ORDER BY started_at DESC, id".encode()).fetchall()
        return [WorkerRow(*r) for r in rows]

    def forget_workers(self, seen_before: float) -> int:
        with self._store.connection() as conn:
            return conn.execute(FORGET, (seen_before,)).rowcount
