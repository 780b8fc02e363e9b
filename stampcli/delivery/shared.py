"""One campaign sent by several workers at once: this process as one of them.

A run joins a shared campaign (``CampaignRun(shared=True)``: what ``stamp
send`` and ``stamp worker`` run on PostgreSQL, see ``service.send.shares``)
instead of locking it. The rules are the store's
(:mod:`stampcli.store.leases`); this module is the worker's side of them::

    join (refused while a single run holds the campaign's lock; a single run's
    dead `sending` rows -> `unknown`) -> planning turn (the first worker plans,
    the others send what is planned and wait for the rest) -> lease rows as the
    reader reads them -> claim only rows still ours -> heartbeat renews the
    worker and its leases, and reaps the dead -> leave (what is still leased
    comes free for the others)

A worker keeps reading while the campaign may still give it rows: while some
live worker plans, or holds pending or sending rows (it may die, and its rows
then come to the living). A dead worker is seen at once when it ran on this
host (its pid is gone), else when its lease runs out (``lease_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator

from stampcli.delivery.plan_ahead import PlanFeed, plan_first
from stampcli.delivery.planner import PlanResult
from stampcli.delivery.run_events import EventSink, Notice
from stampcli.errors import LockedError, StampError
from stampcli.store import leases, locks
from stampcli.store.db import now
from stampcli.store.protocols import Store

POLL_EVERY = 0.5  # seconds between looks at the others while this worker has nothing to read


class Membership:
    """This process as one worker of one shared campaign (create, ``join``, ..., ``leave``)."""

    def __init__(
        self,
        store: Store,
        campaign_id: int,
        *,
        lease_for: float = leases.LEASE_FOR,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.lease_for = lease_for
        self.owner = owner or locks.new_owner()
        self.lost = False  # reaped by the others (a long freeze): stop claiming

    def until(self) -> float:
        return now() + self.lease_for

    def join(self, campaign_name: str = "") -> int:
        """Register; refuse while a single run holds the campaign. Returns the rows a dead
        single run or dead workers left `sending`, now `unknown`."""
        leases_ = self.store.leases
        leases_.join(self.campaign_id, self.owner, until=self.until())
        # after registering, look for a single run: it looks for workers after taking
        # its lock, so one of the two always sees the other
        holder = self.store.locks.holder(self.campaign_id)
        if holder is not None and locks.stale_reason(holder, at=now()) is None:
            leases_.leave(self.owner)
            name = f" {campaign_name!r}" if campaign_name else ""
            raise LockedError(
                f"campaign{name} is being sent by a single run ({holder.owner}); workers join "
                "a campaign only when no single run holds it"
            )
        self.expire_dead()
        return leases_.reap(self.campaign_id, orphans=True)

    def expire_dead(self) -> list[str]:
        """Workers of this host whose process is gone: expired now, not after their lease."""
        host = socket.gethostname()
        dead = [
            w.owner
            for w in self.store.leases.workers(self.campaign_id)
            if w.host == host and w.owner != self.owner and not locks.pid_alive(w.pid)
        ]
        if dead:
            self.store.leases.expire(dead)
        return dead

    def renew(self, claimed: int, rate: float) -> bool:
        ours = self.store.leases.renew(self.owner, until=self.until(), claimed=claimed, rate=rate)
        self.lost = self.lost or not ours
        return ours

    def reap(self) -> int:
        """Take over what dead workers held; rows that became `unknown`."""
        self.expire_dead()
        return self.store.leases.reap(self.campaign_id)

    def others_busy(self) -> bool:
        """Whether rows may still come: someone plans, or other live workers hold rows."""
        leases_ = self.store.leases
        return leases_.planning(self.campaign_id) or bool(
            leases_.outstanding(self.campaign_id, self.owner)
        )

    def alone(self) -> bool:
        """Whether no other live worker shares the campaign (then no rows can come free)."""
        try:
            return all(w.owner == self.owner for w in self.store.leases.workers(self.campaign_id))
        except StampError:
            return False  # cannot tell: wait as if others were there

    def leave(self) -> None:
        with contextlib.suppress(StampError):  # the leases then run out by themselves
            self.store.leases.leave(self.owner)


class SharedFeed(PlanFeed):
    """:class:`PlanFeed` for a worker of a shared campaign.

    When the worker runs out of rows, it waits while the others may still give it
    some (planning, rows of theirs that may come free), taking its planning turn
    when the planner died, and reaping dead workers as it looks.
    """

    def __init__(
        self,
        pending: int,
        cap: int | None,
        member: Membership,
        plan: Callable[[], Generator[int, None, PlanResult]],
        *,
        on_event: EventSink,
        on_planned: Callable[[], None],
        poll_every: float = POLL_EVERY,
    ) -> None:
        super().__init__(pending, cap)
        self.member = member
        self._plan = plan
        self._emit = on_event
        self._on_planned = on_planned
        self.poll_every = poll_every
        self.done = False
        self.planned: PlanResult | None = None  # this worker's planning, if it planned
        self._quiet = 0  # looks in a row that found nothing more to wait for

    def take_turn(self) -> bool:
        """Plan now if it is this worker's turn (the first rows here, the rest in a task).

        Returns whether this worker planned (or is planning)."""
        member = self.member
        turn = member.store.leases.plan_turn(member.campaign_id, member.owner, until=member.until())
        if turn != leases.PLAN:
            return False
        steps = self._plan()
        added, planned = plan_first(steps)
        pending = member.store.ledger.counts(member.campaign_id)["pending"]
        self.set_pending(pending)
        if planned is not None:
            self._planned(planned)
            self._on_planned()
            return True
        self.task = asyncio.create_task(self._plan_rest(steps, added, pending, self._end))
        self.task.add_done_callback(self._plan_ended)
        return True

    def _planned(self, planned: PlanResult) -> None:
        self.planned = planned
        try:
            self._tell_planned()
        except StampError as exc:
            self._emit(Notice("warning", f"cannot say planning ended yet (will again): {exc}"))

    def _tell_planned(self) -> None:
        """Record in the store that this worker's planning ended (raises StampError).

        Until it is recorded every worker, this one too, sees planning going on (the
        heartbeat keeps the turn alive) and waits for rows that will never come: a
        store that restarted just as planning ended (the write failed, or a server
        without synchronous commit lost it in its crash) hung the whole fleet so. So
        it is said again, idempotently, at each look at the others (``more_rows``):
        one small UPDATE every ``poll_every`` while this worker has nothing to read."""
        self.member.store.leases.plan_done(self.member.campaign_id, self.member.owner)

    def _end(self) -> None:
        self.done = False  # this worker's planning ended; the others may still give it rows
        self._on_planned()

    def _plan_ended(self, task: asyncio.Task[PlanResult]) -> None:
        # the task's own `finally` (on_end) runs before the task is done, so its result is
        # read here; a failed or cancelled planning ends the run, whose leave gives up
        # the turn for another worker to plan
        if not task.cancelled() and task.exception() is None:
            self._planned(task.result())

    async def more_rows(self) -> bool:
        task = self.task
        if task is not None and not task.done():  # planning here: as a single run waits
            self.more.clear()
            await self.more.wait()
            return True
        if not self.member.alone():  # alone, nobody can give rows: no need to wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.more.wait(), self.poll_every)
        self.more.clear()
        try:
            if self.planned is not None:
                self._tell_planned()
            reaped = self.member.reap()
            if reaped:
                self._emit(
                    Notice(
                        "warning",
                        f"{reaped} recipients were in flight when another worker died and are "
                        "now `unknown`; `stamp retry --unknown` sends them again",
                    )
                )
            busy = self.member.others_busy()
            # the planner may have died before it was done: take the turn if it is ours
            if (
                not busy
                and not self.member.store.leases.planning(self.member.campaign_id)
                and self.planned is None
                and self.task is None
                and self.take_turn()
            ):
                self._quiet = 0
                return True
        except StampError as exc:  # a busy or restarting store: look again next time
            self._emit(Notice("warning", f"cannot look at the other workers: {exc}"))
            return True
        if busy or reaped:
            self._quiet = 0
            return True
        self._quiet += 1
        if self._quiet < 2:  # one more read: rows may have come free just now
            return True
        self.done = True
        return False


async def heartbeat(
    member: Membership,
    every: float,
    stats: Callable[[], tuple[int, float]],
    on_lost: Callable[[], None],
    on_event: EventSink,
) -> None:
    """Renew the worker and its leases every ``every`` seconds; ``on_lost`` once reaped."""
    while True:
        await asyncio.sleep(every)
        claimed, rate = stats()
        try:
            ours = member.renew(claimed, rate)
        except StampError as exc:
            on_event(Notice("error", f"cannot renew this worker's leases: {exc}"))
            continue
        if not ours:
            on_event(
                Notice(
                    "error",
                    "the other workers took over this worker's rows (no heartbeat in time); "
                    "stopping",
                )
            )
            on_lost()
            return
