"""Schedule state in SQLite: :class:`stampcli.store.protocols.ScheduleStore`.

One row per scheduled campaign (``schedules``): what its last run left (state,
next due time, the campaign file) and the A/B test's progress and winner. The
rules are :mod:`stampcli.schedule`; here rows are only kept and read, plus
the two reads the A/B winner needs (keys sent, recipients who engaged).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from stampcli.records import ScheduleRow
from stampcli.store.db import Store, store_error

_COLUMNS = (
    "s.campaign_id, s.state, s.next_due_at, s.file, s.detail, s.ab_test_done_at, "
    "s.ab_winner, s.ab_decided_at, s.ab_manual, s.updated_at, c.name"
)
_FROM = "FROM schedules AS s JOIN campaigns AS c ON c.id = s.campaign_id"
_SAVE = (
    "INSERT INTO schedules (campaign_id, state, next_due_at, file, detail, ab_test_done_at, "
    "ab_winner, ab_decided_at, ab_manual, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (campaign_id) DO UPDATE SET state = excluded.state, "
    "next_due_at = excluded.next_due_at, file = excluded.file, detail = excluded.detail, "
    "ab_test_done_at = excluded.ab_test_done_at, ab_winner = excluded.ab_winner, "
    "ab_decided_at = excluded.ab_decided_at, ab_manual = excluded.ab_manual, "
    "updated_at = excluded.updated_at"
)
# Opens a privacy proxy made are not a person reading: SparkPost's and Brevo's
# `proxy_open` types, SendGrid's `sg_machine_open` flag (raw is compact JSON).
MACHINE_OPEN = (
    "(e.raw LIKE '%proxy_open%' OR e.raw LIKE '%\"sg_machine_open\":true%' "
    "OR e.raw LIKE '%\"sg_machine_open\": true%')"
)
ENGAGED = (
    "SELECT DISTINCT l.key, e.type FROM events AS e JOIN ledger AS l ON l.id = e.ledger_id "
    "WHERE e.campaign_id = {p} AND (e.type = 'clicked' OR (e.type = 'opened' AND NOT "
    f"{MACHINE_OPEN}))"
)


def row_of(r: Sequence[Any]) -> ScheduleRow:
    detail = r[4]
    if isinstance(detail, str):
        detail = json.loads(detail)
    return ScheduleRow(
        campaign_id=int(r[0]),
        state=str(r[1]),
        next_due_at=r[2],
        file=r[3],
        detail=dict(detail or {}),
        ab_test_done_at=r[5],
        ab_winner=None if r[6] is None else int(r[6]),
        ab_decided_at=r[7],
        ab_manual=bool(r[8]),
        updated_at=float(r[9]),
        campaign=str(r[10]),
    )


class SQLiteSchedules:
    """:class:`stampcli.store.protocols.ScheduleStore` in SQLite."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, campaign_id: int) -> ScheduleRow | None:
        with self._store.errors():
            r = self._store.conn.execute(
                f"SELECT {_COLUMNS} {_FROM} WHERE s.campaign_id = ?", (campaign_id,)
            ).fetchone()
        return None if r is None else row_of(r)

    def save(self, row: ScheduleRow) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                _SAVE,
                (
                    row.campaign_id, row.state, row.next_due_at, row.file,
                    json.dumps(row.detail, sort_keys=True), row.ab_test_done_at, row.ab_winner,
                    row.ab_decided_at, int(row.ab_manual), row.updated_at,
                ),
            )  # fmt: skip

    def all(self) -> list[ScheduleRow]:
        try:
            rows = self._store.conn.execute(
                f"SELECT {_COLUMNS} {_FROM} ORDER BY s.next_due_at IS NULL, s.next_due_at, c.name"
            ).fetchall()
        except sqlite3.Error as exc:
            # a store no run of this stamp has written yet, opened read-only: no schedules
            if "no such table: schedules" in str(exc):
                return []
            raise store_error(exc, self._store.path) from None
        return [row_of(r) for r in rows]

    def due(self, at: float) -> list[ScheduleRow]:
        with self._store.errors():
            rows = self._store.conn.execute(
                f"SELECT {_COLUMNS} {_FROM} WHERE s.state != 'done' AND s.next_due_at <= ? "
                "ORDER BY s.next_due_at, c.name",
                (at,),
            ).fetchall()
        return [row_of(r) for r in rows]

    def keys(self, campaign_id: int, states: Sequence[str]) -> list[str]:
        marks = ", ".join("?" for _ in states)
        with self._store.errors():
            rows = self._store.conn.execute(
                f"SELECT key FROM ledger WHERE campaign_id = ? AND state IN ({marks}) ORDER BY id",
                (campaign_id, *states),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def engaged(self, campaign_id: int) -> list[tuple[str, str]]:
        with self._store.errors():
            rows = self._store.conn.execute(ENGAGED.format(p="?"), (campaign_id,)).fetchall()
        return [(str(k), str(t)) for k, t in rows]
