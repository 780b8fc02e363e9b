"""One run of one campaign, lock to summary, around the send loop.

::

    unsubscribe policy -> suppression pull -> lock (+ heartbeat) -> runs row ->
    pause / content checks -> stale `sending` -> `unknown` -> plan (the first
    PLAN_AHEAD rows; the rest while sending) -> due deferred -> pending ->
    the send loop (``stampcli.delivery.engine``) -> RunSummary -> runs row, unlock

A run ends with a *reason* (``RunSummary.reason``: complete, failures, stopped,
limit, quota, deferred, all_down, paused, interrupted, not_due); what a process makes
of it (an exit code) is its own business: the CLI maps reasons to exit codes
in ``stampcli.cli.exit_codes`` and passes that mapping as ``exit_code_for`` so
the runs row records it too.

A campaign with ``schedule``, ``window`` or ``ab`` plans its whole audience
first, then sends only the rows due now (``stampcli.schedule.gate``): a run
with nothing due ends ``not_due`` at once, saying when the next row is due; a
run whose window closes stops claiming and ends ``not_due`` too. Every real
run records the campaign's schedule state (``stampcli.schedule.state``). Time
for all of it comes from ``clock`` (tests pass a ``FakeClock``). ``pace`` is a
campaign-wide rate, the tighter of it and ``throttle.rate``.

Process-wide settings (the GC pacing of ``stampcli.gcpace``) are not made
here: the process that owns the event loop (the CLI, a worker) enters them,
so a library caller's process is left as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.compliance.policy import require_unsubscribe
from stampcli.compliance.verp import campaign_verp
from stampcli.config import Campaign
from stampcli.delivery.crashwindow import crash_window
from stampcli.delivery.engine import (
    RendererLike,
    RouterLike,
    SendLoop,
    Sizing,
    provider_state_dict,
)
from stampcli.delivery.plan_ahead import PlanFeed, plan_first
from stampcli.delivery.planner import PlanResult, plan_steps
from stampcli.delivery.run_events import (
    Event,
    EventSink,
    Notice,
    RunFinished,
    RunStarted,
    ignore,
)
from stampcli.delivery.settle import clean
from stampcli.delivery.shared import POLL_EVERY, Membership, SharedFeed, heartbeat
from stampcli.errors import LockedError, StampError
from stampcli.providers.base import Adapter
from stampcli.records import Contact
from stampcli.store import campaigns, leases, ledger, locks
from stampcli.store.db import now
from stampcli.store.protocols import Store

REASONS = (
    "complete", "failures", "stopped", "limit", "quota", "deferred", "all_down", "paused",
    "interrupted", "not_due",
)  # fmt: skip
LEFT = (ledger.PENDING, ledger.DEFERRED, ledger.SENDING)  # states a later run still sends
# Seconds between looks at the campaign's pause flag while sending: delivery events
# (``stamp serve``, ``stamp events pull``) may pause it from another process.
PAUSE_POLL_EVERY = 1.0


@dataclass(slots=True)
class RunSummary:
    """What a run did and how it ended (``reason``: one of :data:`REASONS`)."""

    campaign: str
    reason: str
    counts: dict[str, int]  # whole ledger by state
    run_counts: dict[str, int]  # this run by state
    per_provider: dict[str, dict[str, int]]  # this run: label -> {sent, failed, ...}
    elapsed: float
    planned: PlanResult | None = None
    unknown_found: int = 0  # rows a dead run left in flight, now `unknown`
    paused_reason: str | None = None
    providers: list[dict[str, Any]] = field(default_factory=list)  # router states at the end
    # scheduled campaigns: when the next row is due (None: none is, or not scheduled),
    # and what the schedule held (stampcli.schedule.gate.Survey, the A/B phase)
    next_due_at: float | None = None
    schedule: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = self._as_dict()
        if self.schedule is not None or self.next_due_at is not None:
            from stampcli.schedule.state import iso

            out["next_due_at"] = iso(self.next_due_at)
            out["schedule"] = self.schedule
        return out

    def _as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "reason": self.reason,
            "counts": self.counts,
            "run_counts": self.run_counts,
            "per_provider": self.per_provider,
            "elapsed": round(self.elapsed, 3),
            "planned": None if self.planned is None else self.planned.as_dict(),
            "unknown_found": self.unknown_found,
            "paused_reason": self.paused_reason,
            "providers": self.providers,
        }


class CampaignRun:
    """Sends one campaign from its ledger. Create, then ``await run()`` once.

    ``router`` and ``renderer`` default to the real ones built from ``campaign``;
    ``adapters`` replaces the providers of the default router (dry runs).
    ``contacts`` replaces reading the audience (tests, imports done elsewhere).
    ``ledger_name`` is the campaign's name in the store (dry runs use their own).
    ``allow_changed``: send on although the message changed since sending started.
    ``unpause``: clear an auto-stop pause first. ``exit_code_for``: the caller's
    exit code for a run's reason, recorded in the runs row (None: not recorded).
    """

    def __init__(
        self,
        campaign: Campaign,
        store: Store,
        *,
        router: RouterLike | None = None,
        renderer: RendererLike | None = None,
        adapters: Sequence[Adapter] | None = None,
        contacts: Iterable[Contact] | None = None,
        on_event: EventSink = ignore,
        limit: int | None = None,
        allow_changed: bool = False,
        unpause: bool = False,
        ledger_name: str | None = None,
        dry_run: bool = False,
        workers: int | None = None,
        stale_after: float = locks.STALE_AFTER,
        heartbeat_every: float = locks.HEARTBEAT_EVERY,
        pause_poll_every: float = PAUSE_POLL_EVERY,
        render_workers: int | None = None,
        exit_code_for: Callable[[str], int] | None = None,
        clock: Clock | None = None,
        shared: bool = False,
        lease_for: float = leases.LEASE_FOR,
        poll_every: float = POLL_EVERY,
    ) -> None:
        self.campaign = campaign
        self.clock: Clock = clock or SYSTEM_CLOCK
        # what the send loop and router see: `pace:` folded into the campaign's rate
        sending = _paced(campaign)
        self.store = store
        self.name = ledger_name or campaign.name
        self._router_arg = router
        self._renderer_arg = renderer
        self._adapters = adapters
        self._contacts = contacts
        self._emit = on_event
        self.allow_changed = allow_changed
        self.unpause = unpause
        self.dry_run = dry_run
        self.stale_after = stale_after
        self.heartbeat_every = heartbeat_every
        self.pause_poll_every = pause_poll_every
        self.exit_code_for = exit_code_for
        self.shared = shared
        self.lease_for = lease_for
        self.poll_every = poll_every
        self.member: Membership | None = None  # this worker, when the campaign is shared
        self._sending = sending
        self.sizing = Sizing.of(sending, limit, workers)
        if campaign.window is not None and sending.throttle.rate is not None:
            # a paced run in a window claims about two seconds ahead, not eight messages:
            # what is claimed goes out, so this is how far past the close it can send
            ahead = max(1, math.ceil(sending.throttle.rate.per_second * 2))
            if ahead < self.sizing.max_inflight:
                self.sizing = dataclasses.replace(
                    self.sizing,
                    max_inflight=ahead,
                    claim_size=min(self.sizing.claim_size, ahead),
                )
        self.loop = SendLoop(
            sending, store, self.sizing, on_event=on_event, render_workers=render_workers
        )
        self._campaign_id = 0
        self._run_id = 0
        self._router: Any = None  # while it sends: its tallies are saved for `stamp report`
        self._feed: PlanFeed | None = None  # while the run plans and sends
        self._gate: Any = None  # stampcli.schedule.gate.Gate of a scheduled run
        self._phase: Any = None  # its stampcli.schedule.state.Phase

    @property
    def max_inflight(self) -> int:
        """Rows claimed and not yet recorded at most: the rows a kill can leave in doubt."""
        return self.sizing.max_inflight

    @property
    def workers(self) -> int:
        """Messages with the router at once at most."""
        return self.sizing.workers

    @property
    def planning_done(self) -> bool:
        """No more rows can turn up pending in this run (planning is over, or never began)."""
        return self._feed is None or self._feed.done

    @property
    def _pool(self) -> Any:  # the send loop's render pool while it runs (tests kill it)
        return self.loop._pool

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Stop claiming; finish and record what is in flight (first Ctrl-C)."""
        self.loop.request_stop()

    def abort(self) -> None:
        """Stop now: in-flight rows become ``unknown`` (second Ctrl-C)."""
        self.loop.abort()

    @property
    def stopping(self) -> bool:
        return self.loop.stopping

    # ------------------------------------------------------------------ run

    async def run(self) -> RunSummary:
        started = time.monotonic()
        store = self.store
        require_unsubscribe(self.campaign)
        campaign_verp(self.campaign)  # its secret is set, before anything is locked
        if self.campaign.suppress_pull and not self.dry_run:
            # before the lock: a long pull must not starve the lock's heartbeat
            self._pull_suppressions()
        row = store.campaigns.ensure(self.name)
        self._campaign_id = row.id
        owner = locks.new_owner()
        unknown_found = 0
        if self.shared and not self._gated:
            member = self.member = Membership(store, row.id, lease_for=self.lease_for, owner=owner)
            unknown_found = member.join(self.name)  # LockedError while a single run has it
            self.loop.recorder.member = member
            # a few beats per lease: a live worker's leases must never run out between
            # two beats, or the others reap it (its `sending` rows would turn `unknown`)
            every = min(self.heartbeat_every, self.lease_for / 3)
            heart = asyncio.create_task(
                heartbeat(member, every, self._stats(), self._lost, self._emit)
            )
        else:
            self._lock(row.id, owner)
            heart = asyncio.create_task(self._heartbeat(owner))
        run_id = self._run_id = store.runs.start(row.id)
        summary: RunSummary | None = None
        refused: StampError | None = None  # paused, content changed, bad template, store
        try:
            with store.checkpoints_in_background():
                summary = await self._run_locked(row, started, unknown_found)
            return summary
        except StampError as exc:
            refused = exc
            raise
        finally:
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart
            code, record = None, None  # None: died (status says so)
            if summary is not None:
                record = summary.as_dict()
                if self.exit_code_for is not None:
                    code = int(self.exit_code_for(summary.reason))
            elif refused is not None:
                code = int(refused.exit_code)
                record = {"reason": "refused", "error": clean(str(refused))}
            store.runs.finish(run_id, code, record)
            if self.member is not None:
                self.member.leave()  # what it still leases comes free for the others
            else:
                store.locks.release(row.id, owner)

    def _lock(self, campaign_id: int, owner: str) -> None:
        """Take the campaign's lock (one run sends it), refused while workers share it."""
        store = self.store
        taken = store.locks.acquire(
            campaign_id, owner, campaign_name=self.name, stale_after=self.stale_after
        )
        # after the lock, look for workers: they look for the lock after registering,
        # so one of the two always sees the other
        workers = store.leases.workers(campaign_id)
        if workers:
            store.locks.release(campaign_id, owner)
            raise LockedError(
                f"campaign {self.name!r} is being sent by {len(workers)} worker(s) sharing it "
                f"({', '.join(w.owner for w in workers)}); wait for them to finish, or join "
                "them as a worker"
            )
        if taken is not None:
            why = locks.stale_reason(taken, at=now(), stale_after=self.stale_after) or "stale"
            self._emit(Notice("warning", f"took over the lock of {taken.owner} ({why})"))

    def _stats(self) -> Callable[[], tuple[int, float]]:
        """For the worker's heartbeat: rows claimed so far, messages/s since the last beat."""
        recorder = self.loop.recorder
        last = [recorder.done, time.monotonic()]

        def stats() -> tuple[int, float]:
            t = time.monotonic()
            rate = (recorder.done - last[0]) / max(t - last[1], 1e-6)
            last[0], last[1] = recorder.done, t
            return recorder.claimed, rate

        return stats

    def _lost(self) -> None:
        self.loop.halt("lock_lost")

    async def _run_locked(
        self, row: campaigns.CampaignRow, started: float, unknown_found: int
    ) -> RunSummary:
        store = self.store
        loop = self.loop
        if self.unpause and store.campaigns.unpause(row.id):
            self._emit(Notice("info", "pause cleared; sending resumes"))
        row = store.campaigns.get(self.name) or row
        campaigns.check_not_paused(row)
        renderer = self._renderer_arg or _default_renderer(self.campaign)
        if campaigns.check_content(
            store, row, renderer.content_hash, allow_changed=self.allow_changed
        ):
            self._emit(
                Notice(
                    "warning",
                    "the message changed since sending started; the rest get the new version",
                )
            )
        if self.member is None:  # a single run: whatever is `sending` a dead run left
            unknown_found = store.ledger.mark_stale_sending(row.id)
        if not self.unpause:  # after an unpause a person decided to go on: count afresh
            loop.autostop.seed(*store.ledger.answer_stats(row.id))
        if unknown_found:
            # with how many of them can in fact have gone out, so a retry is an informed choice
            window = crash_window(store, row.id, self.campaign)
            text = f"{unknown_found} recipients were in flight when an earlier run died and "
            if window is None:  # not possible: they carry the dead run's last_error
                text += "are now `unknown`; `stamp retry --unknown` sends them again"
            elif window.left == unknown_found:
                text += f"are now `unknown`; {window.detail()}"
            else:  # earlier deaths left some too
                text += f"are now `unknown`, {window.left} in all; {window.detail()}"
            self._emit(Notice("warning", text))

        def steps_() -> Generator[int, None, PlanResult]:
            return plan_steps(
                self.campaign, store, row.id, name=self.name, contacts=self._contacts,
                on_event=self._emit,
            )  # fmt: skip

        feed: PlanFeed
        planned: PlanResult | None = None
        added = 0
        steps: Generator[int, None, PlanResult] | None = None
        if self.member is not None:
            shared_feed = SharedFeed(
                0, self.sizing.cap, self.member, steps_, on_event=self._emit,
                on_planned=lambda: None, poll_every=self.poll_every,
            )  # fmt: skip
            feed = self._feed = shared_feed
            shared_feed.take_turn()  # plans here if no live worker plans or planned
            planned = shared_feed.planned
        else:
            steps = steps_()
            added, planned = plan_first(steps)
        gated = self._gated
        if gated and planned is None and steps is not None:
            # which rows are due depends on every row's zone and variant: plan them all
            planned = _plan_rest(steps)
        _, expired = store.ledger.requeue_due(
            row.id, at=now(), expire_after=self.campaign.throttle.expire_after
        )
        if expired:
            self._emit(Notice("warning", f"{expired} deferred recipients expired and failed"))
        counts = store.ledger.counts(row.id)
        pending = counts[ledger.PENDING]
        if gated:
            due = self._open_gate(row.id, renderer)
            if due == 0:
                return self._summary(started, planned, unknown_found, [])
            pending = due
        labels = [p.label for p in self.campaign.providers]
        if self._adapters is not None:
            labels = [a.name for a in self._adapters]

        def started_event() -> None:
            # "start" follows "planned" as when planning ends before sending starts
            with contextlib.suppress(StampError):
                total = sum(store.ledger.counts(row.id).values())
                self._emit(RunStarted(self.name, total, feed.total, labels, self.dry_run))

        if self.member is not None:
            feed.set_pending(pending)
            self._emit(
                RunStarted(self.name, sum(counts.values()), feed.total, labels, self.dry_run)
            )
        else:
            feed = self._feed = PlanFeed(pending, self.sizing.cap)
            if planned is None and steps is not None:
                feed.start(steps, added, pending, started_event)
            else:
                self._emit(
                    RunStarted(self.name, sum(counts.values()), feed.total, labels, self.dry_run)
                )
        router = self._router_arg or _default_router(
            self._sending, store, self._adapters, self._emit, self.clock,
            shared=self.member is not None,
        )  # fmt: skip
        watch = asyncio.create_task(self._watch_pause())
        self._router = router
        try:
            if feed.total or self.member is not None:  # a worker waits for the others' rows
                await loop.send(row.id, renderer, router, feed)
        finally:
            self._save_tallies()
            self._router = None
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            if feed.task is not None:
                planned = await feed.end()
                if isinstance(feed, SharedFeed):
                    planned = feed.planned
        if loop.store_error is not None:
            raise loop.store_error
        provider_states = [provider_state_dict(s) for s in router.states()]
        return self._summary(started, planned, unknown_found, provider_states)

    # ------------------------------------------------------------------ schedules

    @property
    def _gated(self) -> bool:
        """Rows wait for a schedule, window or A/B phase (a dry run previews them all)."""
        from stampcli.schedule.gate import scheduled

        return not self.dry_run and scheduled(self.campaign)

    def _open_gate(self, campaign_id: int, renderer: RendererLike) -> int:
        """Set the gate up for this run: the A/B phase, what is due now; rows due now."""
        from stampcli.schedule import state
        from stampcli.schedule.gate import WAITING, Gate
        from stampcli.schedule.variants import VariantRenderer

        t = self.clock.time()
        phase = state.ab_phase(self.campaign, self.store, campaign_id, t)
        if isinstance(renderer, VariantRenderer):
            renderer.winner = phase.winner
        gate = Gate(self.campaign, self.clock.time, phase=phase.phase, ab_next_at=phase.next_at)
        survey = gate.survey(self.store, campaign_id)
        self._gate, self._phase = gate, phase
        self.loop.gate = gate
        if survey.fallback:
            sched = self.campaign.schedule
            self._emit(
                Notice(
                    "warning",
                    f"{survey.fallback} recipients have no valid time zone in "
                    f"{sched.timezone_field if sched else '?'}; they get the campaign's "
                    f"({sched.timezone if sched else 'UTC'}); `stamp check` lists them",
                )
            )
        if survey.due == 0 and survey.held:
            when = state.iso(survey.next_at) or "never (no window is ever open)"
            why = "the A/B winner" if phase.phase == WAITING else "the next recipients"
            self._emit(Notice("info", f"nothing is due now; {why} due at {when}"))
        return survey.due

    def _schedule_end(self, counts: dict[str, int]) -> tuple[float | None, dict[str, Any] | None]:
        """After a gated run: survey what is left, record the state; (next due, detail)."""
        from stampcli.schedule import state

        if self.dry_run:
            return None, None
        gate = self._gate
        if gate is not None and self.campaign.ab is not None and self._phase.phase != "winner":
            # the test share may have finished in this run: its wait starts now
            from stampcli.schedule.gate import Gate

            t = self.clock.time()
            self._phase = state.ab_phase(self.campaign, self.store, self._campaign_id, t)
            gate = Gate(
                self.campaign,
                self.clock.time,
                phase=self._phase.phase,
                ab_next_at=self._phase.next_at,
            )
        survey = None if gate is None else gate.survey(self.store, self._campaign_id)
        saved = state.record(
            self.campaign,
            self.store,
            self._campaign_id,
            self.clock.time(),
            survey=survey,
            phase=self._phase,
            counts=counts,
        )
        if gate is None:
            return None, None
        detail: dict[str, Any] = {"state": saved.state, **(survey.as_dict() if survey else {})}
        if self._phase is not None and self.campaign.ab is not None:
            detail["ab_phase"] = self._phase.phase
            winner = self._phase.winner
            detail["ab_winner"] = None if winner is None else self.campaign.ab.label(winner)
        return saved.next_due_at, detail

    def _pull_suppressions(self) -> None:
        """``suppress_pull: true``: merge every provider's suppressions before sending."""
        from stampcli.providers.pull import pull_all  # httpx and AWS signing: only when used

        report = pull_all(self.campaign, self.store)
        for pulled in report.providers:
            if pulled.warning is not None:
                self._emit(Notice("warning", f"suppress pull: {pulled.warning}"))
            if pulled.error is not None:
                self._emit(
                    Notice(
                        "warning",
                        f"suppress pull from {pulled.provider} failed ({pulled.error}); "
                        "sending goes on with the suppressions already known",
                    )
                )
            elif pulled.skipped is None:
                self._emit(
                    Notice(
                        "info",
                        f"suppress pull from {pulled.provider}: {pulled.fetched} records, "
                        f"{pulled.new} new",
                    )
                )

    def _save_tallies(self) -> None:
        """The router's per-provider tallies so far into the store (``stamp report`` reads
        them); a store error here is said, never fatal: the send's fates are elsewhere."""
        tallies = getattr(self._router, "tallies", None)  # a custom router may have none
        if tallies is None or self.dry_run or not self._run_id:
            return
        try:
            self.store.reports.save_tallies(self._run_id, self._campaign_id, tallies())
        except StampError as exc:
            self._emit(Notice("warning", f"could not save the provider tallies: {exc}"))

    async def _heartbeat(self, owner: str) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            self._save_tallies()  # a run that dies loses a heartbeat's worth at most
            try:
                ours = self.store.locks.heartbeat(self._campaign_id, owner)
            except StampError as exc:
                self._emit(Notice("error", f"cannot refresh the lock: {exc}"))
                continue
            if not ours:
                self._emit(Notice("error", "another run took over this campaign's lock"))
                self.loop.halt("lock_lost")
                return

    async def _watch_pause(self) -> None:
        """Stop claiming once the campaign is paused from outside this run (auto-stop on
        delivery events, see ``stampcli.service.events``); the run ends ``paused``."""
        loop = self.loop
        while loop.paused_reason is None:
            await asyncio.sleep(self.pause_poll_every)
            try:
                row = self.store.campaigns.get(self.name)
            except StampError:
                continue  # a busy store: look again next time; the heartbeat says so
            if row is not None and row.paused_reason is not None and loop.paused_reason is None:
                loop.paused_reason = row.paused_reason
                self._emit(Notice("error", f"campaign paused: {row.paused_reason}"))
                loop.halt("paused")
                return

    # ------------------------------------------------------------------ summary

    def _reason(self, counts: dict[str, int], provider_states: list[dict[str, Any]]) -> str:
        """Why the run ended (one of :data:`REASONS`)."""
        loop = self.loop
        left = sum(counts[s] for s in LEFT)
        quota_out = loop.quota_out or (
            bool(provider_states) and all(s.get("state") == "quota_used" for s in provider_states)
        )
        if loop.aborted:
            return "interrupted"
        if loop.paused_reason is not None:
            return "paused"
        if loop.all_down and left:
            return "quota" if quota_out else "all_down"
        if left:
            reason = loop.stop_reason or ("quota" if quota_out else "deferred")
            return "stopped" if reason == "lock_lost" else reason
        if counts[ledger.FAILED] or counts[ledger.UNKNOWN]:
            return "failures"
        return "complete"

    def _summary(
        self,
        started: float,
        planned: PlanResult | None,
        unknown_found: int,
        provider_states: list[dict[str, Any]],
    ) -> RunSummary:
        counts = self.store.ledger.counts(self._campaign_id)
        reason = self._reason(counts, provider_states)
        next_due, detail = self._schedule_end(counts)
        if detail is not None and reason in ("deferred", "complete") and detail.get("held"):
            reason = "not_due"  # what is left waits for its time, not for a retry
        loop = self.loop
        summary = RunSummary(
            campaign=self.name,
            reason=reason,
            counts=counts,
            run_counts={k: v for k, v in loop.recorder.run_counts.items() if v},
            per_provider=loop.provider_counts(),
            elapsed=time.monotonic() - started,
            planned=planned,
            unknown_found=unknown_found,
            paused_reason=loop.paused_reason,
            providers=provider_states,
            next_due_at=next_due,
            schedule=detail,
        )
        self._emit(
            RunFinished(
                self.name,
                reason,
                counts,
                summary.run_counts,
                round(summary.elapsed, 3),
                summary.per_provider,
                _iso(next_due) if reason == "not_due" else None,
            )
        )
        return summary


