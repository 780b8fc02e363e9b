"""The router: which provider a message goes to, and what happens when it answers.

Failover, weights, throttles, quotas and batching act on the same per-provider
route state in one decision per message; apart they would hand it back and forth.

For each message the router picks a provider (in order, all traffic to the
first healthy one; or, when every provider has a ``weight:``, a smooth
weighted round robin), takes a permit from its daily quota, waits for the
campaign-wide and the provider's rate tokens and a concurrency slot, and
hands the message to the adapter (adapters that carry several messages per
call get them grouped by a per-provider batcher: up to ``batch_size`` or
whatever arrived within ``linger`` seconds; a batch takes one slot and one
rate token per message).

Then, by outcome:

* ACCEPTED, RECIPIENT_REJECTED, RECIPIENT_DEFERRED: final, never failed over
  (another provider would mail someone the first one refused).
* THROTTLED: wait ``retry_after`` (or the campaign's back-off, doubling) and
  try the same provider again, pausing it for everyone meanwhile; once the
  total wait would pass the provider's ``max_throttle_wait``, the message
  moves on like a provider-down one, without counting against the circuit.
* PROVIDER_DOWN, PROVIDER_REFUSED: recorded in the provider's circuit
  breaker; the same message goes to the next available provider (these are
  the only answers that are certainly "not accepted").
* UNKNOWN: may have been accepted; final, unless the adapter is idempotent
  (then retried on the same provider, up to ``throttle.retries`` times).

A quota permit is given back whenever the message certainly was not
accepted. Every circuit or quota state change is reported as a
:class:`~stampcli.delivery.run_events.ProviderState` event.

Workers sharing a campaign (``rates`` given) share their circuits too: one
that opens publishes the provider and its cool-down in the store, and the
others, reading the store at most every ``BREAKER_READ_EVERY`` seconds when
they pick a provider, open their own closed circuit for the time left; a
probe that succeeds clears the entry.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
from collections.abc import Coroutine, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.config import Campaign
from stampcli.delivery.breaker import CLOSED, HALF_OPEN, OPEN, REFUSED, CircuitBreaker
from stampcli.delivery.domains import DomainThrottles, domain_of, is_domain_throttle
from stampcli.delivery.run_events import EventSink, ProviderState, ignore
from stampcli.delivery.shared_rate import SharedBucket
from stampcli.delivery.throttle import TokenBucket
from stampcli.delivery.warmup import WarmupQuota, warmup_label
from stampcli.errors import StampError
from stampcli.providers import create_adapter
from stampcli.providers.base import Adapter, Outcome, Result
from stampcli.records_report import ANSWER_BUCKETS_MS, ProviderTally
from stampcli.redact import redact
from stampcli.render.message import Message
from stampcli.store.protocols import RateStore, Store
from stampcli.store.quota import DailyQuota

ALL_DOWN = "every provider is down, refused or out of quota"
QUOTA_USED = "quota_used"
# answers that certainly mean "not accepted": the message may move to another provider
_MOVE_ON = frozenset((Outcome.PROVIDER_DOWN, Outcome.PROVIDER_REFUSED, Outcome.THROTTLED))
_NONE_EXCLUDED: frozenset[str] = frozenset()
_MIN_BACKOFF = 0.05  # a zero back-off must still not spin
# how often a worker sharing the campaign reads which providers the others found down:
# one small query a second, and a down provider gets at most a second of each worker's sends
BREAKER_READ_EVERY = 1.0
_MAX_THROTTLED_TRIES = 20  # per provider and message, whatever the waits


class Delivery(NamedTuple):  # a tuple: one is made per message
    result: Result  # final classified result for the message
    provider: str | None  # label of the provider that gave it (None if none could be tried)
    attempts: int  # adapter calls made for this message


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One provider's state and counters, for the progress view and ``stamp status``.

    ``failed`` counts provider-down, refused, unknown and deferred answers;
    ``failovers`` the messages this provider passed on to another.
    """

    name: str
    scheme: str
    state: str  # closed | open | half_open | refused | quota_used
    sent: int
    failed: int
    rejected: int
    throttled: int
    failovers: int
    quota_used: int | None
    quota: int | None
    reason: str


@dataclass
class _Claim:
    day: str | None  # quota day of the permit taken, if the provider has a quota
    probe: bool  # this message is the half-open circuit's probe
    warmup_day: str | None = None  # day of the warm-up permit taken, if a warm-up caps it


