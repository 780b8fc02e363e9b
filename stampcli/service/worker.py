"""``stamp worker`` as a library: take due campaigns from the store's queue and send them.

::

    register (fleet_workers) -> loop: due campaigns (fleet_queue) -> may_join? ->
        unpack -> send_campaign (the lock, the ledger: service/send.py) -> settle
        (done, or when it is due again) -> ... -> stop: drain, release, deregister

Many workers on many hosts share one store. Which of them sends a campaign is
decided where a run starts (``service.send.shares``): on PostgreSQL every
worker joins the due campaign as one of its workers (row leases,
``delivery.shared``), so N workers send one campaign together and then the
next; where a run locks the campaign (SQLite, a cap, a schedule) one worker
sends it and the others take other campaigns. :func:`may_join` is the one
place that decides whether a worker starts on a campaign.

A stop (:meth:`Worker.request_stop`, SIGTERM in the CLI) drains: the run in
progress stops claiming, records what is on the wire, releases the lock, and
the campaign stays queued and due, for another worker. ``once``: one pass over
what is due, then return (cron). Nothing here prints: progress reaches
``on_event`` as the runs' events plus this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stampcli.delivery.run_events import Event, EventSink, Notice, Progress, ignore
from stampcli.errors import CampaignPausedError, LockedError, StampError, StoreError
from stampcli.records import QueueEntry, WorkerRow
from stampcli.service.bundle import unpack
from stampcli.service.send import RunHandle, RunSummary, SendOptions, send_campaign
from stampcli.store import locks
from stampcli.store.db import now
from stampcli.store.protocols import Store

POLL_EVERY = 10.0  # seconds between looks at the queue while nothing is due
HEARTBEAT_EVERY = locks.HEARTBEAT_EVERY
GONE_AFTER = locks.STALE_AFTER  # seconds without a heartbeat before a worker counts as gone
FORGET_AFTER = 7 * 86400.0  # workers last heard of longer ago are dropped from the registry
# seconds until a campaign is looked at again, by how its run ended
RETRY_AFTER = {
    "deferred": 60.0,  # deferred rows come due later
    "all_down": 60.0,  # every provider down: the circuit breakers' own pace
    "paused": 60.0,  # auto-stop: a person decides (stamp send --unpause)
    "refused": 60.0,  # content changed, a missing ${NAME} on this worker, ...
    "error": 30.0,  # the store failed during the run
}
FINISHED = ("complete", "failures")  # every recipient has a final state
WORKER_STATES = ("idle", "sending", "draining", "stopped", "gone")


@dataclass(frozen=True, slots=True)
class WorkerStarted(Event):
    kind = "worker"
    worker: str
    store: str
    once: bool


@dataclass(frozen=True, slots=True)
class CampaignTaken(Event):
    kind = "campaign"
    campaign: str
    due_since: float  # seconds it had been due


@dataclass(frozen=True, slots=True)
class CampaignSettled(Event):
    """A worker's run of a campaign ended: how, and when it is due again (if ever)."""

    kind = "settled"
    campaign: str
    reason: str  # RunSummary.reason, or refused / error / locked
    sent: int  # messages this run sent
    state: str  # queued | done
    due_at: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerStopped(Event):
    kind = "stopped"
    worker: str
    runs: int
    sent: int
    reason: str  # once (one pass done) | stop (asked to) | store (the store failed for good)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker runs (``stamp worker`` options)."""

    once: bool = False
    poll: float = POLL_EVERY
    heartbeat_every: float = HEARTBEAT_EVERY
    exit_code_for: Callable[[str], int] | None = None  # the caller's, for the runs rows

    def __post_init__(self) -> None:
        if not (self.poll > 0 and math.isfinite(self.poll)):
            raise ValueError(f"poll must be a positive number of seconds, not {self.poll!r}")


