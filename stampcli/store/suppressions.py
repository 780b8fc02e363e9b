"""The suppression list: addresses that must never be mailed again, and why.

Each row is keyed by (recipient key, scope). The key is the normalised address
in lower case (``stampcli.audience.address.normalize_address``); callers pass
keys already normalised. Scope ``''`` suppresses the address for every list;
any other scope is a list name and suppresses it only there.

Adding is an upsert: a second report for the same (key, scope) refreshes the
reason, source and detail (the latest news about an address is the most
useful) but keeps the first ``created_at``, so "suppressed since" stays true.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence

from stampcli.compliance import erasure
from stampcli.errors import InputError
from stampcli.events.model import REASONS
from stampcli.records import Suppression as Suppression
from stampcli.store.db import Store, now

# SQLite builds before 3.32 allow 999 host parameters per statement; stay well under.
_CHUNK = 500

_Row = tuple[str, str, str, str, str | None, float]


def check_reason(reason: str) -> str:
    """``reason`` if it is one of :data:`REASONS`; :class:`InputError` otherwise."""
    if reason not in REASONS:
        raise InputError(f"unknown suppression reason {reason!r}; use one of {', '.join(REASONS)}")
    return reason


def _chunks(items: Sequence[str], size: int = _CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def suppressed(store: Store, keys: Collection[str], scopes: Sequence[str] = ()) -> set[str]:
    """The keys among ``keys`` suppressed globally or in any of ``scopes``."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return set()
    scope_list = ["", *(s for s in dict.fromkeys(scopes) if s)]
    scope_marks = ",".join("?" * len(scope_list))
    found: set[str] = set()
    with store.errors():
        # forgotten people are kept as hashes (compliance.erasure): looked up only in a
        # store that has any, so the common look-up stays one IN list
        forgotten = store.conn.execute(
            "SELECT 1 FROM suppressions WHERE key >= ? AND key < ? LIMIT 1",
            (erasure.PREFIX, erasure.PREFIX_END),
        ).fetchone()
        by_hash = erasure.hashes(wanted) if forgotten else {}
        for chunk in _chunks([*wanted, *by_hash]):
            marks = ",".join("?" * len(chunk))
            rows = store.conn.execute(
                f"SELECT DISTINCT key FROM suppressions "
                f"WHERE key IN ({marks}) AND scope IN ({scope_marks})",
                [*chunk, *scope_list],
            )
            found.update(by_hash.get(row[0], row[0]) for row in rows)
    return found & set(wanted)


def _row(item: Suppression) -> _Row:
    check_reason(item.reason)
    if not item.key:
        raise InputError("a suppression needs an address")
    created = item.created_at if item.created_at > 0 else now()
    return (item.key, item.scope, item.reason, item.source, item.detail, created)


_INSERT = (
    "INSERT OR IGNORE INTO suppressions (key, scope, reason, source, detail, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_REFRESH = (
    "UPDATE suppressions SET reason = ?, source = ?, detail = ? "
    "WHERE key = ? AND scope = ? "
    "AND (reason IS NOT ? OR source IS NOT ? OR detail IS NOT ?)"
)


def _write(conn: sqlite3.Connection, rows: list[_Row]) -> int:
    before = conn.total_changes
    conn.executemany(_INSERT, rows)
    new = conn.total_changes - before
    if new < len(rows):
        conn.executemany(
            _REFRESH,
            [(r[2], r[3], r[4], r[0], r[1], r[2], r[3], r[4]) for r in rows],
        )
    return new


def add(
    store: Store,
    key: str,
    reason: str,
    source: str,
    detail: str | None = None,
    scope: str = "",
) -> bool:
    """Suppress ``key`` (in ``scope``, '' = everywhere). True if it was not suppressed there."""
    row = _row(Suppression(key, reason, source, scope, detail))
    with store.transaction() as conn:
        return _write(conn, [row]) == 1


def add_many(store: Store, items: Iterable[Suppression]) -> int:
    """Suppress every item in one transaction per few thousand; the number of new rows."""
    total = 0
    batch: list[_Row] = []
    for item in items:
        batch.append(_row(item))
        if len(batch) >= 5000:
            with store.transaction() as conn:
                total += _write(conn, batch)
            batch = []
    if batch:
        with store.transaction() as conn:
            total += _write(conn, batch)
    return total


def remove(store: Store, keys: Iterable[str], scope: str | None = None) -> int:
    """Lift suppressions of ``keys`` (in ``scope`` only, or every scope if None); rows removed."""
    wanted = list(dict.fromkeys(keys))
    removed = 0
    with store.transaction() as conn:
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            if scope is None:
                cur = conn.execute(f"DELETE FROM suppressions WHERE key IN ({marks})", [*chunk])
            else:
                cur = conn.execute(
                    f"DELETE FROM suppressions WHERE scope = ? AND key IN ({marks})",
                    [scope, *chunk],
                )
            removed += cur.rowcount
    return removed


def iter_suppressions(
    store: Store, reason: str | None = None, scope: str | None = None
) -> Iterator[Suppression]:
    """Every suppression (of ``reason``, in ``scope`` if given), ordered by address."""
    where: list[str] = []
    params: list[str] = []
    if reason is not None:
        where.append("reason = ?")
        params.append(check_reason(reason))
    if scope is not None:
        where.append("scope = ?")
        params.append(scope)
    sql = "SELECT key, reason, source, scope, detail, created_at FROM suppressions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY key, scope"
    with store.errors():
        for key, why, source, sc, detail, created in store.conn.execute(sql, params):
            yield Suppression(key, why, source, sc, detail, created)


def get(store: Store, key: str, scope: str = "") -> Suppression | None:
    """The suppression of ``key`` in ``scope`` ('' = everywhere) itself, or None."""
    with store.errors():
        found = store.conn.execute(
            "SELECT key, reason, source, scope, detail, created_at FROM suppressions "
            "WHERE key = ? AND scope = ?",
            (key, scope),
        ).fetchone()
    return None if found is None else Suppression(*found)


def count(store: Store) -> dict[str, int]:
    """Suppressions per reason (only reasons that occur)."""
    with store.errors():
        rows = store.conn.execute(
            "SELECT reason, COUNT(*) FROM suppressions GROUP BY reason ORDER BY reason"
        ).fetchall()
    return {reason: n for reason, n in rows}


class SQLiteSuppressions:
    """:class:`stampcli.store.protocols.SuppressionStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def suppressed(self, keys: Collection[str], scopes: Sequence[str] = ()) -> set[str]:
        return suppressed(self._store, keys, scopes)

    def add(
        self,
        key: str,
        reason: str,
        source: str,
        detail: str | None = None,
        scope: str = "",
    ) -> bool:
        return add(self._store, key, reason, source, detail, scope)

    def add_many(self, items: Iterable[Suppression]) -> int:
        return add_many(self._store, items)

    def remove(self, keys: Iterable[str], scope: str | None = None) -> int:
        return remove(self._store, keys, scope)

    def iter_suppressions(
        self, reason: str | None = None, scope: str | None = None
    ) -> Iterator[Suppression]:
        return iter_suppressions(self._store, reason, scope)

    def get(self, key: str, scope: str = "") -> Suppression | None:
        return get(self._store, key, scope)

    def count(self) -> dict[str, int]:
        return count(self._store)
