"""Daily send counts in PostgreSQL: :class:`stampcli.store.protocols.QuotaStore`.

The chunked permits are :class:`stampcli.store.quota.DailyQuota`'s, over the
protocol; here a reservation is one statement that locks the counter row first, so
processes on any number of hosts cannot together pass the limit.
"""

from __future__ import annotations

from stampcli.store.postgres.db import PostgresStore

USAGE = "SELECT count FROM quota_usage WHERE provider = %s AND day = %s"
ENSURE = (
    "INSERT INTO quota_usage (provider, day, count) VALUES (%s, %s, 0) "
    "ON CONFLICT (provider, day) DO NOTHING"
)
# The counter row is locked, then what fits under the limit is added: a concurrent take
# waits for the lock and then reads the count as the one before it left it.
TAKE = (
    "UPDATE quota_usage AS q SET count = q.count + x.granted "
    "FROM (SELECT provider, day, LEAST(%s, GREATEST(0, %s - count)) AS granted "
    "FROM quota_usage WHERE provider = %s AND day = %s FOR UPDATE) AS x "
    "WHERE q.provider = x.provider AND q.day = x.day RETURNING x.granted"
)
GIVE_BACK = (
    "UPDATE quota_usage SET count = GREATEST(0, count - %s) WHERE provider = %s AND day = %s"
)


class PostgresQuota:
    """:class:`stampcli.store.protocols.QuotaStore` in PostgreSQL."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def usage(self, provider: str, day: str) -> int:
        with self._store.connection() as conn:
            row = conn.execute(USAGE, (provider, day)).fetchone()
        return int(row[0]) if row else 0

    def take(self, provider: str, day: str, want: int, limit: int) -> int:
        if want <= 0:
            return 0
        with self._store.connection() as conn:
            conn.execute(ENSURE, (provider, day))
            row = conn.execute(TAKE, (want, limit, provider, day)).fetchone()
        return int(row[0]) if row else 0

    def give_back(self, provider: str, day: str, n: int) -> None:
        with self._store.connection() as conn:
            conn.execute(GIVE_BACK, (n, provider, day))
