"""Time: a real clock, and a virtual one for tests.

Everything in ``stampcli.delivery`` that waits or measures (token buckets,
circuit cool-downs, throttle back-off, batch linger), and the store's daily
quota, asks a :class:`Clock`, so a test can run an hour of cool-downs in
milliseconds with :class:`FakeClock`. It sits at the bottom of the layers, so
that ``store`` need not import ``delivery`` for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time (for UTC days and timestamps), monotonic time (for intervals), and sleep."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """Virtual time for tests.

    ``sleep()`` never waits for real: with ``auto_advance`` (the default), once
    every runnable task has had its turn (a few passes of the event loop with
    nothing new to do), the clock jumps to the earliest pending deadline and
    wakes those sleepers, so concurrent sleepers wake in deadline order. With
    ``auto_advance=False`` time moves only by :meth:`advance`. Use it only
    where every wait goes through this clock (in-process fakes, not sockets).
    """

    def __init__(
        self, start: float = 1_700_000_000.0, *, auto_advance: bool = True, settle: int = 20
    ) -> None:
        self._wall0 = start
        self._now = 0.0
        self.auto_advance = auto_advance
        self._settle = settle  # loop passes with no new sleeper before time jumps
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self.slept = 0.0  # total virtual time jumped, for assertions

    def time(self) -> float:
        return self._wall0 + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        if self.auto_advance and (self._driver is None or self._driver.done()):
            self._driver = loop.create_task(self._drive())
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        self._jump(self._now + max(0.0, seconds))

    def _jump(self, to: float) -> None:
        if to > self._now:
            self.slept += to - self._now
            self._now = to
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def _drive(self) -> None:
        while True:
            # let everything that can run, run, until only sleepers are left
            quiet = 0
            while quiet < self._settle:
                count = len(self._sleepers)
                await asyncio.sleep(0)
                quiet = quiet + 1 if len(self._sleepers) == count else 0
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
            if not self._sleepers:
                return
            self._jump(self._sleepers[0][0])
