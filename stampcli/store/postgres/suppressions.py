"""The suppression list in PostgreSQL: :class:`stampcli.store.protocols.SuppressionStore`.

Keyed by (key, scope) as in :mod:`stampcli.store.suppressions`, with the
same upsert rule: a second report refreshes reason, source and detail and
keeps the first ``created_at``. A batch is one statement over arrays.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence

from stampcli.compliance import erasure
from stampcli.errors import InputError
from stampcli.records import Suppression
from stampcli.store.db import now
from stampcli.store.postgres.db import PostgresStore
from stampcli.store.suppressions import check_reason

BATCH = 5000  # suppressions per commit in add_many (as SQLite's)

ANY_FORGOTTEN = "SELECT 1 FROM suppressions WHERE key >= %s AND key < %s LIMIT 1"
SUPPRESSED = (
    "SELECT DISTINCT key FROM suppressions WHERE key = ANY(%b::text[]) AND scope = ANY(%b::text[])"
)
INSERT = (
    "INSERT INTO suppressions (key, scope, reason, source, detail, created_at) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::float8[]) ON CONFLICT (key, scope) DO NOTHING"
)
REFRESH = (
    "UPDATE suppressions AS s SET reason = r.reason, source = r.source, detail = r.detail "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) "
    "AS r(key, scope, reason, source, detail) "
    "WHERE s.key = r.key AND s.scope = r.scope AND (s.reason, s.source, s.detail) "
    "IS DISTINCT FROM (r.reason, r.source, r.detail)"
)
REMOVE_ALL_SCOPES = "DELETE FROM suppressions WHERE key = ANY(%b::text[])"
REMOVE_IN_SCOPE = "DELETE FROM suppressions WHERE scope = %s AND key = ANY(%b::text[])"
COLUMNS = "key, reason, source, scope, detail, created_at"
GET = f"SELECT {COLUMNS} FROM suppressions WHERE key = %s AND scope = %s"
COUNT = "SELECT reason, count(*) FROM suppressions GROUP BY reason ORDER BY reason"

_Row = tuple[str, str, str, str, str | None, float]  # key, scope, reason, source, detail, at


def _row(item: Suppression) -> _Row:
    check_reason(item.reason)
    if not item.key:
        raise InputError("a suppression needs an address")
    created = item.created_at if item.created_at > 0 else now()
    return (item.key, item.scope, item.reason, item.source, item.detail, created)


def _columns(rows: Iterable[_Row], width: int) -> list[list[object]]:
    """The first ``width`` columns of ``rows``, one list each (the arrays ``unnest`` takes)."""
    cols: list[list[object]] = [[] for _ in range(width)]
    for r in rows:
        for i in range(width):
            cols[i].append(r[i])
    return cols


class PostgresSuppressions:
    """:class:`stampcli.store.protocols.SuppressionStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def suppressed(self, keys: Collection[str], scopes: Sequence[str] = ()) -> set[str]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return set()
        scope_list = ["", *(s for s in dict.fromkeys(scopes) if s)]
        with self._store.connection() as conn:
            # forgotten people are kept as hashes (compliance.erasure), looked up only in
            # a store that has any
            forgotten = conn.execute(ANY_FORGOTTEN, (erasure.PREFIX, erasure.PREFIX_END))
            by_hash = erasure.hashes(wanted) if forgotten.fetchone() else {}
            rows = conn.execute(SUPPRESSED, ([*wanted, *by_hash], scope_list))
            return {by_hash.get(r[0], r[0]) for r in rows} & set(wanted)

    def _write(self, rows: list[_Row]) -> int:
        """Insert or refresh ``rows`` in one transaction; how many were new."""
        # a (key, scope) given twice: inserted as it first came, left as it last came
        first: dict[tuple[str, str], _Row] = {}
        last: dict[tuple[str, str], _Row] = {}
        for r in rows:
            first.setdefault((r[0], r[1]), r)
            last[(r[0], r[1])] = r
        with self._store.transaction() as conn:
            new = conn.execute(INSERT, _columns(first.values(), 6)).rowcount
            if new < len(rows):  # some were there already, or came twice: refresh them
                conn.execute(REFRESH, _columns(last.values(), 5))
        return new

    def add(
        self,
        key: str,
        reason: str,
        source: str,
        detail: str | None = None,
        scope: str = "",
    ) -> bool:
        return self._write([_row(Suppression(key, reason, source, scope, detail))]) == 1

    def add_many(self, items: Iterable[Suppression]) -> int:
        total = 0
        batch: list[_Row] = []
        for item in items:
            batch.append(_row(item))
            if len(batch) >= BATCH:
                total += self._write(batch)
                batch = []
        if batch:
            total += self._write(batch)
        return total

    def remove(self, keys: Iterable[str], scope: str | None = None) -> int:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return 0
        with self._store.connection() as conn:
            if scope is None:
                return conn.execute(REMOVE_ALL_SCOPES, (wanted,)).rowcount
            return conn.execute(REMOVE_IN_SCOPE, (scope, wanted)).rowcount

    def iter_suppressions(
        self, reason: str | None = None, scope: str | None = None
    ) -> Iterator[Suppression]:
        where: list[str] = []
        params: list[str] = []
        if reason is not None:
            where.append("reason = %s")
            params.append(check_reason(reason))
        if scope is not None:
            where.append("scope = %s")
            params.append(scope)
        sql = f"SELECT {COLUMNS} FROM suppressions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY key, scope"
        with self._store.connection() as conn:
            found = conn.execute(sql.encode(), params).fetchall()
        return iter([Suppression(*r) for r in found])

    def get(self, key: str, scope: str = "") -> Suppression | None:
        with self._store.connection() as conn:
            found = conn.execute(GET, (key, scope)).fetchone()
        return None if found is None else Suppression(*found)

    def count(self) -> dict[str, int]:
        with self._store.connection() as conn:
            return {reason: n for reason, n in conn.execute(COUNT)}
