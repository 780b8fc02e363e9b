"""The report's reads and the router's tallies in PostgreSQL (``ReportStore``).

The statements are :mod:`stampcli.store.report_sql`'s, shared with SQLite: this
module turns their ``?`` placeholders into psycopg's ``%s`` (and a literal ``%``
of a LIKE pattern into ``%%``), runs them on a pooled connection, and writes the
router's tallies with one statement per table over arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from stampcli.records_report import (
    ProviderTally,
)
from stampcli.store import report_sql as q
from stampcli.store.postgres.db import PostgresStore

_SAVE_METRICS = (
    "INSERT INTO provider_tallies (run_id, campaign_id, provider, metric, value) "
    "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::bigint[])"
)
_SAVE_TIMES = (
    "INSERT INTO provider_answer_times (run_id, campaign_id, provider, le_ms, calls) "
    "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::text[], %b::bigint[], %b::bigint[])"
)


@lru_cache(maxsize=64)
def _psycopg(sql: str) -> str:
    """``sql`` with psycopg's placeholders (the shared statements hold no other ``?``)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[r[i] for r in rows] for i in range(width)]


class PostgresReports(q.ReportReads):
    """:class:`stampcli.store.protocols.ReportStore` on a PostgreSQL store."""

    dialect = q.POSTGRES

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def _run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._store.transaction() as conn:
            # The statements walk an index and are costed high, which turns on the JIT:
            # it compiled for 3 s of a 5.4 s funnel at 1M recipients, to save nothing.
            conn.execute("SET LOCAL jit = off")
            return conn.execute(_psycopg(sql).encode(), tuple(params)).fetchall()

    def save_tallies(self, run_id: int, campaign_id: int, tallies: Sequence[ProviderTally]) -> None:
        metrics, times = q.tally_rows(run_id, campaign_id, tallies)
        with self._store.transaction() as conn:
            # the run's totals so far replace what an earlier save of the same run wrote
            conn.execute("DELETE FROM provider_tallies WHERE run_id = %s", (run_id,))
            conn.execute("DELETE FROM provider_answer_times WHERE run_id = %s", (run_id,))
            if metrics:
                conn.execute(_SAVE_METRICS, _columns(metrics, 5))
            if times:
                conn.execute(_SAVE_TIMES, _columns(times, 5))