def _default_renderer(campaign: Campaign) -> RendererLike:
    if campaign.ab is not None:
        from stampcli.schedule.variants import VariantRenderer

        return VariantRenderer(campaign)
    from stampcli.render.renderer import Renderer

    return Renderer(campaign)


def _default_router(
    campaign: Campaign,
    store: Store,
    adapters: Sequence[Adapter] | None,
    on_event: EventSink,
    clock: Clock | None = None,
    *,
    shared: bool = False,
) -> RouterLike:
    from stampcli.delivery.router import Router

    def forward(event: Event) -> None:
        on_event(event)

    # workers sharing the campaign keep to its rates together (delivery/shared_rate.py)
    rates = store.rates if shared else None
    return Router(campaign, store, adapters=adapters, on_event=forward, clock=clock, rates=rates)


def _paced(campaign: Campaign) -> Campaign:
    """The campaign with ``pace:`` as its campaign-wide rate (the tighter of the two)."""
    pace = campaign.pace
    if pace is None:
        return campaign
    rate = campaign.throttle.rate
    if rate is not None and rate.per_second <= pace.per_second:
        return campaign
    throttle = campaign.throttle.model_copy(update={"rate": pace})
    return campaign.model_copy(update={"throttle": throttle})


def _plan_rest(steps: Generator[int, None, PlanResult]) -> PlanResult:
    """Plan to the end (a scheduled run needs every row before it can tell what is due)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: PlanResult = done.value
            return result


def _iso(ts: float | None) -> str | None:
    from stampcli.schedule.state import iso

    return iso(ts)
