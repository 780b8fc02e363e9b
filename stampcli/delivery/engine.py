"""The asyncio send loop: ledger rows in, messages out, every fate written back.

One run of one campaign::

    lock -> pause/content checks -> stale `sending` -> `unknown` -> plan (the
    first PLAN_AHEAD rows; the rest in a task while sending) -> due deferred ->
    pending -> [read pending rows -> render] -> queue -> [claim a batch:
    pending -> sending, commit] -> workers -> router.send -> outcomes -> ledger
    (batched commits) -> events

Memory stays flat whatever the audience size: rows are read a batch at a
time, the rendered queue is bounded, and at most ``max_inflight`` rows are
claimed and not yet recorded. Claiming happens just before messages leave
(rows read and rendered ahead are still ``pending``), so a crash leaves only
the few hundred truly in-flight rows ``sending``; the next run calls those
``unknown``.

Small sends render in the event loop (the reader yields to the loop every few
renders so sending never starves); from 2,000 recipients on, rendering moves
to worker processes (``stampcli.render.pool``) so both cores work.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from stampcli import redact
from stampcli.audience.contact import Contact
from stampcli.compliance.autostop import AutoStop
from stampcli.compliance.policy import require_unsubscribe
from stampcli.config import Campaign, ProviderConfig
from stampcli.delivery.crashwindow import crash_window
from stampcli.delivery.events import (
    Event,
    EventSink,
    Notice,
    Progress,
    RunFinished,
    RunStarted,
    ignore,
)
from stampcli.delivery.planner import PlanResult, plan_steps
from stampcli.errors import ExitCode, RecipientError, StampError
from stampcli.gcpace import collect_rarely
from stampcli.providers.base import Adapter, Outcome, Result
from stampcli.render.message import Message
from stampcli.render.pool import POOL_CHUNK, Rendered, RenderPool, default_workers
from stampcli.store import campaigns, ledger, locks, suppressions
from stampcli.store.db import Store, now

PROGRESS_EVERY = 0.25  # seconds between Progress events
PLAN_AHEAD = 2000  # rows planned before sending starts; the rest is planned while sending
PLAN_SHARE = 0.5  # of the event loop's time, at most, for planning the rest while sending
FLUSH_EVERY = 0.05  # seconds an outcome may wait in memory before its batch commits
RECORD_BATCH = 500  # outcomes per ledger commit at most
RENDER_YIELD = 32  # renders between yields to the event loop


class DeliveryLike(Protocol):
    """What ``Router.send`` returns."""

    @property
    def result(self) -> Result: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...


class RouterLike(Protocol):
    """The router as the engine uses it (``stampcli.delivery.router.Router``)."""

    @property
    def all_down(self) -> bool: ...
    async def send(self, message: Message) -> DeliveryLike: ...
    async def send_many(self, messages: Sequence[Message]) -> Sequence[DeliveryLike]: ...
    def states(self) -> Sequence[Any]: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


class RendererLike(Protocol):
    """The renderer as the engine uses it (``stampcli.render.renderer.Renderer``)."""

    @property
    def content_hash(self) -> str: ...
    def render(self, key: str, email: str, fields: dict[str, Any]) -> Message: ...


@dataclass(slots=True)
class RunSummary:
    """What a run did and how it ended; ``exit_code`` is the process's exit code."""

    campaign: str
    exit_code: ExitCode
    reason: str  # complete|failures|stopped|limit|quota|deferred|all_down|paused|interrupted
    counts: dict[str, int]  # whole ledger by state
    run_counts: dict[str, int]  # this run by state
    per_provider: dict[str, dict[str, int]]  # this run: label -> {sent, failed, ...}
    elapsed: float
    planned: PlanResult | None = None
    unknown_found: int = 0  # rows a dead run left in flight, now `unknown`
    paused_reason: str | None = None
    providers: list[dict[str, Any]] = field(default_factory=list)  # router states at the end

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "exit_code": int(self.exit_code),
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


@dataclass(slots=True, eq=False)
class _Item:
    row: ledger.PendingRow
    message: Message
    tries: int = 0  # sends of this message within this run


def provider_state_dict(status: Any) -> dict[str, Any]:
    """A router ``ProviderStatus`` (any dataclass-like object) as a JSON-ready dict."""
    names = (
        "name", "scheme", "state", "sent", "failed", "rejected", "throttled",
        "failovers", "quota_used", "quota", "reason",
    )  # fmt: skip
    return {n: getattr(status, n) for n in names if hasattr(status, n)}


