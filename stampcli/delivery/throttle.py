"""Token buckets: keep a provider (or the whole campaign) under its configured rate.

A bucket refills at ``rate.per_second`` tokens a second up to ``burst``; a
send takes one token per message. The burst is one second's worth of the
rate, at least one token: ``100/s`` lets 100 go at once after an idle spell,
while ``3000/min`` (50/s) allows 50 and ``2000/day`` allows one at a time
(``count`` of a per-minute rate would be kind to the provider's accounting
but would fire a minute's mail in one burst; spreading it is kinder to the
relay and to spam filters). Callers may take more than ``burst`` at once (a
batch of 500 at 100/s): the bucket goes into debt and later callers wait for it.

Waiting is first come, first served without a lock: each caller takes its
tokens at once (possibly into debt) and sleeps off its own share of the debt,
so no caller can be overtaken; a cancelled waiter gives its tokens back.
"""

from __future__ import annotations

import asyncio

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.config import Rate


def default_burst(rate: Rate) -> float:
    """One second's worth of ``rate``, at least one message."""
    return max(1.0, rate.per_second)


class TokenBucket:
    """Refills at ``rate``; ``acquire(n)`` waits until ``n`` tokens are available."""

    def __init__(
        self, rate: Rate, *, burst: float | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.rate = rate
        self.per_second = rate.per_second
        self.burst = default_burst(rate) if burst is None else max(1.0, burst)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.per_second)
        self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while callers are waiting off a debt)."""
        self._refill()
        return self._tokens

    def delay_for(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens would be available, without taking them."""
        self._refill()
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self.per_second

    async def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` tokens, waiting as long as needed; returns the seconds waited."""
        self._refill()
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.per_second
        try:
            await self._clock.sleep(wait)
        except asyncio.CancelledError:
            self._refill()
            self._tokens = min(self.burst, self._tokens + n)
            raise
        return wait

    def give_back(self, n: float = 1.0) -> None:
        """Return tokens taken for a send that did not happen."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + n)
