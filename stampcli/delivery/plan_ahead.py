"""Planning the rest of a big audience while the first rows are already sending.

A run plans until the first ``PLAN_AHEAD`` rows are in, then starts sending and
plans the rest in a task (planning 100k rows takes ~2.5 s of the one core the
send loop also uses: the render workers would idle through it). A
:class:`PlanFeed` is what the two sides share: the send loop's reader waits on
it when it runs out of pending rows while planning may still add some.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator

from stampcli.delivery.planner import PlanResult

PLAN_AHEAD = 2000  # rows planned before sending starts; the rest is planned while sending
PLAN_SHARE = 0.5  # of the event loop's time, at most, for planning the rest while sending


class PlanFeed:
    """How many rows are due in this run, and whether planning may add more."""

    def __init__(self, pending: int, cap: int | None) -> None:
        self.cap = cap
        self.total = pending if cap is None else min(pending, cap)  # to send in this run
        self.done = True  # no more rows can turn up pending in this run
        self.more = asyncio.Event()  # set after each planned chunk
        self.task: asyncio.Task[PlanResult] | None = None  # the rest of planning
        self.raised = False  # a planning failure ended the pipeline

    def set_pending(self, pending: int) -> None:
        self.total = pending if self.cap is None else min(pending, self.cap)

    def start(
        self,
        steps: Generator[int, None, PlanResult],
        added: int,
        pending: int,
        on_end: Callable[[], None],
    ) -> None:
        """Plan the rest in a task; ``on_end`` runs once planning ends, however."""
        self.done = False
        self.task = asyncio.create_task(self._plan_rest(steps, added, pending, on_end))

    async def _plan_rest(
        self,
        steps: Generator[int, None, PlanResult],
        added: int,
        pending: int,
        on_end: Callable[[], None],
    ) -> PlanResult:
        """The rest of planning, a committed chunk at a time between sends."""
        try:
            while True:
                began = time.perf_counter()
                try:
                    now_added = next(steps)
                except StopIteration as done:
                    result: PlanResult = done.value
                    return result
                pending += now_added - added
                added = now_added
                self.set_pending(pending)
                self.more.set()
                # planning at full tilt left the render workers idle (the loop feeds
                # them): 100k recipients sent 3,200 in the 5 s it took; at half the
                # loop's time, 14,000 in those 5 s, and the whole send was ~1 s shorter
                await asyncio.sleep((time.perf_counter() - began) * (1 - PLAN_SHARE) / PLAN_SHARE)
        finally:
            steps.close()
            self.done = True
            self.more.set()
            on_end()

    async def more_rows(self) -> bool:
        """Wait while planning may still add pending rows; False once it cannot."""
        if self.done:
            return False
        await self.more.wait()
        return True

    def check(self) -> None:
        """A failure while planning the rest ends the run like a render failure does."""
        task = self.task
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self.raised = True
                raise exc

    async def end(self) -> PlanResult | None:
        """Planning's result, or None when the run ended before planning did.

        The pipeline ends before planning only when the run stops early (Ctrl-C,
        --limit, every provider down, a failure): the rest is left to the next run,
        which reads the audience again and adds whoever is missing.
        """
        task = self.task
        if task is None:
            return None
        if not task.done():
            task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled():
                return None
            raise
        except Exception:
            if self.raised:
                return None  # the pipeline raised it already
            raise


def plan_first(steps: Generator[int, None, PlanResult]) -> tuple[int, PlanResult | None]:
    """Plan until the first ``PLAN_AHEAD`` rows are in: (rows added, result if done)."""
    added = 0
    try:
        while added < PLAN_AHEAD:
            added = next(steps)
    except StopIteration as done:
        return added, done.value
    return added, None