class Engine:
    """Sends one campaign from its ledger. Create, then ``await run()`` once.

    ``router`` and ``renderer`` default to the real ones built from ``campaign``;
    ``adapters`` replaces the providers of the default router (dry runs).
    ``contacts`` replaces reading the audience (tests, imports done elsewhere).
    ``ledger_name`` is the campaign's name in the store (dry runs use their own).
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
        render_workers: int | None = None,
    ) -> None:
        self.campaign = campaign
        self.store = store
        self.name = ledger_name or campaign.name
        self._router_arg = router
        self._renderer_arg = renderer
        self._adapters = adapters
        self._contacts = contacts
        self._emit = on_event
        caps = [c for c in (limit, campaign.throttle.max_messages) if c is not None]
        self.cap: int | None = min(caps) if caps else None
        self.allow_changed = allow_changed
        self.unpause = unpause
        self.dry_run = dry_run
        self.stale_after = stale_after
        self.heartbeat_every = heartbeat_every
        self.autostop = AutoStop(campaign.auto_stop)  # seeded from the ledger at run start
        self.scopes: list[str] = list(campaign.audience.list_ or [])
        self.batch = campaign.throttle.batch_size
        self.claim_size = min(self.batch, 200)
        if workers is None:
            # enough messages in flight to fill every provider's slots with full batches
            wanted = sum(p.concurrency * _provider_batch(p) for p in campaign.providers)
            workers = max(64, min(wanted, 2000))
        self.workers = workers
        self.max_inflight = workers + self.claim_size
        self.lot = 1  # messages handed to the router together (set when sending starts)
        self.lot_workers = workers
        pace = _paced_rate(campaign)
        if pace is not None:
            # rows turn `sending` when claimed, before they wait for a rate token: claim
            # about two seconds of sending ahead, so a kill leaves few rows in doubt
            self.max_inflight = min(self.max_inflight, max(8, math.ceil(pace * 2)))
            self.claim_size = min(self.claim_size, self.max_inflight)
        # run state
        self._stop_reason: str | None = None  # why claiming stopped early
        self._aborted = False
        self._paused_reason: str | None = None
        self._all_down = False
        self._quota_out = False  # when _all_down was set, every provider was out of quota
        self._claimed = 0
        self._stop = asyncio.Event()
        self._outcomes: list[tuple[ledger.Outcome, bool]] = []  # (outcome, was claimed)
        self._to_suppress: list[suppressions.Suppression] = []
        self._inflight = 0
        self._room = asyncio.Event()  # set whenever in-flight rows are released
        self._in_router: dict[int, _Item] = {}
        self._waiting_retry: dict[int, tuple[_Item, Result, str | None]] = {}
        self._down_waiting = 0  # retries waiting because no provider took the message
        self._tasks: set[asyncio.Task[None]] = set()
        self.run_counts: dict[str, int] = dict.fromkeys(ledger.STATES, 0)
        self.per_provider: dict[str, dict[str, int]] = {}
        self._done = 0
        self._total = 0
        self._campaign_id = 0
        self._router: RouterLike | None = None  # set while the pipeline runs
        self._pool: RenderPool | None = None
        self._planning: asyncio.Task[PlanResult] | None = None  # the rest of planning
        self._planning_done = True  # no more rows can turn up pending in this run
        self._planned_more = asyncio.Event()  # set after each planned chunk
        self._planning_raised = False  # a planning failure ended the pipeline
        self._store_error: StampError | None = None  # the ledger could not be written
        self.render_workers = render_workers

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Stop claiming; finish and record what is in flight (first Ctrl-C)."""
        if self._stop_reason is None:
            self._stop_reason = "stopped"
            self._emit(Notice("warning", "stopping: finishing the messages in flight"))
        self._stop.set()

    def abort(self) -> None:
        """Stop now: in-flight rows become ``unknown`` (second Ctrl-C)."""
        if self._aborted:
            return
        self._aborted = True
        self._stop_reason = self._stop_reason or "interrupted"
        self._stop.set()
        self._room.set()
        for task in list(self._tasks):
            task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ run

    async def run(self) -> RunSummary:
        started = time.monotonic()
        store = self.store
        require_unsubscribe(self.campaign)
        if self.campaign.suppress_pull and not self.dry_run:
            # before the lock: a long pull must not starve the lock's heartbeat
            self._pull_suppressions()
        row = campaigns.ensure(store, self.name)
        self._campaign_id = row.id
        owner = locks.new_owner()
        taken = locks.acquire(
            store, row.id, owner, campaign_name=self.name, stale_after=self.stale_after
        )
        if taken is not None:
            why = locks.stale_reason(taken, at=now(), stale_after=self.stale_after) or "stale"
            self._emit(Notice("warning", f"took over the lock of {taken.owner} ({why})"))
        heart = asyncio.create_task(self._heartbeat(owner))
        run_id = campaigns.start_run(store, row.id)
        summary: RunSummary | None = None
        refused: StampError | None = None  # paused, content changed, bad template, store
        try:
            with store.checkpoints_in_background(), collect_rarely():
                summary = await self._run_locked(row, started)
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
                code, record = int(summary.exit_code), summary.as_dict()
            elif refused is not None:
                code = int(refused.exit_code)
                record = {"reason": "refused", "error": _clean(str(refused))}
            campaigns.finish_run(store, run_id, code, record)
            locks.release(store, row.id, owner)

    async def _run_locked(self, row: campaigns.CampaignRow, started: float) -> RunSummary:
        store = self.store
        if self.unpause and campaigns.unpause(store, row.id):
            self._emit(Notice("info", "pause cleared; sending resumes"))
        row = campaigns.get(store, self.name) or row
        campaigns.check_not_paused(row)
        renderer = self._renderer_arg or _default_renderer(self.campaign)
        if campaigns.check_content(
            store, row, renderer.content_hash, allow_changed=self.allow_changed
        ):
            self._emit(
                Notice("warning", "the message changed since sending started (--allow-changed)")
            )
        unknown_found = ledger.mark_stale_sending(store, row.id)
        if not self.unpause:  # after --unpause a person decided to go on: count afresh
            self.autostop.seed(*ledger.answer_stats(store, row.id))
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
        steps = plan_steps(
            self.campaign, store, row.id, name=self.name, contacts=self._contacts,
            on_event=self._emit,
        )  # fmt: skip
        # Plan until the first rows are in; a big audience plans the rest while sending
        # (planning 100k rows takes ~2.5 s of the one core the send loop also uses: the
        # render workers would idle through it).
        planned: PlanResult | None = None
        added = 0
        try:
            while added < PLAN_AHEAD:
                added = next(steps)
        except StopIteration as done:
            planned = done.value
        _, expired = ledger.requeue_due(
            store, row.id, at=now(), expire_after=self.campaign.throttle.expire_after
        )
        if expired:
            self._emit(Notice("warning", f"{expired} deferred recipients expired and failed"))
        counts = ledger.counts(store, row.id)
        pending = counts[ledger.PENDING]
        self._total = pending if self.cap is None else min(pending, self.cap)
        labels = [p.label for p in self.campaign.providers]
        if self._adapters is not None:
            labels = [a.name for a in self._adapters]
        router = self._router_arg or _default_router(
            self.campaign, store, self._adapters, self._emit
        )
        if planned is None:
            self._planning_done = False
            self._planning = asyncio.create_task(
                self._plan_rest(steps, added, pending, labels, row.id)
            )
        else:
            self._emit(
                RunStarted(self.name, sum(counts.values()), self._total, labels, self.dry_run)
            )
        try:
            if self._total:
                async with router:
                    await self._pipeline(renderer, router)
        finally:
            if self._planning is not None:
                planned = await self._end_planning(self._planning)
        if self._store_error is not None:
            raise self._store_error
        provider_states = [provider_state_dict(s) for s in router.states()]
        return self._summary(started, planned, unknown_found, router, provider_states)

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

    async def _heartbeat(self, owner: str) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            try:
                ours = locks.heartbeat(self.store, self._campaign_id, owner)
            except StampError as exc:
                self._emit(Notice("error", f"cannot refresh the lock: {exc}"))
                continue
            if not ours:
                self._emit(Notice("error", "another run took over this campaign's lock"))
                self._stop_reason = self._stop_reason or "lock_lost"
                self._stop.set()
                return

    # ------------------------------------------------------------------ planning

    async def _plan_rest(
        self,
        steps: Generator[int, None, PlanResult],
        added: int,
        pending: int,
        labels: list[str],
        campaign_id: int,
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
                self._total = pending if self.cap is None else min(pending, self.cap)
                self._planned_more.set()
                # planning at full tilt left the render workers idle (the loop feeds
                # them): 100k recipients sent 3,200 in the 5 s it took; at half the
                # loop's time, 14,000 in those 5 s, and the whole send was ~1 s shorter
                await asyncio.sleep((time.perf_counter() - began) * (1 - PLAN_SHARE) / PLAN_SHARE)
        finally:
            steps.close()
            self._planning_done = True
            self._planned_more.set()
            # "start" follows "planned" as when planning ends before sending starts
            with contextlib.suppress(StampError):
                total = sum(ledger.counts(self.store, campaign_id).values())
                self._emit(RunStarted(self.name, total, self._total, labels, self.dry_run))

    async def _end_planning(self, task: asyncio.Task[PlanResult]) -> PlanResult | None:
        """Planning's result, or None when the run ended before planning did.

        The pipeline ends before planning only when the run stops early (Ctrl-C,
        --limit, every provider down, a failure): the rest is left to the next run,
        which reads the audience again and adds whoever is missing.
        """
        if not task.done():
            task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled():
                return None
            raise
        except Exception:
            if self._planning_raised:
                return None  # the pipeline raised it already
            raise

    async def _more_rows(self) -> bool:
        """Wait while planning may still add pending rows; False once it cannot."""
        if self._planning_done:
            return False
        await self._planned_more.wait()
        return True

    def _check_planning(self) -> None:
        """A failure while planning the rest ends the run like a render failure does."""
        task = self._planning
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._planning_raised = True
                raise exc

    # ------------------------------------------------------------------ pipeline

    async def _pipeline(self, renderer: RendererLike, router: RouterLike) -> None:
        self._router = router
        raw = getattr(router, "needs_raw", True)
        processes = (
            default_workers(self._total, raw=raw)
            if self.render_workers is None
            else self.render_workers
        )
        if not raw and _poolable(renderer):  # no provider sends MIME bytes: skip making them
            renderer.raw = False  # type: ignore[attr-defined]
        if processes and _poolable(self._renderer_arg):  # a custom renderer is used as it is
            self._pool = await RenderPool.start(self.campaign, processes, raw=raw)
        # Messages move in lots: a lot is rendered, claimed and handed to the router
        # together, so a batching provider's messages cost one task step and one queue
        # hand-over a lot, not one each. One-message-per-call providers get lots of one.
        self.lot = max(1, min(self.claim_size, getattr(router, "max_batch", 1)))
        self.lot_workers = math.ceil(self.workers / self.lot)  # still `workers` messages at most
        # rendered messages (~25 KB each) read ahead of claiming: enough to keep the
        # claimer fed, few enough that memory stays small (two pool chunks)
        rendered: asyncio.Queue[list[_Item] | None] = asyncio.Queue(maxsize=2)
        send_q: asyncio.Queue[list[_Item] | None] = asyncio.Queue()
        stages = [
            asyncio.create_task(self._read_and_render(renderer, rendered)),
            asyncio.create_task(self._claim(rendered, send_q)),
            asyncio.create_task(self._flusher()),
            asyncio.create_task(self._progress()),
        ]
        workers = [
            asyncio.create_task(self._worker(send_q, router)) for _ in range(self.lot_workers)
        ]
        self._tasks.update(workers)
        try:
            try:
                await stages[1]  # claiming ends: audience done, cap reached, or stop
            except StampError as exc:  # the store failed while claiming: stop like _flush
                self._store_error = self._store_error or exc
                self.abort()
            for _ in workers:
                send_q.put_nowait(None)
            await asyncio.gather(*workers, return_exceptions=True)
            while waiting := [t for t in self._tasks if not t.done() and t not in workers]:
                await asyncio.gather(*waiting, return_exceptions=True)  # retries in backoff
        finally:
            for task in stages:
                task.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
            self._settle_abandoned(send_q)
            self._flush()
            self._emit_progress(0.0)
            if self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.aclose()
        failed = stages[0]
        if not failed.cancelled() and failed.exception() is not None:
            # a template that cannot render for anyone (e.g. a sandbox violation):
            # what was sent is recorded; the rest stays pending
            raise failed.exception()  # type: ignore[misc]

    async def _read_and_render(
        self, renderer: RendererLike, out: asyncio.Queue[list[_Item] | None]
    ) -> None:
        try:
            if self._pool is not None:
                await self._read_and_render_pooled(self._pool, out)
            else:
                await self._read_and_render_here(renderer, out)
        finally:
            # the claimer waits for this end mark even when rendering failed; once this
            # task is cancelled (the claimer is done: --limit, stop) nobody reads the
            # queue any more, and waiting for room in it would hang the run
            task = asyncio.current_task()
            try:
                out.put_nowait(None)
            except asyncio.QueueFull:
                if task is None or not task.cancelling():
                    await out.put(None)

    async def _read_and_render_pooled(
        self, pool: RenderPool, out: asyncio.Queue[list[_Item] | None]
    ) -> None:
        """Render chunks in worker processes, a few chunks ahead of the send loop."""
        ahead: deque[tuple[list[ledger.PendingRow], asyncio.Task[list[Rendered]]]] = deque()
        after = 0
        exhausted = False
        try:
            while not self._stop.is_set():
                while not exhausted and len(ahead) < 2 * pool.workers + 1:
                    self._planned_more.clear()
                    rows = ledger.read_pending(
                        self.store, self._campaign_id, after_id=after, limit=POOL_CHUNK
                    )
                    if not rows:
                        self._check_planning()
                        if ahead or not await self._more_rows():
                            exhausted = not ahead and self._planning_done
                            break
                        continue
                    after = rows[-1].id
                    chunk = [(r.key, r.email, r.fields) for r in rows]
                    ahead.append((rows, asyncio.ensure_future(pool.render(chunk))))
                if not ahead:
                    break
                rows, done = ahead.popleft()
                lot = self._lot(zip(rows, await done, strict=True))
                if lot and not self._stop.is_set():
                    await out.put(lot)
        finally:
            for _, pending in ahead:
                pending.cancel()

    def _lot(self, rendered: Iterable[tuple[ledger.PendingRow, Message | str]]) -> list[_Item]:
        """The rendered messages as a lot; recipients who cannot get one fail, with why."""
        lot: list[_Item] = []
        for row, message in rendered:
            if isinstance(message, str):
                self._add_outcome(
                    ledger.Outcome(row.id, ledger.FAILED, last_error=_clean(message)),
                    claimed=False,
                )
            else:
                lot.append(_Item(row, message))
        return lot

    async def _read_and_render_here(
        self, renderer: RendererLike, out: asyncio.Queue[list[_Item] | None]
    ) -> None:
        after = 0
        while not self._stop.is_set():
            self._planned_more.clear()
            rows = ledger.read_pending(
                self.store, self._campaign_id, after_id=after, limit=self.batch
            )
            if not rows:
                self._check_planning()
                if await self._more_rows():
                    continue
                break
            after = rows[-1].id
            for start in range(0, len(rows), RENDER_YIELD):
                if self._stop.is_set():
                    break
                done: list[tuple[ledger.PendingRow, Message | str]] = []
                for row in rows[start : start + RENDER_YIELD]:
                    try:
                        done.append((row, renderer.render(row.key, row.email, row.field_dict())))
                    except RecipientError as exc:
                        done.append((row, str(exc)))
                lot = self._lot(done)
                if lot:
                    await out.put(lot)
                await asyncio.sleep(0)  # sending must not starve while rendering here

    async def _claim(
        self, src: asyncio.Queue[list[_Item] | None], dst: asyncio.Queue[list[_Item] | None]
    ) -> None:
        low_water = self.lot_workers  # lots waiting for a worker
        waiting: deque[_Item] = deque()  # rendered, not yet claimed
        ended = False
        while not self._stop.is_set():
            if not waiting:
                first = None if ended else await src.get()
                if first is None:
                    return
                waiting.extend(first)
            while len(waiting) < self.claim_size and not ended:
                try:
                    lot = src.get_nowait()
                except asyncio.QueueEmpty:
                    if dst.qsize() < low_water:
                        break  # workers are hungry: send what we have
                    try:
                        lot = await asyncio.wait_for(src.get(), 0.01)
                    except TimeoutError:
                        break
                if lot is None:
                    ended = True
                    break
                waiting.extend(lot)
            batch = [waiting.popleft() for _ in range(min(len(waiting), self.claim_size))]
            if self.cap is not None:
                room = self.cap - self._claimed
                if room <= 0:
                    self._stop_reason = self._stop_reason or "limit"
                    return
                batch = batch[:room]
            # wait for room, and while messages wait out a moment with no provider
            # (claiming more would only churn rows through the same failure)
            while (
                self._inflight + len(batch) > self.max_inflight or self._down_waiting
            ) and not self._stop.is_set():
                if self._outcomes:
                    self._flush()  # answers are waiting: record them now to make room
                    continue
                self._room.clear()
                await self._room.wait()
            if self._stop.is_set() or self._all_down or self._paused_reason:
                return
            keys = [it.row.key for it in batch]
            blocked = suppressions.suppressed(self.store, keys, self.scopes)
            go = [it for it in batch if it.row.key not in blocked]
            gone = [
                (it.row.id, "on the suppression list (added after planning)")
                for it in batch
                if it.row.key in blocked
            ]
            claims = [ledger.Claim(it.row.id, it.message.message_id) for it in go]
            ledger.claim(self.store, claims, gone)
            self._count(ledger.SUPPRESSED, len(gone))
            self._done += len(gone)
            self._claimed += len(go)
            self._inflight += len(go)
            for i in range(0, len(go), self.lot):
                dst.put_nowait(go[i : i + self.lot])
            if self.cap is not None and self._claimed >= self.cap:
                self._stop_reason = self._stop_reason or "limit"
                return

    async def _worker(self, src: asyncio.Queue[list[_Item] | None], router: RouterLike) -> None:
        while True:
            lot = await src.get()
            if lot is None:
                return
            if self._stop.is_set():
                # claimed but never handed over: certainly not sent
                for item in lot:
                    self._add_outcome(
                        ledger.Outcome(item.row.id, ledger.PENDING, extra_attempts=-1)
                    )
                continue
            await self._deliver(lot, router)

    async def _deliver(self, lot: list[_Item], router: RouterLike) -> None:
        in_router = self._in_router
        for item in lot:
            in_router[item.row.id] = item  # an abort cancels us here: settled as unknown
        if len(lot) == 1:
            deliveries: Sequence[DeliveryLike] = [await router.send(lot[0].message)]
        else:
            deliveries = await router.send_many([item.message for item in lot])
        for item, delivery in zip(lot, deliveries, strict=True):
            del in_router[item.row.id]
            self._settle(item, delivery, router)

    def _settle(self, item: _Item, delivery: DeliveryLike, router: RouterLike) -> None:
        """What one answer means for the recipient's row: recorded, retried or deferred."""
        item.tries += 1
        result = delivery.result
        label = delivery.provider
        reason = self.autostop.observe(result)
        if reason is not None and self._paused_reason is None:
            self._paused_reason = reason
            campaigns.pause(self.store, self._campaign_id, reason)
            self._emit(Notice("error", f"campaign paused: {reason}"))
            self._stop.set()
        extra = item.tries - 1
        detail = _clean(result.detail) or result.outcome.value
        outcome = result.outcome
        if outcome is Outcome.ACCEPTED:
            self._finish(item, ledger.SENT, label, extra, provider_id=result.message_id)
        elif outcome is Outcome.RECIPIENT_REJECTED:
            self._finish(item, ledger.FAILED, label, extra, error=detail)
            if result.suppress and label:
                self._to_suppress.append(
                    suppressions.Suppression(item.row.key, result.suppress, label, detail=detail)
                )
        elif outcome is Outcome.UNKNOWN:
            self._finish(item, ledger.UNKNOWN, label, extra, error=detail)
        else:
            down = outcome in (Outcome.PROVIDER_DOWN, Outcome.PROVIDER_REFUSED)
            if down and router.all_down and not self._all_down:
                self._set_all_down()
                self._emit(Notice("error", "every provider is down; no more messages are sent"))
                self._stop.set()
            if item.tries <= self.campaign.throttle.retries and not self._stop.is_set():
                self._retry_later(item, router, result, label)
            else:
                self._give_up(item, result, label)

    def _give_up(self, item: _Item, result: Result, label: str | None) -> None:
        """No more tries this run for a transient failure."""
        detail = _clean(result.detail) or result.outcome.value
        if result.outcome in (Outcome.PROVIDER_DOWN, Outcome.PROVIDER_REFUSED):
            # certainly not accepted, and not the recipient's fault: due again next run
            self._finish(item, ledger.PENDING, None, item.tries - 1, error=detail)
            if not self._all_down and not self._stop.is_set():
                self._set_all_down()
                self._emit(Notice("error", f"no provider takes messages: {detail}"))
                self._stop.set()
        else:
            self._defer(item, label, detail)

    def _set_all_down(self) -> None:
        """No provider takes messages; note now whether that is quotas (exit 3, not 4).

        The router's states at the end of the run may no longer say so: another run
        using the same provider may have given its unused quota permits back since.
        """
        self._all_down = True
        if self._router is not None:
            states = [getattr(s, "state", None) for s in self._router.states()]
            self._quota_out = bool(states) and all(s == "quota_used" for s in states)

    def _backoff(self, tries: int, retry_after: float | None) -> float:
        base = self.campaign.throttle.backoff * (2.0 ** (tries - 1))
        delay = base * random.uniform(0.5, 1.5)  # jitter: retries of a batch spread out
        return max(delay, retry_after or 0.0)

    def _retry_later(
        self,
        item: _Item,
        router: RouterLike,
        result: Result,
        label: str | None,
    ) -> None:
        delay = self._backoff(item.tries, result.retry_after)
        self._waiting_retry[item.row.id] = (item, result, label)
        down = result.outcome in (Outcome.PROVIDER_DOWN, Outcome.PROVIDER_REFUSED)
        self._down_waiting += down

        async def later() -> None:
            # an abort cancels this wait; the row stays in _waiting_retry and is settled
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            del self._waiting_retry[item.row.id]
            self._down_waiting -= down
            self._room.set()
            if self._stop.is_set():
                self._give_up(item, result, label)
                return
            await self._deliver([item], router)

        task = asyncio.create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _defer(self, item: _Item, label: str | None, detail: str) -> None:
        first = item.row.first_attempt_at or now()
        expire_after = self.campaign.throttle.expire_after
        if now() - first >= expire_after:
            self._finish(item, ledger.FAILED, label, item.tries - 1, error=f"expired: {detail}")
            return
        due = now() + max(self._backoff(item.tries + 1, None), 60.0)
        self._add_outcome(
            ledger.Outcome(
                item.row.id,
                ledger.DEFERRED,
                provider=label,
                last_error=detail,
                next_attempt_at=due,
                extra_attempts=max(item.tries - 1, 0),
            )
        )
        self._tally(label, ledger.DEFERRED)

    def _finish(
        self,
        item: _Item,
        state: str,
        label: str | None,
        extra: int,
        *,
        provider_id: str | None = None,
        error: str | None = None,
    ) -> None:
        self._add_outcome(
            ledger.Outcome(
                item.row.id,
                state,
                provider=label,
                provider_message_id=provider_id,
                last_error=error,
                extra_attempts=extra,
            )
        )
        self._tally(label, state)

    def _tally(self, label: str | None, state: str) -> None:
        if label is not None:
            per = self.per_provider.setdefault(label, {})
            per[state] = per.get(state, 0) + 1

    # ------------------------------------------------------------------ recording

    def _count(self, state: str, n: int = 1) -> None:
        self.run_counts[state] = self.run_counts.get(state, 0) + n

    def _add_outcome(self, outcome: ledger.Outcome, *, claimed: bool = True) -> None:
        self._outcomes.append((outcome, claimed))
        if outcome.state != ledger.PENDING:
            self._count(outcome.state)
            self._done += 1
        if len(self._outcomes) >= RECORD_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._outcomes:
            return
        batch, self._outcomes = self._outcomes, []
        try:
            ledger.record(self.store, [o for o, _ in batch])
            if self._to_suppress:
                items, self._to_suppress = self._to_suppress, []
                suppressions.add_many(self.store, items)
        except StampError as exc:
            # the store cannot be written (disk full, read-only): stop at once and raise
            # it at the end of the run; these rows stay `sending` in the store, so the
            # next run calls them `unknown`, as after a crash
            if self._store_error is None:
                self._store_error = exc
                self._emit(Notice("error", f"stopping: {exc}"))
            self.abort()
            return
        released = sum(1 for _, claimed in batch if claimed)
        if released:
            self._inflight -= released
            self._room.set()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self._flush()
            if self._stop.is_set():
                self._room.set()  # the claimer may wait for room it no longer needs

    def _settle_abandoned(self, send_q: asyncio.Queue[list[_Item] | None]) -> None:
        """After an abort: rows inside the router -> unknown, queued or waiting -> not sent."""
        for item in list(self._in_router.values()):
            self._finish(
                item,
                ledger.UNKNOWN,
                None,
                item.tries,
                error="stopped hard while the message was being handed to the provider",
            )
        self._in_router.clear()
        for item, result, label in list(self._waiting_retry.values()):
            self._give_up(item, result, label)
        self._waiting_retry.clear()
        while not send_q.empty():
            for queued in send_q.get_nowait() or ():
                self._add_outcome(ledger.Outcome(queued.row.id, ledger.PENDING, extra_attempts=-1))

    # ------------------------------------------------------------------ reporting

    async def _progress(self) -> None:
        last_done, last_t, rate = 0, time.monotonic(), 0.0
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            t = time.monotonic()
            inst = (self._done - last_done) / max(t - last_t, 1e-6)
            rate = inst if rate == 0.0 else 0.7 * rate + 0.3 * inst
            last_done, last_t = self._done, t
            self._emit_progress(rate)

    def _provider_counts(self) -> dict[str, dict[str, int]]:
        """Ledger tallies per provider, with the router's failovers and throttles added."""
        merged = {k: dict(v) for k, v in self.per_provider.items()}
        if self._router is not None:
            for status in self._router.states():
                per = merged.setdefault(str(status.name), {})
                for key in ("failovers", "throttled"):
                    value = int(getattr(status, key, 0) or 0)
                    if value:
                        per[key] = value
        return merged

    def _emit_progress(self, rate: float) -> None:
        self._emit(
            Progress(
                self._done,
                self._total,
                {k: v for k, v in self.run_counts.items() if v},
                self._provider_counts(),
                round(rate, 1),
            )
        )

    def _summary(
        self,
        started: float,
        planned: PlanResult | None,
        unknown_found: int,
        router: RouterLike,
        provider_states: list[dict[str, Any]],
    ) -> RunSummary:
        counts = ledger.counts(self.store, self._campaign_id)
        left = counts[ledger.PENDING] + counts[ledger.DEFERRED] + counts[ledger.SENDING]
        quota_out = self._quota_out or (
            bool(provider_states) and all(s.get("state") == "quota_used" for s in provider_states)
        )
        code, reason = ExitCode.OK, "complete"
        if self._aborted:
            code, reason = ExitCode.INTERRUPTED, "interrupted"
        elif self._paused_reason is not None:
            code, reason = ExitCode.PAUSED, "paused"
        elif self._all_down and left and quota_out:
            code, reason = ExitCode.RESUMABLE, "quota"
        elif self._all_down and left:
            code, reason = ExitCode.ALL_PROVIDERS_DOWN, "all_down"
        elif left:
            code = ExitCode.RESUMABLE
            reason = self._stop_reason or ("quota" if quota_out else "deferred")
            if reason == "lock_lost":
                reason = "stopped"
        elif counts[ledger.FAILED] or counts[ledger.UNKNOWN]:
            code, reason = ExitCode.PERMANENT_FAILURES, "failures"
        summary = RunSummary(
            campaign=self.name,
            exit_code=code,
            reason=reason,
            counts=counts,
            run_counts={k: v for k, v in self.run_counts.items() if v},
            per_provider=self._provider_counts(),
            elapsed=time.monotonic() - started,
            planned=planned,
            unknown_found=unknown_found,
            paused_reason=self._paused_reason,
            providers=provider_states,
        )
        self._emit(
            RunFinished(
                self.name,
                int(code),
                reason,
                counts,
                summary.run_counts,
                round(summary.elapsed, 3),
                summary.per_provider,
            )
        )
        return summary


def _provider_batch(provider: ProviderConfig) -> int:
    """Messages one adapter call of ``provider`` carries (its ``batch_size``, capped)."""
    from stampcli.providers import adapter_class

    return adapter_class(provider.scheme).batch_for(provider)


def _paced_rate(campaign: Campaign) -> float | None:
    """Messages per second the campaign can go at most, when its rates say so."""
    if campaign.throttle.rate is not None:
        return campaign.throttle.rate.per_second
    rates = [p.rate for p in campaign.providers]
    if any(r is None for r in rates):
        return None
    return sum(r.per_second for r in rates if r is not None)


def _clean(text: str) -> str:
    """Provider or render text fit for the ledger: secrets out, one line, bounded."""
    return redact.redact(" ".join(text.split()))[:500]


def _poolable(renderer: RendererLike | None) -> bool:
    """The pool's workers build a ``Renderer`` of the same campaign: the CLI's own
    ``Renderer`` (built early to surface template errors) renders the same there."""
    from stampcli.render.renderer import Renderer

    return renderer is None or type(renderer) is Renderer


def _default_renderer(campaign: Campaign) -> RendererLike:
    from stampcli.render.renderer import Renderer

    return Renderer(campaign)


def _default_router(
    campaign: Campaign,
    store: Store,
    adapters: Sequence[Adapter] | None,
    on_event: EventSink,
) -> RouterLike:
    from stampcli.delivery.router import Router

    def forward(event: Event) -> None:
        on_event(event)

    return Router(campaign, store, adapters=adapters, on_event=forward)
