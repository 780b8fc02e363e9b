"""A provider's rate shared by every worker on the store: a token bucket kept in the store.

Several workers sending through one provider must keep to its rate together,
not each. :class:`SharedBucket` is :class:`stampcli.delivery.throttle.TokenBucket`'s
``acquire`` over a bucket row in the store (``RateStore``: refilled at the rate,
up to a fifth of a second's worth, taken atomically). A worker draws a few tokens at a
time (``CHUNK`` seconds of the rate, so a bucket costs a store round trip per
chunk, not per message), hands them out in memory, and when the store's bucket
is empty waits for the missing tokens to refill before it asks again. The fleet
as a whole sends at the rate however many workers there are, and a worker that
joins or dies needs no re-balancing: the others simply draw what it leaves.
A worker keeps at most one chunk it did not use when it dies: the fleet errs on
the side of sending a little slower, never faster.
"""

from __future__ import annotations

import contextlib

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.config import Rate
from stampcli.delivery.throttle import default_burst
from stampcli.errors import StampError
from stampcli.store.protocols import RateStore

CHUNK = 0.05  # seconds of the rate a worker draws from the store at a time
BURST = 0.2  # seconds of the rate the fleet may send at once after an idle spell
MIN_WAIT = 0.005  # seconds between asks while the bucket is empty, at least


class SharedBucket:
    """``acquire(n)`` waits until the fleet's bucket ``name`` gives ``n`` tokens."""

    def __init__(self, rates: RateStore, name: str, rate: Rate, *, clock: Clock = SYSTEM_CLOCK):
        self.rate = rate
        self.per_second = rate.per_second
        # a fifth of a second's worth, not a second's (TokenBucket's): workers that start
        # slowly (imports, rendering on a busy host) leave a full second's burst in the
        # bucket for seconds, and the fleet would go well above its rate all that time
        self.burst = max(1.0, min(default_burst(rate), self.per_second * BURST))
        self.name = name
        self._rates = rates
        self._clock = clock
        self._chunk = max(1.0, self.per_second * CHUNK)
        self._local = 0.0  # tokens drawn from the store, not yet used

    async def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` tokens, waiting as long as needed; returns the seconds waited."""
        waited = 0.0
        while self._local < n:
            want = max(n - self._local, self._chunk)
            # a busy or restarting store: wait as for an empty bucket, ask again
            with contextlib.suppress(StampError):
                self._local += self._rates.take_tokens(
                    self.name, want, per_second=self.per_second, burst=self.burst
                )
            if self._local >= n:
                break
            # what is missing refills at the rate; the other workers may take some first.
            # Half a chunk's time at least: asking for every single token as it refills
            # cost each worker hundreds of store round trips a second on one hot row
            missing = max(n - self._local, self._chunk / 2)
            wait = max(MIN_WAIT, min(missing, self._chunk) / self.per_second)
            await self._clock.sleep(wait)
            waited += wait
        self._local -= n
        return waited

    def give_back(self, n: float = 1.0) -> None:
        """Return tokens taken for a send that did not happen (kept for this worker)."""
        self._local += n

    def close(self) -> None:
        """Return the tokens drawn and not used to the store."""
        left, self._local = self._local, 0.0
        if left >= 1.0:
            with contextlib.suppress(StampError):  # lost tokens only slow the fleet down a bit
                self._rates.give_tokens(self.name, left, burst=self.burst)
