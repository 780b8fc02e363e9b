"""The send loop: pending rows in, messages out, every fate handed to the recorder.

One pass of the loop for one campaign (the run around it, lock to summary, is
``stampcli.delivery.run``)::

    [read pending rows -> render] -> queue -> [claim a batch: pending -> sending,
    commit] -> workers -> router.send -> settle (a decision) -> recorder
    (batched commits) -> events

Memory stays flat whatever the audience size: rows are read a batch at a
time, the rendered queue is bounded, and at most ``max_inflight`` rows are
claimed and not yet recorded. Claiming happens just before messages leave
(rows read and rendered ahead are still ``pending``), so a crash leaves only
the few hundred truly in-flight rows ``sending``; the next run calls those
``unknown``. After an abort, rows inside the router are recorded ``unknown``
and rows claimed but not handed over go back to ``pending``.

Small sends render in the event loop (the reader yields to the loop every few
renders so sending never starves); from 2,000 recipients on, rendering moves
to worker processes (``stampcli.render.pool``) so both cores work.

The parts: :mod:`~stampcli.delivery.settle` decides what an answer means,
:mod:`~stampcli.delivery.recorder` is the loop's one way to the store, and
:mod:`~stampcli.delivery.plan_ahead` feeds rows planned while sending.

Why this module is over 500 lines: the stages (reader, claimer, workers,
retries waiting out their backoff, the abandoned-row sweep) share the stop
event and the recorder's in-flight window, and their order of events is the
crash-safety argument (claim committed before send; after an abort nothing is
left claimed and unrecorded but what was inside the router). Kept in one place
so that argument can be read in one place; the policy (settle), the store
(recorder) and the run around it (run) are out.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from stampcli.compliance.autostop import AutoStop
from stampcli.compliance.verp import campaign_verp
from stampcli.config import Campaign, ProviderConfig
from stampcli.delivery.plan_ahead import PlanFeed
from stampcli.delivery.recorder import Item, Recorder
from stampcli.delivery.run_events import EventSink, Notice, Progress
from stampcli.delivery.settle import DOWN, Record, RetryPolicy, clean, give_up, settle
from stampcli.errors import RecipientError, StampError
from stampcli.providers.base import Result
from stampcli.render.message import Message
from stampcli.render.pool import (
    POOL_CHUNK,
    Rendered,
    RenderPool,
    RenderWorkerError,
    default_workers,
    most_workers,
)
from stampcli.store import ledger
from stampcli.store.protocols import Store

if TYPE_CHECKING:
    from stampcli.render.renderer import Renderer

PROGRESS_EVERY = 0.25  # seconds between Progress events
# chunks in a row the claimer had nothing rendered and the oldest render was not done:
# the send waits for rendering, and one more render process pays (when rows remain).
# Counted after the first WARM_CHUNKS (the workers start cold). A send-bound run has
# streaks of ~20 now and then (the machine's other work slows a worker for a moment);
# a render-bound one has no other chunk.
GROW_AFTER = 32
WARM_CHUNKS = 10
GROW_ROWS = 5_000  # rows left to render, at least, for a render process to pay its start
RENDER_YIELD = 32  # renders between yields to the event loop
CLAIM_AHEAD = 0.1  # seconds of a paced campaign's rate claimed ahead of sending
# seconds of a paced campaign's rate that may wait claimed (`sending`) for a rate token or
# a connection; the rows behind them wait `pending` in the store
TOKEN_AHEAD = 0.03
TOKEN_POLL = 0.002  # seconds between looks at the rows waiting for a token


class DeliveryLike(Protocol):
    """What ``Router.send`` returns for one message."""

    @property
    def result(self) -> Result: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...


class ProviderStateLike(Protocol):
    """One provider's state as ``Router.states()`` gives it.

    Routers that count them also give ``failovers`` and ``throttled`` (and the
    rest of ``stampcli.delivery.router.ProviderStatus``); they are read when present.
    """

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...  # closed | open | half_open | refused | quota_used


class RouterLike(Protocol):
    """The router as the loop uses it (``stampcli.delivery.router.Router``)."""

    @property
    def all_down(self) -> bool: ...
    @property
    def max_batch(self) -> int: ...  # most messages one send_many call should carry
    @property
    def rate_waiting(self) -> int: ...  # messages handed over, not yet on the wire
    @property
    def needs_raw(self) -> bool: ...  # some provider sends the MIME bytes
    async def send(self, message: Message) -> DeliveryLike: ...
    async def send_many(self, messages: Sequence[Message]) -> Sequence[DeliveryLike]: ...
    def states(self) -> Sequence[ProviderStateLike]: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


class GateLike(Protocol):
    """What holds rows back for later (``stampcli.schedule.gate.Gate``): asked when a
    row is read (not due: not rendered) and again just before it is claimed."""

    def admit(self, row: ledger.PendingRow) -> bool: ...
    def still_due(self, row: ledger.PendingRow) -> bool: ...


class RendererLike(Protocol):
    """A renderer as the loop uses it (``stampcli.render.renderer.Renderer`` or a custom one).

    The loop treats stamp's own ``Renderer`` specially (see :func:`_poolable`): it
    renders in the pool, and stops making MIME bytes when no provider sends them.
    """

    @property
    def content_hash(self) -> str: ...
    def render(self, key: str, email: str, fields: dict[str, Any]) -> Message: ...


@dataclass(frozen=True, slots=True)
class Sizing:
    """How much of a campaign the loop holds at once."""

    cap: int | None  # messages this run claims at most (--limit, max_messages)
    batch: int  # rows read from the ledger at a time
    claim_size: int  # rows claimed (one commit) at a time at most
    workers: int  # messages with the router at once at most
    max_inflight: int  # rows claimed and not yet recorded at most
    token_ahead: int | None = None  # paced: claimed rows not yet on the wire at most

    @classmethod
    def of(cls, campaign: Campaign, limit: int | None, workers: int | None) -> Sizing:
        caps = [c for c in (limit, campaign.throttle.max_messages) if c is not None]
        batch = campaign.throttle.batch_size
        claim_size = min(batch, 200)
        if workers is None:
            # enough messages in flight to fill every provider's slots with full batches
            wanted = sum(p.concurrency * _provider_batch(p) for p in campaign.providers)
            workers = max(64, min(wanted, 2000))
        max_inflight = workers + claim_size
        token_ahead: int | None = None
        pace = _paced_rate(campaign)
        if pace is not None:
            # claim only a tenth of a second of sending ahead, plus what the connections
            # hold, so a kill leaves no more in doubt than was on the wire; and of those,
            # at most ``token_ahead`` wait claimed for a rate token or a connection (the
            # rows behind stay `pending`: SendLoop._token_room). The claimer refills the
            # wait as rows leave, in milliseconds, so the pipe stays full.
            connections = sum(p.concurrency for p in campaign.providers)
            max_inflight = min(max_inflight, max(8, math.ceil(pace * CLAIM_AHEAD) + connections))
            claim_size = min(claim_size, max_inflight)
            token_ahead = max(connections, math.ceil(pace * TOKEN_AHEAD))
        cap = min(caps) if caps else None
        return cls(cap, batch, claim_size, workers, max_inflight, token_ahead)


class SendLoop:
    """Sends the pending rows of one campaign once: create, then ``await send()`` once.

    ``request_stop`` and ``abort`` may come at any time (signals, the run's heartbeat);
    after ``send`` returns, the ``stop_reason``, ``aborted``, ``paused_reason``,
    ``all_down``, ``quota_out`` and ``store_error`` fields say how it ended.
    """

    def __init__(
        self,
        campaign: Campaign,
        store: Store,
        sizing: Sizing,
        *,
        on_event: EventSink,
        render_workers: int | None = None,
    ) -> None:
        self.campaign = campaign
        self.sizing = sizing
        self.render_workers = render_workers
        self._emit = on_event
        self.policy = RetryPolicy.of(campaign)
        self.autostop = AutoStop(campaign.auto_stop)  # seeded from the ledger at run start
        self.scopes: list[str] = list(campaign.audience.list_ or [])
        self.recorder = Recorder(store, self._store_failed)
        self._verp = campaign_verp(campaign)  # None: envelope sender is the From address
        self.lot = 1  # messages handed to the router together (set when sending starts)
        self.lot_workers = sizing.workers
        # how the loop ended
        self.stop_reason: str | None = None  # why claiming stopped early
        self.aborted = False
        self.paused_reason: str | None = None
        self.all_down = False
        self.quota_out = False  # when all_down was set, every provider was out of quota
        self.store_error: StampError | None = None  # the ledger could not be written
        # loop state
        self._stop = asyncio.Event()
        self._in_router: dict[int, Item] = {}
        self._queued = 0  # claimed rows in lots no worker has taken yet
        self._waiting_retry: dict[int, tuple[Item, Result, str | None]] = {}
        self._down_waiting = 0  # retries waiting because no provider took the message
        self._tasks: set[asyncio.Task[None]] = set()
        self._router: RouterLike | None = None  # set while the pipeline runs
        self._pool: RenderPool | None = None
        self._feed = PlanFeed(0, sizing.cap)  # the run's, once send() starts
        # schedules, windows, A/B: rows not due now are skipped (None: every row is due)
        self.gate: GateLike | None = None

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Stop claiming; finish and record what is in flight (first Ctrl-C)."""
        if self.stop_reason is None:
            self.stop_reason = "stopped"
            self._emit(Notice("warning", "stopping: finishing the messages in flight"))
        self._stop.set()

    def halt(self, reason: str) -> None:
        """Stop claiming for ``reason`` (e.g. the run lost its lock), quietly."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    def abort(self) -> None:
        """Stop now: in-flight rows become ``unknown`` (second Ctrl-C)."""
        if self.aborted:
            return
        self.aborted = True
        self.stop_reason = self.stop_reason or "interrupted"
        self._stop.set()
        self.recorder.room.set()
        for task in list(self._tasks):
            task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _store_failed(self, exc: StampError) -> None:
        """The store cannot be written (disk full, read-only): stop at once.

        The run raises ``store_error`` at its end.
        """
        if self.store_error is None:
            self.store_error = exc
            self._emit(Notice("error", f"stopping: {exc}"))
        self.abort()

    # ------------------------------------------------------------------ pipeline

    async def send(
        self, campaign_id: int, renderer: RendererLike, router: RouterLike, feed: PlanFeed
    ) -> None:
        """Send what is pending (and what ``feed`` adds) through ``router``, once."""
        self.recorder.campaign_id = campaign_id
        self._feed = feed
        async with router:
            await self._pipeline(renderer, router)

    async def _pipeline(self, renderer: RendererLike, router: RouterLike) -> None:
        self._router = router
        raw = router.needs_raw
        processes = (
            default_workers(self._feed.total, raw=raw)
            if self.render_workers is None
            else self.render_workers
        )
        if not raw and _is_stamp_renderer(renderer):  # no provider sends MIME: skip making it
            renderer.raw = False
        if processes and _is_stamp_renderer(renderer):  # a custom renderer is used as it is
            # a router that does not say reads them (html, text) as HTTP providers do
            fields = bool(getattr(router, "needs_fields", True))
            self._pool = await RenderPool.start(self.campaign, processes, raw=raw, fields=fields)
        # Messages move in lots: a lot is rendered, claimed and handed to the router
        # together, so a batching provider's messages cost one task step and one queue
        # hand-over a lot, not one each. One-message-per-call providers get lots of one.
        self.lot = max(1, min(self.sizing.claim_size, router.max_batch))
        if self.sizing.token_ahead is not None:
            # paced: a lot waits for its tokens claimed, so no more than may wait at once
            # (the router's batcher still joins the lots in flight into full batches)
            self.lot = min(self.lot, self.sizing.token_ahead)
        self.lot_workers = math.ceil(self.sizing.workers / self.lot)  # still `workers` at most
        # rendered messages (~25 KB each) read ahead of claiming: enough to keep the
        # claimer fed, few enough that memory stays small (two pool chunks)
        rendered: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=2)
        send_q: asyncio.Queue[list[Item] | None] = asyncio.Queue()
        stages = [
            asyncio.create_task(self._read_and_render(renderer, rendered)),
            asyncio.create_task(self._claim(rendered, send_q)),
            asyncio.create_task(self.recorder.flusher(self._stop)),
            asyncio.create_task(self._progress()),
        ]
        workers = [
            asyncio.create_task(self._worker(send_q, router)) for _ in range(self.lot_workers)
        ]
        self._tasks.update(workers)
        try:
            try:
                await stages[1]  # claiming ends: audience done, cap reached, or stop
            except StampError as exc:  # the store failed while claiming: stop like flush
                self.store_error = self.store_error or exc
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
            self.recorder.flush()
            self.emit_progress(0.0)
            if self._pool is not None:
                pool, self._pool = self._pool, None
                await pool.aclose()
        failed = stages[0]
        if not failed.cancelled() and failed.exception() is not None:
            # a template that cannot render for anyone (e.g. a sandbox violation):
            # what was sent is recorded; the rest stays pending
            raise failed.exception()  # type: ignore[misc]

    async def _read_and_render(
        self, renderer: RendererLike, out: asyncio.Queue[list[Item] | None]
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
        self, pool: RenderPool, out: asyncio.Queue[list[Item] | None]
    ) -> None:
        """Render chunks in worker processes, a few chunks ahead of the send loop."""
        ahead: deque[tuple[list[ledger.PendingRow], asyncio.Task[list[Rendered]]]] = deque()
        after = 0
        exhausted = False
        feed = self._feed
        read = 0  # rows read so far
        starved = 0  # chunks in a row the send loop waited for
        chunks = rendered = 0
        since = (0.0, 0.0, 0)  # (this process's CPU, the pool's, rows) when the streak began
        grow_to = most_workers() if self.render_workers is None else pool.workers
        try:
            while not self._stop.is_set():
                while not exhausted and len(ahead) < 2 * pool.workers + 1:
                    feed.more.clear()
                    rows = self.recorder.read_pending(after, POOL_CHUNK)
                    if not rows:
                        feed.check()
                        if ahead or not await feed.more_rows():
                            exhausted = not ahead and feed.done
                            break
                        continue
                    after = rows[-1].id
                    read += len(rows)
                    if self.gate is not None:
                        rows = [r for r in rows if self.gate.admit(r)]
                        if not rows:
                            await asyncio.sleep(0)
                            continue
                    chunk = [(r.key, r.email, r.fields) for r in rows]
                    ahead.append((rows, asyncio.ensure_future(pool.render(chunk))))
                if not ahead:
                    break
                rows, done = ahead.popleft()
                rendering = not done.done()
                messages = await done
                # this chunk was still rendering and the claimer took everything rendered
                # meanwhile: sending waits for rendering (a send-bound run keeps the queue
                # full and finds its chunks rendered)
                chunks += 1
                rendered += len(rows)
                if rendering and out.empty() and chunks > WARM_CHUNKS:
                    if not starved:  # a streak begins: the CPU each side spends from here
                        since = (time.process_time(), pool.cpu, rendered)
                    starved += 1
                else:
                    starved = 0
                if (
                    starved >= GROW_AFTER
                    and pool.workers < grow_to
                    and feed.total - read >= GROW_ROWS
                    and _render_costs_more(since, pool.cpu, rendered)
                ):
                    starved = 0
                    if not await self._grow(pool):
                        grow_to = pool.workers  # a failed start is not tried again
                lot = self._lot(zip(rows, messages, strict=True))
                if lot and not self._stop.is_set():
                    await out.put(lot)
        finally:
            for _, pending in ahead:
                pending.cancel()

    async def _grow(self, pool: RenderPool) -> bool:
        """One more render process, said in the log; a failed start leaves the pool as is."""
        try:
            await pool.grow()
        except RenderWorkerError as exc:
            self._emit(Notice("warning", f"rendering is slower than sending, but {exc}"))
            return False
        self._emit(
            Notice(
                "info",
                f"rendering is slower than sending: {pool.workers} render processes from now on",
            )
        )
        return True

    def _lot(self, rendered: Iterable[tuple[ledger.PendingRow, Message | str]]) -> list[Item]:
        """The rendered messages as a lot; recipients who cannot get one fail, with why."""
        lot: list[Item] = []
        verp = self._verp
        for row, message in rendered:
            if isinstance(message, str):
                self.recorder.add(
                    ledger.Outcome(row.id, ledger.FAILED, last_error=clean(message)),
                    claimed=False,
                )
            elif verp is not None:
                # the row is known here, not in the renderer: its VERP return path
                envelope = verp.address(self.recorder.campaign_id, row.id)
                lot.append(Item(row, message.with_envelope_from(envelope)))
            else:
                lot.append(Item(row, message))
        return lot

    async def _read_and_render_here(
        self, renderer: RendererLike, out: asyncio.Queue[list[Item] | None]
    ) -> None:
        after = 0
        feed = self._feed
        while not self._stop.is_set():
            feed.more.clear()
            rows = self.recorder.read_pending(after, self.sizing.batch)
            if not rows:
                feed.check()
                if await feed.more_rows():
                    continue
                break
            after = rows[-1].id
            if self.gate is not None:
                rows = [r for r in rows if self.gate.admit(r)]
                if not rows:
                    await asyncio.sleep(0)  # a page of rows not due: others may run
                    continue
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
        self, src: asyncio.Queue[list[Item] | None], dst: asyncio.Queue[list[Item] | None]
    ) -> None:
        recorder = self.recorder
        claim_size, cap, max_inflight = (
            self.sizing.claim_size,
            self.sizing.cap,
            self.sizing.max_inflight,
        )
        low_water = self.lot_workers  # lots waiting for a worker
        token_ahead = self.sizing.token_ahead
        waiting: deque[Item] = deque()  # rendered, not yet claimed
        ended = False
        while not self._stop.is_set():
            if not waiting:
                first = None if ended else await src.get()
                if first is None:
                    return
                waiting.extend(first)
            while len(waiting) < claim_size and not ended:
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
            batch = [waiting.popleft() for _ in range(min(len(waiting), claim_size))]
            if self.gate is not None:  # a window may have closed since these were read
                batch = [item for item in batch if self.gate.still_due(item.row)]
                if not batch:
                    continue
            if cap is not None:
                room = cap - recorder.claimed
                if room <= 0:
                    self.stop_reason = self.stop_reason or "limit"
                    return
                batch = batch[:room]
            # wait for room, and while messages wait out a moment with no provider
            # (claiming more would only churn rows through the same failure)
            while (
                recorder.inflight + len(batch) > max_inflight or self._down_waiting
            ) and not self._stop.is_set():
                short = recorder.inflight + len(batch) - max_inflight
                if recorder.waiting and (self._down_waiting or recorder.answered >= short):
                    recorder.flush()  # answers are waiting: record them now to make room
                    continue
                # woken as soon as enough answers wait to make room (or by a release)
                await recorder.wait_for_room(None if self._down_waiting else short)
            if self._stop.is_set() or self.all_down or self.paused_reason:
                return
            if token_ahead is not None:
                batch = await self._token_room(batch, waiting, token_ahead)
                if not batch:
                    return  # stopping
            go = recorder.claim(batch, self.scopes)  # committed: `sending` before sent
            self._queued += len(go)
            for i in range(0, len(go), self.lot):
                dst.put_nowait(go[i : i + self.lot])
            if cap is not None and recorder.claimed >= cap:
                self.stop_reason = self.stop_reason or "limit"
                return

    async def _token_room(
        self, batch: list[Item], waiting: deque[Item], token_ahead: int
    ) -> list[Item]:
        """The part of ``batch`` to claim now; the rest goes back to ``waiting``.

        A paced run claims a row only when few claimed rows wait for a rate token
        (queued for a worker, or in the router's buckets): the rows behind them stay
        `pending` in the store, and a kill leaves only those few `unknown`, not the
        whole claim-ahead window. Empty: the loop is stopping.
        """
        router = self._router
        while not self._stop.is_set():
            ahead = self._queued + (router.rate_waiting if router is not None else 0)
            room = token_ahead - ahead
            if room >= min(len(batch), self.lot):
                if room < len(batch):
                    waiting.extendleft(reversed(batch[room:]))
                    batch = batch[:room]
                return batch
            await asyncio.sleep(TOKEN_POLL)
        return []

    async def _worker(self, src: asyncio.Queue[list[Item] | None], router: RouterLike) -> None:
        while True:
            lot = await src.get()
            if lot is None:
                return
            self._queued -= len(lot)
            if self._stop.is_set():
                # claimed but never handed over: certainly not sent
                for item in lot:
                    self.recorder.add(
                        ledger.Outcome(item.row.id, ledger.PENDING, extra_attempts=-1)
                    )
                continue
            await self._deliver(lot, router)

    async def _deliver(self, lot: list[Item], router: RouterLike) -> None:
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

    # ------------------------------------------------------------------ carrying out decisions

    def _settle(self, item: Item, delivery: DeliveryLike, router: RouterLike) -> None:
        """Carry out what one answer means for the recipient's row (see settle.settle)."""
        item.tries += 1
        result = delivery.result
        label = delivery.provider
        reason = self.autostop.observe(result)
        if reason is not None and self.paused_reason is None:
            self._pause(reason)
        decision = settle(
            item.row,
            item.tries,
            result,
            label,
            self.policy,
            all_down=self.all_down,
            stopping=self._stop.is_set(),
            everyone_down=result.outcome in DOWN and router.all_down,
        )
        if isinstance(decision, Record):
            self._record(decision)
        else:
            self._retry_later(item, router, result, label, decision.delay, decision.down)

    def _record(self, decision: Record) -> None:
        self.recorder.fate(decision.outcome)
        if decision.suppress is not None:
            self.recorder.suppress(decision.suppress)
        if decision.halt is not None:
            self._set_all_down()
            self._emit(Notice("error", decision.halt))
            self._stop.set()

    def _give_up(self, item: Item, result: Result, label: str | None) -> None:
        """No more tries this run for a transient failure."""
        self._record(
            give_up(
                item.row,
                item.tries,
                result,
                label,
                self.policy,
                all_down=self.all_down,
                stopping=self._stop.is_set(),
            )
        )

    def _pause(self, reason: str) -> None:
        """Auto-stop: pause the campaign in the store and stop claiming."""
        self.paused_reason = reason
        self.recorder.pause(reason)
        self._emit(Notice("error", f"campaign paused: {reason}"))
        self._stop.set()

    def _set_all_down(self) -> None:
        """No provider takes messages; note now whether that is quotas (exit 3, not 4).

        The router's states at the end of the run may no longer say so: another run
        using the same provider may have given its unused quota permits back since.
        """
        self.all_down = True
        if self._router is not None:
            states = [s.state for s in self._router.states()]
            self.quota_out = bool(states) and all(s == "quota_used" for s in states)

    def _retry_later(
        self,
        item: Item,
        router: RouterLike,
        result: Result,
        label: str | None,
        delay: float,
        down: bool,
    ) -> None:
        self._waiting_retry[item.row.id] = (item, result, label)
        self._down_waiting += down

        async def later() -> None:
            # an abort cancels this wait; the row stays in _waiting_retry and is settled
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            del self._waiting_retry[item.row.id]
            self._down_waiting -= down
            self.recorder.room.set()
            if self._stop.is_set():
                self._give_up(item, result, label)
                return
            await self._deliver([item], router)

        task = asyncio.create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _settle_abandoned(self, send_q: asyncio.Queue[list[Item] | None]) -> None:
        """After an abort: rows inside the router -> unknown, queued or waiting -> not sent."""
        for item in list(self._in_router.values()):
            self.recorder.fate(
                ledger.Outcome(
                    item.row.id,
                    ledger.UNKNOWN,
                    last_error="stopped hard while the message was being handed to the provider",
                    extra_attempts=item.tries,
                )
            )
        self._in_router.clear()
        for item, result, label in list(self._waiting_retry.values()):
            self._give_up(item, result, label)
        self._waiting_retry.clear()
        while not send_q.empty():
            for queued in send_q.get_nowait() or ():
                self.recorder.add(ledger.Outcome(queued.row.id, ledger.PENDING, extra_attempts=-1))

    # ------------------------------------------------------------------ reporting

    async def _progress(self) -> None:
        recorder = self.recorder
        last_done, last_t, rate = 0, time.monotonic(), 0.0
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            t = time.monotonic()
            inst = (recorder.done - last_done) / max(t - last_t, 1e-6)
            rate = inst if rate == 0.0 else 0.7 * rate + 0.3 * inst
            last_done, last_t = recorder.done, t
            self.emit_progress(rate)

    def provider_counts(self) -> dict[str, dict[str, int]]:
        """Ledger tallies per provider, with the router's failovers and throttles added."""
        merged = {k: dict(v) for k, v in self.recorder.per_provider.items()}
        if self._router is not None:
            for status in self._router.states():
                per = merged.setdefault(str(status.name), {})
                for key in ("failovers", "throttled"):
                    value = int(getattr(status, key, 0) or 0)
                    if value:
                        per[key] = value
        return merged

    def emit_progress(self, rate: float) -> None:
        self._emit(
            Progress(
                self.recorder.done,
                self._feed.total,
                {k: v for k, v in self.recorder.run_counts.items() if v},
                self.provider_counts(),
                round(rate, 1),
            )
        )


def provider_state_dict(status: ProviderStateLike) -> dict[str, Any]:
    """A router ``ProviderStatus`` (any dataclass-like object) as a JSON-ready dict."""
    names = (
        "name", "scheme", "state", "sent", "failed", "rejected", "throttled",
        "failovers", "quota_used", "quota", "reason",
    )  # fmt: skip
    return {n: getattr(status, n) for n in names if hasattr(status, n)}


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


def _render_costs_more(since: tuple[float, float, int], pool_cpu: float, rendered: int) -> bool:
    """Rendering took more CPU a message than this process did since ``since``.

    Only then does one more render process pay on the core the send loop uses: with
    render cost r and send-loop cost m a message, two cores give 2/(r+m) messages a
    second with two workers against 1/r with one, more exactly when r > m. A
    worker starved of CPU by the machine's other work looks slow too, but costs no
    more; this keeps it from growing the pool (and its memory) for nothing.
    """
    own0, pool0, rows0 = since
    if rendered <= rows0:
        return False
    return pool_cpu - pool0 > time.process_time() - own0


def _is_stamp_renderer(renderer: RendererLike) -> TypeGuard[Renderer]:
    """stamp's own ``Renderer`` (not a subclass): the pool's workers build the same one."""
    from stampcli.render.renderer import Renderer

    return type(renderer) is Renderer


def _poolable(renderer: RendererLike | None) -> bool:
    """The pool's workers build a ``Renderer`` of the same campaign: the CLI's own
    ``Renderer`` (built early to surface template errors) renders the same there."""
    return renderer is None or _is_stamp_renderer(renderer)