class _Route:
    """One provider as the router sees it: adapter, limits, circuit, counters."""

    def __init__(
        self,
        router: Router,
        adapter: Adapter,
        store: Store | None,
        warmup: WarmupQuota | None = None,
    ) -> None:
        config = adapter.config
        clock = router.clock
        self.router = router
        self.adapter = adapter
        self.label = adapter.name
        self.scheme = adapter.url.scheme
        self.max_throttle_wait = config.max_throttle_wait
        self.weight = config.weight or 1.0
        self.current = 0.0  # smooth weighted round robin state
        self.bucket: TokenBucket | SharedBucket | None = None
        if config.rate and router.rates is not None:  # the fleet's rate, not this worker's
            self.bucket = SharedBucket(router.rates, f"rate:{self.label}", config.rate, clock=clock)
        elif config.rate:
            self.bucket = TokenBucket(config.rate, clock=clock)
        self.slots = asyncio.Semaphore(config.concurrency)
        # what `stamp report` reads of this provider (saved by the run, see tallies())
        self.tally = ProviderTally(self.label)
        self.breaker = CircuitBreaker(clock=clock, on_change=self._changed)
        self.breaker_name = f"breaker:{self.label}"  # its row in the fleet's breakers
        self.from_peer = False  # set while another worker's word opens this circuit
        self.quota = (
            DailyQuota(self.label, config.daily_quota, store, clock=clock)
            if config.daily_quota
            else None
        )
        self.warmup = warmup  # shared by every route under warmup.scope: domain
        self.quota_out = False
        self.quota_out_day = ""  # the UTC day the quota ran out
        self.paused_until = 0.0  # monotonic; set by THROTTLED answers
        self.batch_size = adapter.batch_size
        self.batcher = _Batcher(router, self) if self.batch_size > 1 else None
        self.sent = self.failed = self.rejected = self.throttled = self.failovers = 0

    def _changed(self, state: str, reason: str) -> None:
        if state == OPEN:
            self.tally.circuit_opens += 1
        self.router._emit(self.label, state, reason)
        if not self.from_peer:
            self.router._publish(self, state, reason)
        self.from_peer = False

    def time_answer(self, seconds: float) -> None:
        """Count one adapter call's answer time in its bucket."""
        ms = seconds * 1000.0
        le = ANSWER_BUCKETS_MS[
            min(bisect.bisect_left(ANSWER_BUCKETS_MS, ms), len(ANSWER_BUCKETS_MS) - 1)
        ]
        times = self.tally.answer_ms
        times[le] = times.get(le, 0) + 1

    @property
    def state(self) -> str:
        if self.breaker.state == REFUSED:
            return REFUSED
        if self.quota_out:
            return QUOTA_USED
        return self.breaker.state

    def count(self, outcome: Outcome) -> None:
        answers = self.tally.answers
        answers[outcome.value] = answers.get(outcome.value, 0) + 1
        if outcome is Outcome.ACCEPTED:
            self.sent += 1
        elif outcome is Outcome.RECIPIENT_REJECTED:
            self.rejected += 1
        elif outcome is Outcome.THROTTLED:
            self.throttled += 1
        else:
            self.failed += 1


class _Group:
    """Messages submitted together: one future answers them all, in order."""

    __slots__ = ("future", "left", "results")

    def __init__(self, future: asyncio.Future[list[Result]], size: int) -> None:
        self.future = future
        self.results: list[Result | None] = [None] * size
        self.left = size

    def answer(self, index: int, result: Result) -> None:
        self.results[index] = result
        self.left -= 1
        if not self.left and not self.future.done():
            self.future.set_result(self.results)  # type: ignore[arg-type]  # all set now


