"""The send API's use cases: accept, queue, send, answer. Shared by ``stamp serve`` and workers.

::

    accept:  request -> checks (pool, From domain, suppressions) -> api_messages 'queued'
             (+ the Idempotency-Key, same commit)
    send:    claim (queued -> sending, a lease) -> compose -> Router.send_many (failover,
             breakers, rates, quotas) -> settle (sent | partial | rejected | failed |
             unknown, or queued again with a back-off when no provider could take it)
    answer:  rows -> MessageOut (+ the delivery events that carried the message's id)

A synchronous request (``?wait=true``) claims its own rows right after queueing
them and sends them in the request; an asynchronous one leaves them to
:class:`QueueDrainer`, the background loop of ``stamp serve``, or to any other
process that calls :func:`send_queued_api_messages` on the same store (a
``stamp worker``): claims are leases, so several drainers never send one message
twice. A process that dies mid-send leaves its claimed rows ``sending``; when
the lease runs out they become ``unknown`` (they may have been accepted) and are
never sent again by themselves. Rows still ``queued`` are simply sent later:
nothing queued is lost by a crash or a restart.

Store access goes through ``call`` (an awaitable ``call(fn)`` that runs
``fn(store)``): the server's store writer thread, or :func:`direct` for a
process that owns its store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from stampcli.config import Campaign
from stampcli.delivery.router import Delivery, Router
from stampcli.delivery.throttle import TokenBucket
from stampcli.providers.base import Outcome, Result
from stampcli.records import ApiMessageRow, Enqueued, EnqueueRequest, Suppression
from stampcli.sendapi.compose import ComposeError, Composer
from stampcli.sendapi.config import Pool, ServeConfig
from stampcli.sendapi.model import EventOut, MessageIn, MessageOut, RecipientResult
from stampcli.store.protocols import ApiFate, Store

log = logging.getLogger("stamp.api")

T = TypeVar("T")
StoreCall = Callable[[Callable[[Store], T]], Awaitable[T]]

QUEUED, SENDING, SENT, PARTIAL, REJECTED, FAILED, UNKNOWN = (
    "queued", "sending", "sent", "partial", "rejected", "failed", "unknown",
)  # fmt: skip
STATES = (QUEUED, SENDING, SENT, PARTIAL, REJECTED, FAILED, UNKNOWN)
FINAL = frozenset((SENT, PARTIAL, REJECTED, FAILED, UNKNOWN))
IDEMPOTENCY_TTL = 24 * 3600.0
PURGE_EVERY = 600.0  # seconds between deletions of expired Idempotency-Keys
LEASE = 300.0  # seconds a claim holds; longer than any send's failover and deadline
# rows one drain claims at once: a crash leaves at most these `unknown` (claimed, maybe sent),
# so it is kept near what the providers take at once, not what would amortise a commit
CLAIM = 16
CLAIM_IDS = 500  # ids one claim by id takes (the stores' IN list)
BACKOFF_FIRST, BACKOFF_MAX = 5.0, 300.0  # re-queue delays when no provider could take it
# the longest the server's drainer waits for a saturated server before a claim, and
# how often it looks meanwhile (QueueDrainer)
GIVE_WAY, GIVE_WAY_STEP = 0.25, 0.01
GIVE_UP_AFTER = 24 * 3600.0  # a message no provider took for this long is failed
# suppression reasons an explicit `transactional: true` may pass (never bounces/complaints)
TRANSACTIONAL_BYPASS = frozenset(("unsubscribed",))


async def direct(store: Store) -> StoreCall[Any]:
    """A ``call`` for a process that owns ``store`` (a worker): runs each ``fn`` in place."""

    async def call(fn: Callable[[Store], T]) -> T:
        return fn(store)

    return call


def new_id() -> str:
    """A fresh API message id: ``msg_`` and 26 hex digits (time-ordered, then random)."""
    return f"msg_{int(time.time() * 1000):011x}{secrets.token_hex(8)}"


def request_hash(pool: str, body: Sequence[MessageIn]) -> str:
    """What an Idempotency-Key is bound to: the pool and the requests, canonical JSON."""
    canon = json.dumps(
        [m.model_dump(mode="json", by_alias=True) for m in body],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(f"{pool}\n{canon}".encode()).hexdigest()


def owner_name(kind: str) -> str:
    """``host:pid:kind:random``: whose lease a claim is."""
    return f"{socket.gethostname()}:{os.getpid()}:{kind}:{secrets.token_hex(3)}"


# ---------------------------------------------------------------- checks (run in the store)


@dataclass(frozen=True, slots=True)
class Blocked:
    """A recipient the store says not to mail, and why."""

    address: str
    reason: str


def blocked_recipients(store: Store, messages: Sequence[MessageIn]) -> list[list[Blocked]]:
    """Per message, its suppressed recipients (an unsubscribe does not count for a
    ``transactional`` one)."""
    keys = {k for m in messages for k in m.recipients()}
    found = store.suppressions.suppressed(keys) if keys else set()
    reasons: dict[str, str] = {}
    for key in found:
        row = store.suppressions.get(key)
        reasons[key] = row.reason if row is not None else "suppressed"
    out: list[list[Blocked]] = []
    for m in messages:
        out.append(
            [
                Blocked(k, reasons.get(k, "suppressed"))
                for k in m.recipients()
                if k in found
                and not (m.transactional and reasons.get(k, "") in TRANSACTIONAL_BYPASS)
            ]
        )
    return out


def daily_quota(pool: Pool, now: float) -> tuple[str, str, int] | None:
    """The counter a pool's messages of ``now``'s UTC day are counted in, if it has a quota."""
    if pool.daily_quota is None:
        return None
    from stampcli.store.quota import utc_day

    return (f"pool:{pool.name}", utc_day(now), pool.daily_quota)


def enqueue(
    store: Store,
    pool: str,
    messages: Sequence[MessageIn],
    *,
    key: str | None,
    wait: bool,
    now: float,
    next_at: float = 0.0,
) -> Enqueued:
    """Queue ``messages`` for ``pool`` (under ``key`` if given): see ApiQueueStore.enqueue."""
    return store.api_queue.enqueue_many(
        [Accept(pool, messages, key=key, wait=wait, now=now, next_at=next_at).request()]
    )[0]


@dataclass(frozen=True, slots=True)
class Accept:
    """One API request to queue: its pool, messages, Idempotency-Key and mode."""

    pool: str
    messages: Sequence[MessageIn]
    key: str | None = None
    wait: bool = False
    now: float = 0.0
    next_at: float = 0.0  # a sync request's own rows: not for a drainer before then
    quota: tuple[str, str, int] | None = None  # daily_quota()

    def request(self) -> EnqueueRequest:
        return EnqueueRequest(
            self.pool,
            tuple((new_id(), m.model_dump_json(by_alias=True)) for m in self.messages),
            self.now,
            key=self.key,
            request_hash=request_hash(self.pool, self.messages) if self.key is not None else "",
            wait=self.wait,
            ttl=IDEMPOTENCY_TTL,
            next_at=self.next_at,
            quota=self.quota,
        )


def queue_many(store: Store, accepts: Sequence[Accept]) -> list[list[list[Blocked]] | Enqueued]:
    """Check and queue concurrent requests in one commit (the server's group commit).

    Per request: its suppressed recipients (per message) if it has any, and nothing is
    queued for it; else what :meth:`ApiQueueStore.enqueue_many` did for it (``over_quota``:
    its pool's daily quota had no room, nothing queued). The suppressions of every
    request are looked up at once."""
    blocked = blocked_recipients(store, [m for a in accepts for m in a.messages])
    out: list[list[list[Blocked]] | Enqueued | None] = []
    todo: list[EnqueueRequest] = []
    at = 0
    for a in accepts:
        mine = blocked[at : at + len(a.messages)]
        at += len(a.messages)
        if any(mine):
            out.append(mine)
        else:
            out.append(None)
            todo.append(a.request())
    done = iter(store.api_queue.enqueue_many(todo) if todo else [])
    return [next(done) if o is None else o for o in out]


ClaimIds = tuple[str, Sequence[str], float]  # owner, ids, lease


def claim_many(store: Store, items: Sequence[ClaimIds]) -> list[list[ApiMessageRow]]:
    """The claims of concurrent synchronous requests (each of its own rows, by id), in as
    few commits as their owners and the id lists' size allow; per request its rows."""
    now = time.time()
    got: dict[str, ApiMessageRow] = {}
    groups: dict[tuple[str, float], list[str]] = {}
    for owner, ids, lease in items:
        groups.setdefault((owner, lease), []).extend(ids)
    for (owner, lease), ids in groups.items():
        for start in range(0, len(ids), CLAIM_IDS):
            part = ids[start : start + CLAIM_IDS]
            found = store.api_queue.claim(owner, now=now, lease=lease, ids=part)
            got.update((r.id, r) for r in found)
    return [[got[i] for i in ids if i in got] for _, ids, _ in items]


SettleItem = tuple[str, Sequence[ApiFate], Sequence[Suppression]]  # owner, fates, suppress


def settle_many(store: Store, items: Sequence[SettleItem]) -> list[None]:
    """The settles of concurrent synchronous requests: one commit per owner (and one for
    the suppressions the providers' rejections asked for)."""
    suppress = [x for _, _, found in items for x in found]
    if suppress:
        store.suppressions.add_many(suppress)
    by_owner: dict[str, list[ApiFate]] = {}
    for owner, fates, _ in items:
        by_owner.setdefault(owner, []).extend(fates)
    now = time.time()
    for owner, fates in by_owner.items():
        store.api_queue.settle(owner, fates, now=now)
    return [None] * len(items)


def answers_many(store: Store, items: Sequence[Sequence[str]]) -> list[dict[str, MessageOut]]:
    """:func:`answers` of concurrent requests, one read for all."""
    found = answers(store, [i for ids in items for i in ids])
    return [{i: found[i] for i in ids if i in found} for ids in items]


def answers(store: Store, ids: Sequence[str], *, events: bool = False) -> dict[str, MessageOut]:
    """The state of each of ``ids`` that exists (with its delivery events if asked)."""
    out: dict[str, MessageOut] = {}
    for row in store.api_queue.get(ids):
        found = store.api_queue.events_for(row.id) if events else None
        out[row.id] = message_out(row, found)
    return out


def message_out(row: ApiMessageRow, events: Sequence[Any] | None = None) -> MessageOut:
    results = [RecipientResult(**r) for r in json.loads(row.results)] if row.results else []
    return MessageOut(
        id=row.id,
        state=row.state,
        pool=row.pool,
        provider=row.provider,
        attempts=row.attempts,
        recipients=results,
        detail=row.detail,
        created_at=row.created_at,
        updated_at=row.updated_at,
        events=None
        if events is None
        else [
            EventOut(
                type=e.type,
                recipient=e.recipient,
                provider=e.provider,
                occurred_at=e.occurred_at,
                reason=e.reason,
                bounce_kind=e.bounce_kind,
            )
            for e in events
        ],
    )


def settle(
    store: Store, owner: str, fates: Sequence[ApiFate], suppress: Sequence[Suppression], now: float
) -> int:
    """Record the fates (and the suppressions the providers' rejections asked for)."""
    if suppress:
        store.suppressions.add_many(suppress)
    return store.api_queue.settle(owner, fates, now=now)


# ---------------------------------------------------------------- sending


def pool_campaign(pool: Pool) -> Campaign:
    """The settings a pool's :class:`Router` reads, as the campaign it expects."""
    return Campaign.model_validate(
        {
            "name": f"api:{pool.name}",
            "from": f"api@{pool.from_domains[0]}",
            "subject": "-",
            "template": "api",
            "audience": {"list": "api"},
            "providers": list(pool.providers),
            "transactional": True,
        }
    )


@dataclass
class Outcomes:
    """What one send of claimed rows came to."""

    fates: list[ApiFate] = field(default_factory=list)
    suppress: list[Suppression] = field(default_factory=list)


def _state_of(results: Sequence[Result]) -> str:
    kinds = {r.outcome for r in results}
    if kinds == {Outcome.ACCEPTED}:
        return SENT
    if Outcome.ACCEPTED in kinds:
        return PARTIAL
    if Outcome.UNKNOWN in kinds:
        return UNKNOWN
    if kinds == {Outcome.RECIPIENT_REJECTED}:
        return REJECTED
    return FAILED


def needs_quota_store(config: ServeConfig) -> bool:
    """Whether a provider of some pool has a daily quota to count in the store."""
    return any(q.daily_quota for p in config.pools for q in p.providers)


class ApiSender:
    """The pools' routers (opened once, shared by every send) and the composer.

    ``quota_store``: the store the providers' daily quotas count in (a connection
    the caller's loop may use directly; None keeps them in memory). ``open_quota_store``
    instead: opened when the sender is, closed after it, and only when some provider of
    a pool has a ``daily_quota`` (the server's routers run on its event loop, not on
    the writer's thread, so they need a connection of their own). The quota then
    holds across restarts and is shared with every process on the store, campaigns
    included, as it is for ``stamp send``.
    """

    def __init__(
        self,
        config: ServeConfig,
        *,
        quota_store: Store | None = None,
        open_quota_store: Callable[[], Store] | None = None,
        composer: Composer | None = None,
        on_fate: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.config = config
        self.on_fate = on_fate  # (state, provider) of each message settled: metrics
        self.composer = composer or Composer(config.templates)
        self._open_quota_store = open_quota_store if needs_quota_store(config) else None
        self._owned: Store | None = None
        self.routers = self._routers(quota_store)
        self.buckets: dict[str, TokenBucket] = {
            p.name: TokenBucket(p.rate) for p in config.pools if p.rate is not None
        }

    def _routers(self, quota_store: Store | None) -> dict[str, Router]:
        return {
            # linger 2 ms, not a campaign's 15: a synchronous request waits for its batch
            p.name: Router(pool_campaign(p), quota_store, probe_wait=2.0, linger=0.002)
            for p in self.config.pools
        }

    async def __aenter__(self) -> ApiSender:
        if self._open_quota_store is not None:
            self._owned = self._open_quota_store()
            self.routers = self._routers(self._owned)
        opened: list[Router] = []
        try:
            for router in self.routers.values():
                await router.__aenter__()
                opened.append(router)
        except BaseException:
            for router in opened:
                await router.__aexit__(None, None, None)
            self._close_owned()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            for router in self.routers.values():
                await router.__aexit__(exc_type, exc, tb)  # gives unused quota permits back
        finally:
            self._close_owned()

    def _close_owned(self) -> None:
        if self._owned is not None:
            close = getattr(self._owned, "close", None)
            if close is not None:
                close()
            self._owned = None

    async def deliver(self, rows: Sequence[ApiMessageRow], now: float | None = None) -> Outcomes:
        """Send claimed rows; their fates (nothing is written here)."""
        done = Outcomes()
        if not rows:
            return done
        sends = [self._one(row) for row in rows]
        results = await asyncio.gather(*sends)
        stamp = time.time() if now is None else now
        for row, (fate, suppress) in zip(rows, results, strict=True):
            if fate[1] == QUEUED and stamp - row.created_at > GIVE_UP_AFTER:
                fate = (fate[0], FAILED, *fate[2:])
            done.fates.append(fate)
            done.suppress += suppress
            if self.on_fate is not None:
                self.on_fate(fate[1], fate[2])
        return done

    async def _one(self, row: ApiMessageRow) -> tuple[ApiFate, list[Suppression]]:
        router = self.routers.get(row.pool)
        if router is None:
            return (row.id, FAILED, None, None, 0, f"the pool {row.pool!r} is gone", 0.0), []
        try:
            request = MessageIn.model_validate_json(row.request)
            messages = self.composer.compose(row.id, request)
        except (ComposeError, ValueError) as exc:
            return (row.id, FAILED, None, None, 0, str(exc)[:500], 0.0), []
        deliveries: list[Delivery] = await router.send_many(messages)
        attempts = sum(d.attempts for d in deliveries)
        if all(d.result.certainly_not_accepted for d in deliveries):
            # no provider took it: queued again for later, nobody mailed
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(row.attempts, 10))
            detail = deliveries[0].result.detail[:500] or "no provider could take it"
            return (row.id, QUEUED, None, None, attempts, detail, time.time() + delay), []
        results = [d.result for d in deliveries]
        state = _state_of(results)
        provider: str | None = next(
            (d.provider for d in deliveries if d.result.outcome is Outcome.ACCEPTED),
            deliveries[0].provider,
        )
        per = [
            {
                "recipient": m.key,
                "outcome": d.result.outcome.value,
                "provider_message_id": d.result.message_id,
                "detail": d.result.detail[:300] or None,
            }
            for m, d in zip(messages, deliveries, strict=True)
        ]
        suppress = [
            Suppression(m.key, d.result.suppress.value, d.provider or "api", detail=row.id)
            for m, d in zip(messages, deliveries, strict=True)
            if d.result.outcome is Outcome.RECIPIENT_REJECTED and d.result.suppress is not None
        ]
        note = None if state == SENT else (results[0].detail[:500] or None)
        return (row.id, state, provider, json.dumps(per), attempts, note, 0.0), suppress


async def send_rows(
    call: StoreCall[Any], sender: ApiSender, owner: str, rows: Sequence[ApiMessageRow]
) -> Outcomes:
    """Deliver claimed ``rows`` and record their fates."""
    outcomes = await sender.deliver(rows)
    await call(lambda s: settle(s, owner, outcomes.fates, outcomes.suppress, time.time()))
    return outcomes


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What one :func:`send_queued_api_messages` call did."""

    claimed: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    expired: int = 0  # dead owners' rows turned unknown

    def as_dict(self) -> dict[str, Any]:
        return {"claimed": self.claimed, "by_state": self.by_state, "expired": self.expired}


async def send_queued_api_messages(
    call: StoreCall[Any],
    sender: ApiSender,
    *,
    owner: str,
    limit: int = CLAIM,
    max_rounds: int | None = None,
    stop: Callable[[], bool] = lambda: False,
    lease: float = LEASE,
    pause: Callable[[], Awaitable[object]] | None = None,
) -> DrainResult:
    """Send what is due in the API queue, ``limit`` rows a claim, until nothing is due
    (or ``max_rounds`` claims). The one function a ``stamp worker`` calls to drain API
    messages beside its campaigns, with ``call = await direct(store)``. ``pause`` is
    awaited before each claim (the server's drainer gives way to busy requests there)."""
    now = time.time()
    expired = await call(lambda s: s.api_queue.expire_leases(now))
    claimed = 0
    by_state: dict[str, int] = {}
    rounds = 0
    while (max_rounds is None or rounds < max_rounds) and not stop():
        rounds += 1
        if pause is not None:
            await pause()
        rows = await call(
            lambda s: s.api_queue.claim(owner, now=time.time(), lease=lease, limit=limit)
        )
        if not rows:
            break
        claimed += len(rows)
        outcomes = await send_rows(call, sender, owner, rows)
        for fate in outcomes.fates:
            by_state[fate[1]] = by_state.get(fate[1], 0) + 1
    return DrainResult(claimed, by_state, expired)


def _purge(store: Store, *, before: float) -> int:
    return store.api_queue.purge_keys(before)


class QueueDrainer:
    """``stamp serve``'s background sender: drains the queue, woken at once by new
    asynchronous messages, else every ``interval`` seconds (for re-queued ones and
    messages queued by other processes). ``stop()`` lets the send under way finish;
    rows it has not claimed stay queued in the store.

    ``busy()`` true: the server is saturated with requests (one event loop runs both),
    so before a claim the drainer waits until it is not, but never longer than
    ``give_way`` seconds: a burst is queued at the rate the loop can take requests and
    sent right after it, and a flood that lasts still has a claim sent every
    ``give_way`` seconds. (A message sent and answered in its request, ``wait=true``,
    is not delayed by this.)"""

    def __init__(
        self,
        call: StoreCall[Any],
        sender: ApiSender,
        *,
        interval: float = 1.0,
        limit: int = CLAIM,
        lease: float = LEASE,
        busy: Callable[[], bool] | None = None,
        give_way: float = GIVE_WAY,
    ) -> None:
        self._call = call
        self._busy = busy
        self.give_way = give_way
        self.lease = lease
        self._sender = sender
        self.interval = interval
        self.limit = limit
        self.owner = owner_name("serve")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def poke(self) -> None:
        self._wake.set()

    async def _give_way(self) -> None:
        if self._busy is None:
            return
        for _ in range(math.ceil(self.give_way / GIVE_WAY_STEP)):
            if self._stopping or not self._busy():
                return
            await asyncio.sleep(GIVE_WAY_STEP)  # a poll: busy() is a count, not an event

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        purged = 0.0
        while not self._stopping:
            self._wake.clear()
            if time.monotonic() - purged > PURGE_EVERY:  # Idempotency-Keys past their 24 h
                purged = time.monotonic()
                cutoff = time.time() - IDEMPOTENCY_TTL
                with contextlib.suppress(Exception):  # retried next time; the keys expire anyway
                    await self._call(functools.partial(_purge, before=cutoff))
            try:
                await send_queued_api_messages(
                    self._call,
                    self._sender,
                    owner=self.owner,
                    limit=self.limit,
                    stop=lambda: self._stopping,
                    lease=self.lease,
                    pause=self._give_way,
                )
            except Exception as exc:  # a store or send failure must not end the loop
                log.error("the API queue drainer failed (%s: %s)", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