@dataclass(slots=True)
class WorkerSummary:
    worker: str
    runs: int
    sent: int
    reason: str
    settled: list[CampaignSettled] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "runs": self.runs,
            "sent": self.sent,
            "reason": self.reason,
            "campaigns": [s.as_dict() for s in self.settled],
        }


def may_join(store: Store, entry: QueueEntry, *, at: float | None = None) -> bool:
    """Whether a worker may start on queued campaign ``entry`` now.

    Only when no live run holds the campaign's lock (a stale lock is taken over by
    the run, which says so). Workers sharing a campaign hold no lock, so another
    worker joins them; a locked run refuses a second (LockedError: it moves on).
    """
    row = store.campaigns.get(entry.name)
    if row is None:
        return True
    held = store.locks.holder(row.id)
    return held is None or locks.stale_reason(held, at=now() if at is None else at) is not None


def next_day(at: float) -> float:
    """The next UTC midnight after ``at`` (daily quotas start over then)."""
    day = datetime.fromtimestamp(at, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def due_again(reason: str, *, at: float, poll: float) -> tuple[str, float]:
    """(state, due_at) of a campaign whose run ended for ``reason``."""
    if reason in FINISHED:
        return "done", at
    if reason in ("stopped", "interrupted"):
        return "queued", at  # a worker stopped: another may go on at once
    if reason == "quota":
        return "queued", next_day(at)
    return "queued", at + RETRY_AFTER.get(reason, poll)


def worker_state(row: WorkerRow, *, at: float | None = None) -> str:
    """What ``row`` is now: its own state, or ``gone`` when it stopped without saying so."""
    if row.state == "stopped":
        return "stopped"
    at = now() if at is None else at
    if row.host == socket.gethostname() and not locks.pid_alive(row.pid):
        return "gone"
    if at - row.heartbeat_at > GONE_AFTER:
        return "gone"
    return row.state


class Worker:
    """One worker process's loop over the queue. Create, then ``await run()`` once."""

    def __init__(
        self,
        store: Store,
        options: WorkerOptions | None = None,
        *,
        on_event: EventSink = ignore,
        env: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.options = options or WorkerOptions()
        self.id = locks.new_owner()
        self._emit = on_event
        self._env = env
        self._stop = asyncio.Event()
        self._handle: RunHandle | None = None
        self._campaign: str | None = None
        self._state = "idle"
        self._rate = 0.0
        self._run_sent = 0  # sent so far by the run in progress
        self.sent = 0
        self.runs = 0
        self.settled: list[CampaignSettled] = []

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Drain: the run in progress records what is on the wire and ends; then stop."""
        self._stop.set()
        if self._handle is not None:
            self._state = "draining"
            self._handle.request_stop()

    def abort(self) -> None:
        """Stop now: rows in flight become ``unknown`` (a second signal)."""
        self._stop.set()
        if self._handle is not None:
            self._handle.abort()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ run

    async def run(self) -> WorkerSummary:
        store = self.store
        started = now()
        host, pid = socket.gethostname(), os.getpid()
        store.fleet.forget_workers(started - FORGET_AFTER)
        store.fleet.register_worker(WorkerRow(self.id, host, pid, started, started, "idle"))
        self._emit(WorkerStarted(self.id, store.location, self.options.once))
        heart = asyncio.create_task(self._heartbeat())
        reason = "stop"
        try:
            while not self.stopping:
                try:
                    ran = await self._pass()
                except StoreError as exc:  # the server restarted, the disk filled: wait, retry
                    self._emit(Notice("error", f"worker: {exc}; trying again"))
                    ran = 0
                    if self.options.once:
                        reason = "store"
                        break
                if self.options.once:
                    reason = "once"
                    break
                if not ran:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.options.poll)
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart
            with contextlib.suppress(StampError):
                store.fleet.stop_worker(self.id, sent=self.sent)
            self._emit(WorkerStopped(self.id, self.runs, self.sent, reason))
        return WorkerSummary(self.id, self.runs, self.sent, reason, self.settled)

    async def _pass(self) -> int:
        """Send each campaign due now once; how many runs were made."""
        ran = 0
        at = now()
        for entry in self.store.fleet.due(at):
            if self.stopping:
                break
            # looked at again just before: another worker may have finished it meanwhile
            # (a run of a finished campaign would only find nothing left to send)
            if not self._still_due(entry) or not may_join(self.store, entry):
                continue
            if await self._send(entry, at):
                ran += 1
        return ran

    def _still_due(self, entry: QueueEntry) -> bool:
        return any(
            e.name == entry.name and e.digest == entry.digest for e in self.store.fleet.due(now())
        )

    async def _send(self, entry: QueueEntry, at: float) -> bool:
        """Run ``entry`` once; False if another worker had it first."""
        store = self.store
        queued = store.fleet.definition(entry.name)
        if queued is None or queued.digest != entry.digest:
            return False  # taken off the queue, or queued anew: the next pass sees it
        self._emit(CampaignTaken(entry.name, max(0.0, at - entry.due_at)))
        summary: RunSummary | None = None
        error: str | None = None
        reason = "error"
        handle = RunHandle()
        self._handle, self._campaign, self._run_sent = handle, entry.name, 0
        self._state = "sending"
        self._beat()
        try:
            campaign = unpack(queued, env=self._env)
            summary = await send_campaign(
                campaign,
                store,
                SendOptions(),
                on_event=self._forward,
                handle=handle,
                exit_code_for=self.options.exit_code_for,
            )
            reason = summary.reason
        except LockedError:
            return False  # another worker took the lock between our look and our run
        except CampaignPausedError as exc:
            reason, error = "paused", str(exc)
        except StoreError as exc:
            reason, error = "error", str(exc)
        except StampError as exc:
            reason, error = "refused", str(exc)
        finally:
            self._handle, self._campaign = None, None
            self._state = "draining" if self.stopping else "idle"
            self._rate = 0.0
        sent = summary.run_counts.get("sent", 0) if summary is not None else self._run_sent
        self.sent += sent
        self._run_sent = 0
        self.runs += 1
        state, due_at = due_again(reason, at=now(), poll=self.options.poll)
        with contextlib.suppress(StoreError):  # a store that failed: the campaign stays due
            store.fleet.settle(
                entry.name,
                digest=entry.digest,
                state=state,
                due_at=due_at,
                reason=reason,
                error=error,
                worker=self.id,
            )
        settled = CampaignSettled(
            entry.name, reason, sent, state, None if state == "done" else due_at, error
        )
        self.settled.append(settled)
        self._emit(settled)
        self._beat()
        return True

    def _forward(self, event: Event) -> None:
        if isinstance(event, Progress):
            self._run_sent = event.counts.get("sent", 0)
            self._rate = event.rate
        self._emit(event)

    def _beat(self) -> bool:
        """Tell the store what this worker does now; re-register if its row was forgotten."""
        try:
            ok = self.store.fleet.worker_heartbeat(
                self.id,
                state=self._state,
                campaign=self._campaign,
                sent=self.sent + self._run_sent,
                rate=round(self._rate, 1),
            )
            if not ok:
                at = now()
                host, pid = socket.gethostname(), os.getpid()
                self.store.fleet.register_worker(
                    WorkerRow(self.id, host, pid, at, at, self._state, self._campaign)
                )
            return True
        except StoreError as exc:
            self._emit(Notice("error", f"worker heartbeat: {exc}"))
            return False

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_every)
            self._beat()


def live_workers(store: Store, *, at: float | None = None) -> list[tuple[WorkerRow, str]]:
    """Every worker the store knows, with what it is now (:func:`worker_state`)."""
    at = time.time() if at is None else at
    return [(w, worker_state(w, at=at)) for w in store.fleet.workers()]
