"""Campaigns and their runs in PostgreSQL: CampaignStore and RunStore.

The rules over them (the content-change check, the pause check) are written
once, over the protocols, in :mod:`stampcli.store.campaigns`; this module only
keeps the rows. Audience marks, settings and run summaries are ``jsonb``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

from psycopg.types.json import Jsonb

from stampcli.records import CampaignRow, RunRow
from stampcli.store.db import now
from stampcli.store.postgres.db import PostgresStore

COLUMNS = "id, name, content_hash, created_at, updated_at, paused_reason, paused_at"
GET = f"SELECT {COLUMNS} FROM campaigns WHERE name = %s"
ENSURE = (
    "INSERT INTO campaigns (name, created_at, updated_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (name) DO NOTHING"
)
# the ledger has no foreign key (schema.sql): its rows go first, in the same transaction;
# the lock and the runs follow the campaign by ON DELETE CASCADE
# events keep their rows but no longer point at the campaign or its ledger rows
# (events.ledger_id has no foreign key either: schema.sql)
UNLINK_EVENTS = (
    "UPDATE events SET campaign_id = NULL, ledger_id = NULL "
    "WHERE campaign_id = (SELECT id FROM campaigns WHERE name = %(name)s) "
    "OR ledger_id IN (SELECT l.id FROM ledger AS l JOIN campaigns AS c ON c.id = l.campaign_id "
    "WHERE c.name = %(name)s)"
)
DELETE_LEDGER = "DELETE FROM ledger WHERE campaign_id = (SELECT id FROM campaigns WHERE name = %s)"
DELETE = "DELETE FROM campaigns WHERE name = %s"
SET_HASH = "UPDATE campaigns SET content_hash = %s, updated_at = %s WHERE id = %s"
PAUSE = "UPDATE campaigns SET paused_reason = %s, paused_at = %s, updated_at = %s WHERE id = %s"
UNPAUSE = (
    "UPDATE campaigns SET paused_reason = NULL, paused_at = NULL, updated_at = %s "
    "WHERE id = %s AND paused_reason IS NOT NULL"
)
AUDIENCE_MARK = "SELECT audience_mark FROM campaigns WHERE id = %s"
SET_AUDIENCE_MARK = "UPDATE campaigns SET audience_mark = %s WHERE id = %s"
SETTINGS = "SELECT settings FROM campaigns WHERE id = %s"
SET_SETTINGS = "UPDATE campaigns SET settings = %s WHERE id = %s"
LISTS_MARK = (
    "SELECT l.name, l.updated_at, count(c.id), max(c.updated_at) FROM lists AS l "
    "LEFT JOIN contacts AS c ON c.list_id = l.id WHERE l.name = ANY(%b::text[]) "
    "GROUP BY l.id ORDER BY l.name"
)
START_RUN = "INSERT INTO runs (campaign_id, started_at) VALUES (%s, %s) RETURNING id"
FINISH_RUN = "UPDATE runs SET ended_at = %s, exit_code = %s, summary = %s WHERE id = %s"
LAST_RUN = (
    "SELECT id, started_at, ended_at, exit_code, summary FROM runs "
    "WHERE campaign_id = %s ORDER BY id DESC LIMIT 1"
)

# run summaries may hold values JSON has no type for (paths, times): as text, as SQLite does
_dumps = partial(json.dumps, default=str)


class PostgresCampaigns:
    """:class:`stampcli.store.protocols.CampaignStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def get(self, name: str) -> CampaignRow | None:
        with self._store.connection() as conn:
            row = conn.execute(GET, (name,)).fetchone()
        return None if row is None else CampaignRow(*row)

    def ensure(self, name: str) -> CampaignRow:
        ts = now()
        with self._store.connection() as conn:
            # two statements, each its own commit: a campaign made by another process
            # between them is the one read back
            conn.execute(ENSURE, (name, ts, ts))
            row = conn.execute(GET, (name,)).fetchone()
        assert row is not None  # inserted, or there already
        return CampaignRow(*row)

    def delete(self, name: str) -> bool:
        with self._store.transaction() as conn:
            conn.execute(UNLINK_EVENTS, {"name": name})
            conn.execute(DELETE_LEDGER, (name,))
            return conn.execute(DELETE, (name,)).rowcount > 0

    def set_content_hash(self, campaign_id: int, content_hash: str) -> None:
        with self._store.connection() as conn:
            conn.execute(SET_HASH, (content_hash, now(), campaign_id))

    def pause(self, campaign_id: int, reason: str) -> None:
        ts = now()
        with self._store.connection() as conn:
            conn.execute(PAUSE, (reason, ts, ts, campaign_id))

    def unpause(self, campaign_id: int) -> bool:
        with self._store.connection() as conn:
            return conn.execute(UNPAUSE, (now(), campaign_id)).rowcount > 0

    def audience_mark(self, campaign_id: int) -> dict[str, Any] | None:
        with self._store.connection() as conn:
            row = conn.execute(AUDIENCE_MARK, (campaign_id,)).fetchone()
        if row is None or not isinstance(row[0], dict):
            return None
        return row[0]

    def set_audience_mark(self, campaign_id: int, mark: dict[str, Any] | None) -> None:
        value = None if mark is None else Jsonb(mark)
        with self._store.connection() as conn:
            conn.execute(SET_AUDIENCE_MARK, (value, campaign_id))

    def settings(self, campaign_id: int) -> dict[str, Any]:
        with self._store.connection() as conn:
            row = conn.execute(SETTINGS, (campaign_id,)).fetchone()
        if row is None or not isinstance(row[0], dict):
            return {}
        return row[0]

    def set_settings(self, campaign_id: int, settings: dict[str, Any]) -> None:
        with self._store.connection() as conn:
            conn.execute(SET_SETTINGS, (Jsonb(settings), campaign_id))

    def lists_mark(self, names: Sequence[str]) -> list[list[Any]]:
        if not names:
            return []
        with self._store.connection() as conn:
            rows = conn.execute(LISTS_MARK, (list(names),)).fetchall()
        return [list(r) for r in rows]


class PostgresRuns:
    """:class:`stampcli.store.protocols.RunStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def start(self, campaign_id: int) -> int:
        with self._store.connection() as conn:
            row = conn.execute(START_RUN, (campaign_id, now())).fetchone()
        assert row is not None  # RETURNING gives the row inserted
        return int(row[0])

    def finish(self, run_id: int, exit_code: int | None, summary: dict[str, Any] | None) -> None:
        value = None if summary is None else Jsonb(summary, dumps=_dumps)
        with self._store.connection() as conn:
            conn.execute(FINISH_RUN, (now(), exit_code, value, run_id))

    def last(self, campaign_id: int) -> RunRow | None:
        with self._store.connection() as conn:
            row = conn.execute(LAST_RUN, (campaign_id,)).fetchone()
        if row is None:
            return None
        summary = row[4] if isinstance(row[4], dict) else None
        return RunRow(row[0], row[1], row[2], row[3], summary)
