"""Subscriber activity for segment expressions in SQLite (``protocols.ActivityStore``).

Each question is one aggregate over the ``events`` or ``contacts`` table (its
indexes ``events_by_recipient`` and the contacts' keys), answered as the set
(or counts) of recipient keys it holds: the segment then tests membership per
contact instead of reading events per contact. :mod:`.postgres.activity` asks
the same in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stampcli.store.db import Store

# soft bounces since the recipient's latest delivery (a delivery resets the count,
# as the bounce policy counts them: store.events.soft_bounces)
SOFT_COUNTS = (
    "SELECT e.recipient, COUNT(*) FROM events e "
    "LEFT JOIN (SELECT recipient, MAX(occurred_at) AS at FROM events WHERE type = 'delivered' "
    "GROUP BY recipient) d ON d.recipient = e.recipient "
    "WHERE e.type = 'bounced' AND e.bounce_kind = 'soft' AND e.occurred_at > COALESCE(d.at, 0) "
    "GROUP BY e.recipient"
)
# a contact's age is its first import into any list
ADDED_SINCE = "SELECT key FROM contacts GROUP BY key HAVING MIN(added_at) >= ?"


def recipients_since(store: Store, types: Collection[str], since: float) -> set[str]:
    marks = ", ".join("?" * len(types))
    with store.errors():
        rows = store.conn.execute(
            f"SELECT DISTINCT recipient FROM events WHERE type IN ({marks}) AND occurred_at >= ?",
            (*types, since),
        )
        return {r[0] for r in rows}


def soft_bounce_counts(store: Store) -> dict[str, int]:
    with store.errors():
        return {r[0]: int(r[1]) for r in store.conn.execute(SOFT_COUNTS)}


def added_since(store: Store, since: float) -> set[str]:
    with store.errors():
        return {r[0] for r in store.conn.execute(ADDED_SINCE, (since,))}


class SQLiteActivity:
    """:class:`stampcli.store.protocols.ActivityStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def recipients_since(self, types: Collection[str], since: float) -> set[str]:
        return recipients_since(self._store, types, since)

    def soft_bounce_counts(self) -> dict[str, int]:
        return soft_bounce_counts(self._store)

    def added_since(self, since: float) -> set[str]:
        return added_since(self._store, since)
