"""The report's reads and the router's tallies in SQLite (``protocols.ReportStore``).

The statements are :mod:`stampcli.store.report_sql`'s (shared with PostgreSQL);
this module runs them on the store's connection. A store written before the
delivery events (schema < 3) cannot be reported on without an upgrade, which a
read-only report may not do: it is refused with a message saying how. A store of
schema 3 made before the tally tables existed simply has no tallies yet.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from stampcli.errors import StoreError
from stampcli.records_report import (
    ProviderTally,
)
from stampcli.store import report_sql as q
from stampcli.store.db import Store, store_error

_TALLY_TABLES = ("provider_tallies", "provider_answer_times")


class SQLiteReports(q.ReportReads):
    """:class:`stampcli.store.protocols.ReportStore` on a SQLite store."""

    dialect = q.SQLITE

    def __init__(self, store: Store) -> None:
        self._store = store
        self._checked = False

    def _run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self._check_schema()
        try:
            return self._store.conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            # a schema-3 store opened read-only before the tally tables were added
            if any(f"no such table: {t}" in str(exc) for t in _TALLY_TABLES):
                return []
            raise store_error(exc, self._store.path) from None

    def _check_schema(self) -> None:
        if self._checked:
            return
        try:
            version = int(self._store.conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as exc:
            raise store_error(exc, self._store.path) from None
        if version < 3:
            raise StoreError(
                f"store {self._store.path}: made by an older stamp (schema {version}), "
                "before delivery events; run a command that writes it (stamp send, "
                "stamp import) once to upgrade it, then report"
            )
        self._checked = True

    def save_tallies(self, run_id: int, campaign_id: int, tallies: Sequence[ProviderTally]) -> None:
        metrics, times = q.tally_rows(run_id, campaign_id, tallies)
        with self._store.transaction() as conn:
            # the run's totals so far replace what an earlier save of the same run wrote
            conn.execute("DELETE FROM provider_tallies WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM provider_answer_times WHERE run_id = ?", (run_id,))
            conn.executemany(
                "INSERT INTO provider_tallies (run_id, campaign_id, provider, metric, value) "
                "VALUES (?, ?, ?, ?, ?)",
                metrics,
            )
            conn.executemany(
                "INSERT INTO provider_answer_times (run_id, campaign_id, provider, le_ms, calls) "
                "VALUES (?, ?, ?, ?, ?)",
                times,
            )