class _Batcher:
    """Groups concurrent messages for one provider into adapter calls of up to batch_size."""

    def __init__(self, router: Router, route: _Route) -> None:
        self.router = router
        self.route = route
        self.pending: list[tuple[Message, _Group, int]] = []
        self.timer: asyncio.Task[None] | None = None

    async def submit(self, messages: Sequence[Message]) -> list[Result]:
        """Results for ``messages``, which may travel in one adapter call or be split."""
        group = _Group(asyncio.get_running_loop().create_future(), len(messages))
        self.pending.extend((m, group, i) for i, m in enumerate(messages))
        if len(self.pending) >= self.route.batch_size:
            self._flush()
        elif self.timer is None:
            self.timer = self.router._spawn(self._linger())
        return await group.future

    async def _linger(self) -> None:
        await self.router.clock.sleep(self.router.linger)
        self.timer = None
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            batch = self.pending[: self.route.batch_size]
            if len(batch) < self.route.batch_size and self.timer is not None:
                return  # a partial batch waits for its linger timer
            del self.pending[: len(batch)]
            self.router._spawn(self._dispatch(batch))

    async def _dispatch(self, batch: list[tuple[Message, _Group, int]]) -> None:
        live = [entry for entry in batch if not entry[1].future.cancelled()]
        if not live:
            return
        try:
            results = await self.router._call(self.route, [m for m, _, _ in live])
        except BaseException as exc:
            for _, group, _ in live:
                if not group.future.done():
                    group.future.set_exception(exc)
            raise
        for (_, group, index), result in zip(live, results, strict=True):
            group.answer(index, result)


