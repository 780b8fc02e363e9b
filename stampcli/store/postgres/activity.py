"""Subscriber activity in PostgreSQL: :class:`stampcli.store.protocols.ActivityStore`.

The same aggregates as :mod:`stampcli.store.activity` (the SQLite side), one
statement each.
"""

from __future__ import annotations

from collections.abc import Collection

from stampcli.store.activity import ADDED_SINCE, SOFT_COUNTS
from stampcli.store.postgres.db import PostgresStore

RECIPIENTS_SINCE = (
    "SELECT DISTINCT recipient FROM events WHERE type = ANY(%s) AND occurred_at >= %s"
)


class PostgresActivity:
    """:class:`stampcli.store.protocols.ActivityStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def recipients_since(self, types: Collection[str], since: float) -> set[str]:
        with self._store.connection() as conn:
            return {r[0] for r in conn.execute(RECIPIENTS_SINCE, (list(types), float(since)))}

    def soft_bounce_counts(self) -> dict[str, int]:
        with self._store.connection() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(SOFT_COUNTS)}

    def added_since(self, since: float) -> set[str]:
        with self._store.connection() as conn:
            return {r[0] for r in conn.execute(ADDED_SINCE.replace("?", "%s"), (float(since),))}
