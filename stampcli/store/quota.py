"""Daily send quotas, shared by every run through the ``quota_usage`` table.

A provider with ``daily_quota: N`` may take at most N messages per UTC day,
counted across every process that uses the same store (two cron runs of
different campaigns through one relay share its quota). The table holds,
per (provider label, UTC day), how many sends have been *reserved*.

To stay fast, a process reserves in chunks (``BEGIN IMMEDIATE``, so two
processes cannot both read the same count and overshoot), hands single
permits out of its chunk in memory, takes permits back for messages that
were certainly not accepted, and returns what is left of its chunk when it
closes. A process that dies keeps its unused chunk reserved until the day
ends: the quota errs on the side of sending too little, never too much.
The chunk is small (at most 50, at most a twentieth of the quota) so that
concurrent runs are not starved by each other's reservations.

Without a store (``store=None``) the count lives in memory for one run.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.store.db import Store

if TYPE_CHECKING:
    from stampcli.store import protocols

MAX_CHUNK = 50


def utc_day(timestamp: float) -> str:
    """``YYYY-MM-DD`` of ``timestamp`` in UTC."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")


def usage(store: Store, provider: str, day: str) -> int:
    """Sends reserved for ``provider`` on ``day`` by every process (for ``stamp status``)."""
    with store.errors():
        row = store.conn.execute(
            "SELECT count FROM quota_usage WHERE provider = ? AND day = ?", (provider, day)
        ).fetchone()
    return int(row[0]) if row else 0


def take(store: Store, provider: str, day: str, want: int, limit: int) -> int:
    """Reserve up to ``want`` sends for ``provider`` on ``day`` without passing ``limit``.

    Returns how many were granted (0 when the quota is used up). One IMMEDIATE
    transaction, so two processes cannot both read the same count and overshoot.
    """
    with store.transaction() as conn:  # BEGIN IMMEDIATE: one writer at a time
        row = conn.execute(
            "SELECT count FROM quota_usage WHERE provider = ? AND day = ?", (provider, day)
        ).fetchone()
        count = int(row[0]) if row else 0
        granted = max(0, min(want, limit - count))
        if granted:
            conn.execute(
                "INSERT INTO quota_usage (provider, day, count) VALUES (?, ?, ?) "
                "ON CONFLICT (provider, day) DO UPDATE SET count = count + excluded.count",
                (provider, day, granted),
            )
    return granted


def give_back(store: Store, provider: str, day: str, n: int) -> None:
    """Return ``n`` reserved sends of ``day`` (never below zero)."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE quota_usage SET count = MAX(0, count - ?) WHERE provider = ? AND day = ?",
            (n, provider, day),
        )


class SQLiteQuota:
    """:class:`stampcli.store.protocols.QuotaStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def usage(self, provider: str, day: str) -> int:
        return usage(self._store, provider, day)

    def take(self, provider: str, day: str, want: int, limit: int) -> int:
        return take(self._store, provider, day, want, limit)

    def give_back(self, provider: str, day: str, n: int) -> None:
        give_back(self._store, provider, day, n)


class DailyQuota:
    """Permits for one provider's daily quota: ``reserve`` before a send."""

    def __init__(
        self,
        provider: str,
        limit: int,
        store: protocols.Store | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        chunk: int | None = None,
    ) -> None:
        self.provider = provider
        self.limit = limit
        self.store = store
        self._clock = clock
        self.chunk = chunk or max(1, min(MAX_CHUNK, limit // 20))
        self._day = utc_day(clock.time())
        self._held = 0  # permits reserved in the table but not yet handed out
        self._memory_used = 0  # the count itself when there is no store

    @property
    def day(self) -> str:
        return self._day

    def _roll(self) -> None:
        """At UTC midnight: return yesterday's unused permits, start the new day."""
        today = utc_day(self._clock.time())
        if today != self._day:
            self._release_held()
            self._day = today
            self._memory_used = 0

    def reserve(self, n: int = 1) -> str | None:
        """Take ``n`` permits; the UTC day they count against, or None when the quota is used up.

        Pass the day to :meth:`give_back` if the send certainly did not happen.
        """
        self._roll()
        if self._held < n:
            self._refill(n - self._held)
        if self._held < n:
            return None
        self._held -= n
        return self._day

    def give_back(self, day: str, n: int = 1) -> None:
        """Return permits (taken on ``day``) for sends that certainly did not happen."""
        self._roll()
        if day == self._day:
            self._held += n  # usable again at once
        elif self.store is not None:
            # taken before midnight: that day's count goes down, today's is untouched
            self.store.quota.give_back(self.provider, day, n)

    def used(self) -> int:
        """Sends counted against today's quota: reserved by all processes, minus ours unused."""
        self._roll()
        if self.store is None:
            return self._memory_used - self._held
        return self.store.quota.usage(self.provider, self._day) - self._held

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used())

    def exhausted(self) -> bool:
        """True when no permit could be had now (does not take one)."""
        self._roll()
        if self._held > 0:
            return False
        if self.store is None:
            return self._memory_used >= self.limit
        return self.store.quota.usage(self.provider, self._day) >= self.limit

    def close(self) -> None:
        """Return the unused part of our chunk to the shared count."""
        self._release_held()

    # ------------------------------------------------------------------ internals

    def _refill(self, at_least: int) -> None:
        want = max(self.chunk, at_least)
        if self.store is None:
            granted = max(0, min(want, self.limit - self._memory_used))
            self._memory_used += granted
            self._held += granted
            return
        self._held += self.store.quota.take(self.provider, self._day, want, self.limit)

    def _release_held(self) -> None:
        held, self._held = self._held, 0
        if not held:
            return
        if self.store is None:
            self._memory_used -= held
            return
        self.store.quota.give_back(self.provider, self._day, held)