class Router:
    """Routes messages to providers; safe to call ``send`` from many tasks at once."""

    def __init__(
        self,
        campaign: Campaign,
        store: Store | None = None,
        *,
        adapters: Sequence[Adapter] | None = None,
        clock: Clock | None = None,
        on_event: EventSink | None = None,
        linger: float = 0.015,
        probe_wait: float = 5.0,
        rates: RateStore | None = None,
    ) -> None:
        self.campaign = campaign
        # several workers share the campaign: rates are drawn from buckets in the store
        self.rates = rates
        # messages handed over and not yet on the wire (picking, in a batcher's linger,
        # waiting for a throttle pause, a rate token or a connection): by id
        self._unpaced: set[int] = set()
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.on_event: EventSink = on_event or ignore
        self.linger = linger
        self.probe_wait = probe_wait  # longest a message waits for a half-open probe
        self.backoff = campaign.throttle.backoff
        self.retries = campaign.throttle.retries
        if adapters is None:
            signer = None
            if campaign.dkim is not None:
                # imported only here: dkimpy (and dnspython under it) costs ~90 ms to import
                from stampcli.render.dkim import signer_for

                signer = signer_for(campaign.dkim)  # one parsed key for every adapter that signs
            adapters = [
                create_adapter(p, campaign.tracking.for_providers(), signer)
                for p in campaign.providers
            ]
        if not adapters:
            raise ValueError("a router needs at least one provider")
        self._warmups: list[WarmupQuota] = []
        self._routes = [_Route(self, a, store, self._warmup_for(a, store)) for a in adapters]
        self.weighted = all(a.config.weight is not None for a in adapters)
        rate = campaign.throttle.rate
        self._campaign_bucket: TokenBucket | SharedBucket | None = None
        if rate and rates is not None:
            name = f"rate:campaign:{campaign.name}"
            self._campaign_bucket = SharedBucket(rates, name, rate, clock=self.clock)
        elif rate:
            self._campaign_bucket = TokenBucket(rate, clock=self.clock)
        # per recipient domain: the domains: rates, and the back-off of a domain that
        # answers 421/4.7.x, which slows only that domain (stampcli.delivery.domains)
        self.domains = DomainThrottles(campaign.domains, clock=self.clock, backoff=self.backoff)
        self._tasks: set[asyncio.Task[None]] = set()
        self._random = random.Random()
        self._breakers_read_at: float | None = None  # monotonic; the fleet's breakers

    def _warmup_for(self, adapter: Adapter, store: Store | None) -> WarmupQuota | None:
        schedule = self.campaign.warmup
        if schedule is None:
            return None
        if schedule.scope == "domain" and self._warmups:
            return self._warmups[0]
        label = warmup_label(self.campaign, adapter.name)
        quota = WarmupQuota(label, schedule, store, clock=self.clock)
        self._warmups.append(quota)
        return quota

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Router:
        opened: list[Adapter] = []
        try:
            for route in self._routes:
                await route.adapter.open()
                opened.append(route.adapter)
        except BaseException:
            for adapter in opened:
                await adapter.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for route in self._routes:
            await route.adapter.close()
            if route.quota is not None:
                route.quota.close()
            if isinstance(route.bucket, SharedBucket):
                route.bucket.close()
        if isinstance(self._campaign_bucket, SharedBucket):
            self._campaign_bucket.close()
        for warmup in self._warmups:
            warmup.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _emit(self, provider: str, state: str, reason: str) -> None:
        self.on_event(ProviderState(provider=provider, state=state, reason=redact(reason)))

    # ------------------------------------------------------------------ public

    async def send(self, message: Message) -> Delivery:
        """Deliver ``message`` through the first provider that takes it; never raises for one."""
        return (await self.send_many([message]))[0]

    @property
    def rate_waiting(self) -> int:
        """Messages handed over and not yet on the wire (waiting for a token or a slot).

        A paced send loop claims rows (`pending` -> `sending`) only a few ahead of
        these, so the rows behind stay `pending` in the store while they wait.
        """
        return len(self._unpaced)

    async def send_many(self, messages: Sequence[Message]) -> list[Delivery]:
        """:meth:`send` for each of ``messages``; one Delivery each, in order."""
        ids = [id(m) for m in messages]
        self._unpaced.update(ids)
        try:
            return await self._send_many(messages)
        finally:
            self._unpaced.difference_update(ids)

    async def _send_many(self, messages: Sequence[Message]) -> list[Delivery]:
        """:meth:`send_many`'s work.

        The common case costs one adapter call (or batcher submission) per provider
        for the lot: each message gets its provider as :meth:`send` would pick it, and
        only messages whose first answer is not final (throttled, provider down, an
        idempotent unknown) go on alone through :meth:`_send`.
        """
        picks = [self._pick(_NONE_EXCLUDED) for _ in messages]
        groups: dict[str, tuple[_Route, list[int]]] = {}
        for i, picked in enumerate(picks):
            if picked is not None:
                groups.setdefault(picked[0].label, (picked[0], []))[1].append(i)
        firsts: list[Result | None] = [None] * len(messages)
        out: list[Delivery | None] = [None] * len(messages)
        if groups:
            calls = [self._dispatch(r, [messages[i] for i in idx]) for r, idx in groups.values()]
            try:
                answers = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
            except BaseException:
                for picked in picks:
                    if picked is not None:
                        self._abandon(*picked)
                raise
            for (route, idx), results in zip(groups.values(), answers, strict=True):
                for i, result in zip(idx, results, strict=True):
                    self._record_try(route, picks[i][1], result)  # type: ignore[index]
                    self.domains.answered(messages[i], result)
                    if self._final(route, result, 1):
                        out[i] = Delivery(result, route.label, 1)
                    else:
                        firsts[i] = result
        rest = [i for i, delivery in enumerate(out) if delivery is None]
        if rest:
            later = [self._send(messages[i], picks[i], firsts[i]) for i in rest]
            done = [await later[0]] if len(later) == 1 else await asyncio.gather(*later)
            for i, delivery in zip(rest, done, strict=True):
                out[i] = delivery
        return out  # type: ignore[return-value]  # every slot is filled now

    async def _send(
        self,
        message: Message,
        picked: tuple[_Route, _Claim] | None,
        first: Result | None,
    ) -> Delivery:
        """One message's way through the providers, from its first pick and answer if any."""
        attempts = 0
        excluded: set[str] = set()
        last: tuple[Result, str] | None = None
        deadline: float | None = None
        while True:
            if picked is None:
                picked = self._pick(excluded)
            if picked is None:
                delay = self._probe_delay(excluded)
                now = self.clock.monotonic()
                if deadline is None:
                    deadline = now + self.probe_wait
                if delay is not None and now + delay <= deadline:
                    await self.clock.sleep(max(delay, _MIN_BACKOFF))
                    continue
                if last is not None and last[0].outcome is Outcome.THROTTLED:
                    return Delivery(last[0], last[1], attempts)
                detail = ALL_DOWN
                if last is not None:
                    detail = f"{ALL_DOWN}; last answer from {last[1]}: {last[0].detail}"
                return Delivery(Result(Outcome.PROVIDER_DOWN, detail=detail), None, attempts)
            (route, claim), picked = picked, None
            if excluded:  # another provider passed this message on
                route.tally.failovers_in += 1
            result, tries = await self._attempt(route, message, claim, first)
            first = None
            attempts += tries
            if result.outcome in _MOVE_ON:
                # certainly not accepted: the same message may go elsewhere
                excluded.add(route.label)
                route.failovers += 1
                route.tally.failovers_out += 1
                last = (result, route.label)
                continue
            return Delivery(result, route.label, attempts)

    @property
    def all_down(self) -> bool:
        """No provider can take traffic now or soon.

        Each provider is refused, out of quota, or has been down (open, with
        failed probes) for at least its longest cool-down.
        """
        now = self.clock.monotonic()
        for route in self._routes:
            self._refresh_quota(route)
            state = route.state
            if state in (REFUSED, QUOTA_USED):
                continue
            since = route.breaker.down_since
            long_down = since is not None and now - since >= route.breaker.max_cool_down
            if state in (OPEN, HALF_OPEN) and long_down:
                continue
            return False
        return True

    def retry_in(self) -> float | None:
        """Seconds until some provider may take a message (0: now); None: not in this run."""
        now = self.clock.monotonic()
        best: float | None = None
        for route in self._routes:
            self._refresh_quota(route)
            if route.state in (REFUSED, QUOTA_USED):
                continue
            if route.breaker.available():
                return 0.0
            retry = route.breaker.retry_at
            wait = route.breaker.base_cool_down if retry is None else max(0.0, retry - now)
            best = wait if best is None else min(best, wait)
        return best

    @property
    def max_batch(self) -> int:
        """The most messages one adapter call of any provider carries."""
        return max(route.batch_size for route in self._routes)

    @property
    def needs_raw(self) -> bool:
        """Some provider sends the MIME bytes, so messages must carry them."""
        return any(route.adapter.needs_raw for route in self._routes)

    @property
    def needs_fields(self) -> bool:
        """Some provider reads the messages' html and text (not only their MIME bytes).

        One that does not send the MIME bytes reads them, whatever it says (a subclass
        of the outbox that builds its own MIME, say)."""
        return any(r.adapter.needs_fields or not r.adapter.needs_raw for r in self._routes)

    def tallies(self) -> list[ProviderTally]:
        """Per provider, what this router counted so far (copies: the run saves them)."""
        return [
            ProviderTally(
                r.label,
                dict(r.tally.answers),
                dict(r.tally.answer_ms),
                r.tally.failovers_out,
                r.tally.failovers_in,
                r.tally.throttle_waits,
                r.tally.throttle_wait_ms,
                r.tally.circuit_opens,
            )
            for r in self._routes
        ]

    def states(self) -> list[ProviderStatus]:
        out = []
        for route in self._routes:
            self._refresh_quota(route)
            quota = route.quota
            reason = route.breaker.reason
            if route.state == QUOTA_USED and route.warmup is not None and route.warmup.exhausted():
                reason = self._warmup_reason(route.warmup)
            elif route.state == QUOTA_USED and quota is not None:
                reason = f"daily quota of {quota.limit} used for {quota.day} (UTC)"
            out.append(
                ProviderStatus(
                    name=route.label,
                    scheme=route.scheme,
                    state=route.state,
                    sent=route.sent,
                    failed=route.failed,
                    rejected=route.rejected,
                    throttled=route.throttled,
                    failovers=route.failovers,
                    quota_used=quota.used() if quota is not None else None,
                    quota=quota.limit if quota is not None else None,
                    reason=reason,
                )
            )
        return out

    # ------------------------------------------------------------------ choosing

    def _refresh_quota(self, route: _Route) -> None:
        """A provider out of quota comes back at UTC midnight."""
        if route.quota_out and route.warmup is not None and route.warmup.exhausted():
            return
        if route.quota_out and route.quota is None and route.warmup is not None:
            route.quota_out = False
            why = f"warm-up cap free again ({route.warmup.remaining} left for {route.warmup.day})"
            self._emit(route.label, route.breaker.state, why)
            return
        if route.quota_out and route.quota is not None and not route.quota.exhausted():
            route.quota_out = False
            why = f"a new quota day ({route.quota.day})"
            if route.quota.day == route.quota_out_day:  # same day: another run gave some back
                why = f"quota permits free again ({route.quota.remaining} left today)"
            self._emit(route.label, route.breaker.state, why)

    def _usable(self, route: _Route, excluded: AbstractSet[str]) -> bool:
        if route.label in excluded:
            return False
        self._refresh_quota(route)
        return not route.quota_out and route.breaker.available()

    # ------------------------------------------------------------ shared breakers

    def _publish(self, route: _Route, state: str, reason: str) -> None:
        """Tell the other workers of the campaign that ``route`` opened (or closed)."""
        if self.rates is None:
            return
        # a store that fails only costs the others a few messages each: never the send
        with contextlib.suppress(StampError):
            if state == OPEN:
                self.rates.open_breaker(route.breaker_name, route.breaker.cool_down, reason)
            elif state == CLOSED:
                self.rates.close_breaker(route.breaker_name)

    def sync_breakers(self) -> None:
        """Open the circuits another worker found down (at most every BREAKER_READ_EVERY s).

        Only a closed circuit follows the fleet: one already open or probing keeps its own
        cool-down, and the probe that closes it tells the others in turn.
        """
        if self.rates is None:
            return
        now = self.clock.monotonic()
        if self._breakers_read_at is not None and now - self._breakers_read_at < (
            BREAKER_READ_EVERY
        ):
            return
        self._breakers_read_at = now
        try:
            opened = self.rates.open_breakers()
        except StampError:
            return  # the store is away: each worker finds out for itself meanwhile
        for route in self._routes:
            found = opened.get(route.breaker_name)
            if found is None or route.breaker.state != CLOSED:
                continue
            seconds, reason = found
            route.from_peer = True
            route.breaker.trip(seconds, f"another worker found it down: {reason}")

    def _pick(self, excluded: AbstractSet[str]) -> tuple[_Route, _Claim] | None:
        self.sync_breakers()
        candidates = [r for r in self._routes if self._usable(r, excluded)]
        while candidates:
            if self.weighted:
                total = sum(r.weight for r in candidates)
                for r in candidates:
                    r.current += r.weight
                route = max(candidates, key=lambda r: r.current)
                route.current -= total
            else:
                route = candidates[0]
            claim = self._claim(route)
            if claim is not None:
                return route, claim
            candidates.remove(route)
        return None

    def _claim(self, route: _Route) -> _Claim | None:
        """Take a quota permit and the circuit's permission for one message."""
        warmup_day: str | None = None
        if route.warmup is not None:
            warmup_day = route.warmup.reserve()
            if warmup_day is None:
                if not route.quota_out:
                    route.quota_out = True
                    route.quota_out_day = route.warmup.day
                    self._emit(route.label, QUOTA_USED, self._warmup_reason(route.warmup))
                return None
        day: str | None = None
        if route.quota is not None:
            day = route.quota.reserve()
            if day is None:
                self._give_back_warmup(route, warmup_day)
                if not route.quota_out:
                    route.quota_out = True
                    route.quota_out_day = route.quota.day
                    self._emit(
                        route.label,
                        QUOTA_USED,
                        f"daily quota of {route.quota.limit} used for {route.quota.day} (UTC)",
                    )
                return None
        was_closed = route.breaker.state == CLOSED
        if not route.breaker.allow():
            self._give_back(route, day)
            self._give_back_warmup(route, warmup_day)
            return None
        return _Claim(day=day, probe=not was_closed, warmup_day=warmup_day)

    def _give_back(self, route: _Route, day: str | None) -> None:
        if route.quota is not None and day is not None:
            route.quota.give_back(day)

    def _give_back_warmup(self, route: _Route, day: str | None) -> None:
        if route.warmup is not None and day is not None:
            route.warmup.give_back(day)

    @staticmethod
    def _warmup_reason(warmup: WarmupQuota) -> str:
        return f"warm-up cap of {warmup.limit} used for {warmup.day} (UTC)"

    def _probe_delay(self, excluded: set[str]) -> float | None:
        """Seconds until a provider not yet tried for this message may take it, if any."""
        now = self.clock.monotonic()
        best: float | None = None
        for route in self._routes:
            if route.label in excluded or route.state in (REFUSED, QUOTA_USED):
                continue
            retry = route.breaker.retry_at
            if retry is None and route.breaker.probing:
                wait = _MIN_BACKOFF  # a probe is out: its answer may reopen the way
            elif retry is None:
                continue
            else:
                wait = max(0.0, retry - now)
            best = wait if best is None else min(best, wait)
        return best

    # ------------------------------------------------------------------ sending

    async def _attempt(
        self, route: _Route, message: Message, claim: _Claim, first: Result | None = None
    ) -> tuple[Result, int]:
        """Send through one provider, retrying there on THROTTLED (and idempotent UNKNOWN).

        ``first``: the answer to a try already made and recorded (by :meth:`send_many`).
        """
        tries = 0
        waited = 0.0
        throttled = 0
        result = first
        while True:
            if result is None:
                try:
                    [result] = await self._dispatch(route, [message])
                except BaseException:
                    self._abandon(route, claim)
                    raise
                self._record_try(route, claim, result)
                self.domains.answered(message, result)
            tries += 1
            if result.outcome is Outcome.UNKNOWN and not self._final(route, result, tries):
                result = None  # idempotent: the same permit stands for the same message
                continue
            if result.outcome is not Outcome.THROTTLED:
                return result, tries
            throttled += 1
            if is_domain_throttle(result):
                # the receiving domain wants less: its gate is paused (and slowed) for
                # everyone, the provider is not; past the wait limit the row is deferred
                # to a later run (another provider would meet the same domain)
                wait = max(0.0, self.domains.pause_left(message))
                if waited + wait > route.max_throttle_wait or throttled >= _MAX_THROTTLED_TRIES:
                    detail = f"{domain_of(message)} asks to slow down: {result.detail}"
                    return Result(Outcome.RECIPIENT_DEFERRED, detail=detail[:500]), tries
                waited += wait
                again = self._claim(route)
                if again is None:
                    return result, tries
                claim = again
                result = None
                continue
            if result.retry_after is not None:
                wait = max(0.0, result.retry_after)
            else:
                wait = self.backoff * (2 ** (throttled - 1)) * self._random.uniform(0.8, 1.2)
            wait = max(wait, _MIN_BACKOFF)
            if waited + wait > route.max_throttle_wait or throttled >= _MAX_THROTTLED_TRIES:
                return result, tries
            route.paused_until = max(route.paused_until, self.clock.monotonic() + wait)
            route.tally.throttle_waits += 1
            route.tally.throttle_wait_ms += round(wait * 1000)
            await self.clock.sleep(wait)
            waited += wait
            again = self._claim(route)
            if again is None:
                return result, tries
            claim = again
            result = None

    def _record_try(self, route: _Route, claim: _Claim, result: Result) -> None:
        """Count one answer, tell the circuit, and give the quota permit back if unused."""
        outcome = result.outcome
        route.count(outcome)
        route.breaker.record(outcome, result.detail, probe=claim.probe)
        if outcome is not Outcome.ACCEPTED and outcome is not Outcome.UNKNOWN:
            self._give_back(route, claim.day)
            self._give_back_warmup(route, claim.warmup_day)

    def _final(self, route: _Route, result: Result, tries: int) -> bool:
        """The answer after ``tries`` tries is the message's fate: no retry, no failover."""
        outcome = result.outcome
        if outcome is Outcome.UNKNOWN:
            # an idempotent provider may take the same message again (same permit)
            retry = route.adapter.idempotent and tries <= self.retries
            return not (retry and route.breaker.state == CLOSED)
        return outcome not in _MOVE_ON

    def _abandon(self, route: _Route, claim: _Claim) -> None:
        """A try that never got its answer (cancelled): free its probe and permit."""
        if claim.probe:
            route.breaker.release()
        self._give_back(route, claim.day)
        self._give_back_warmup(route, claim.warmup_day)

    async def _dispatch(self, route: _Route, messages: list[Message]) -> list[Result]:
        """One result per message: through the batcher, or one adapter call each."""
        if route.batcher is not None:
            return await route.batcher.submit(messages)
        if len(messages) == 1:
            return await self._call(route, messages)
        answers = await asyncio.gather(*(self._call(route, [m]) for m in messages))
        return [result for [result] in answers]

    async def _call(self, route: _Route, messages: list[Message]) -> list[Result]:
        """One adapter call: honour a throttle pause, take rate tokens and a slot."""
        pause = route.paused_until - self.clock.monotonic()
        if pause > 0:
            await self.clock.sleep(pause)
        await self.domains.acquire(messages)
        n = len(messages)
        if self._campaign_bucket is not None:
            await self._campaign_bucket.acquire(n)
        if route.bucket is not None:
            await route.bucket.acquire(n)
        async with route.slots:
            self._unpaced.difference_update(id(m) for m in messages)  # on the wire now
            # the answer time of the call: from the hand-over to the answer, queueing for
            # rate and slot left out (the provider's own speed, for `stamp report`)
            began = self.clock.monotonic()
            try:
                results = await route.adapter.send(messages)
            except Exception as exc:  # an adapter broke its contract; the send may have happened
                detail = redact(f"{route.label} adapter error: {type(exc).__name__}: {exc}")
                results = [Result(Outcome.UNKNOWN, detail=detail[:500]) for _ in messages]
            route.time_answer(self.clock.monotonic() - began)
        if len(results) != n:
            detail = f"{route.label} answered {len(results)} results for {n} messages"
            results = [Result(Outcome.UNKNOWN, detail=detail) for _ in messages]
        return results
