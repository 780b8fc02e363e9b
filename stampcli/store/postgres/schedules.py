"""Schedule state in PostgreSQL: :class:`stampcli.store.protocols.ScheduleStore`.

The same rows and reads as :mod:`stampcli.store.schedules`; ``detail`` is ``jsonb``.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.types.json import Jsonb

from stampcli.records import ScheduleRow
from stampcli.store.postgres.db import PostgresStore
from stampcli.store.schedules import ENGAGED, row_of

COLUMNS = (
    "s.campaign_id, s.state, s.next_due_at, s.file, s.detail, s.ab_test_done_at, "
    "s.ab_winner, s.ab_decided_at, s.ab_manual, s.updated_at, c.name"
)
FROM = "FROM schedules AS s JOIN campaigns AS c ON c.id = s.campaign_id"
SAVE = (
    "INSERT INTO schedules (campaign_id, state, next_due_at, file, detail, ab_test_done_at, "
    "ab_winner, ab_decided_at, ab_manual, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (campaign_id) DO UPDATE SET state = excluded.state, "
    "next_due_at = excluded.next_due_at, file = excluded.file, detail = excluded.detail, "
    "ab_test_done_at = excluded.ab_test_done_at, ab_winner = excluded.ab_winner, "
    "ab_decided_at = excluded.ab_decided_at, ab_manual = excluded.ab_manual, "
    "updated_at = excluded.updated_at"
)


class PostgresSchedules:
    """:class:`stampcli.store.protocols.ScheduleStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def get(self, campaign_id: int) -> ScheduleRow | None:
        with self._store.connection() as conn:
            r = conn.execute(
                f"SELECT {COLUMNS} {FROM} WHERE s.campaign_id = %s", (campaign_id,)
            ).fetchone()
        return None if r is None else row_of(r)

    def save(self, row: ScheduleRow) -> None:
        with self._store.connection() as conn:
            conn.execute(
                SAVE,
                (
                    row.campaign_id, row.state, row.next_due_at, row.file, Jsonb(row.detail),
                    row.ab_test_done_at, row.ab_winner, row.ab_decided_at, row.ab_manual,
                    row.updated_at,
                ),
            )  # fmt: skip

    def all(self) -> list[ScheduleRow]:
        with self._store.connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} {FROM} ORDER BY s.next_due_at NULLS LAST, c.name"
            ).fetchall()
        return [row_of(r) for r in rows]

    def due(self, at: float) -> list[ScheduleRow]:
        with self._store.connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} {FROM} WHERE s.state <> 'done' AND s.next_due_at <= %s "
                "ORDER BY s.next_due_at, c.name",
                (at,),
            ).fetchall()
        return [row_of(r) for r in rows]

    def keys(self, campaign_id: int, states: Sequence[str]) -> list[str]:
        with self._store.connection() as conn:
            rows = conn.execute(
                "SELECT key FROM ledger WHERE campaign_id = %s AND state = ANY(%s::text[]) "
                "ORDER BY id",
                (campaign_id, list(states)),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def engaged(self, campaign_id: int) -> list[tuple[str, str]]:
        # psycopg takes % as a placeholder mark: the LIKE patterns' % are doubled
        sql = ENGAGED.replace("%", "%%").format(p="%s")
        with self._store.connection() as conn:
            rows = conn.execute(sql, (campaign_id,)).fetchall()
        return [(str(k), str(t)) for k, t in rows]
