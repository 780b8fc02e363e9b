"""The router: failover, weights, throttling, circuits, quotas, batching, rates."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from smtp_server import SMTPTestServer

from stampcli.clock import FakeClock
from stampcli.config import Campaign, ProviderConfig
from stampcli.delivery.router import ALL_DOWN, Router
from stampcli.delivery.run_events import Event, ProviderState
from stampcli.providers import create_adapter
from stampcli.providers.base import Adapter, CheckReport, Outcome, Result
from stampcli.render.message import Message
from stampcli.store.db import SCHEMA, SCHEMA_VERSION, Store
from stampcli.store.quota import usage

Answer = Callable[[Message, int], Result]  # (message, call number on this adapter)


def ok(_: Message, __: int) -> Result:
    return Result(Outcome.ACCEPTED, message_id="id")


def always(outcome: Outcome, **kw: Any) -> Answer:
    return lambda _m, _n: Result(outcome, **kw)


class Scripted(Adapter):
    """A real adapter whose answers come from a function; records every call."""

    scheme: ClassVar[str] = "outbox"

    def __init__(self, name: str, answer: Answer = ok, **config: Any) -> None:
        super().__init__(
            ProviderConfig.model_validate({"url": "outbox://x", "name": name, **config})
        )
        self.answer = answer
        self.calls: list[list[str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        self.calls.append([m.recipient for m in messages])
        n = len(self.calls)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        return [self.answer(m, n) for m in messages]

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True)

    @property
    def sent(self) -> int:
        return sum(len(c) for c in self.calls)


class Idempotent(Scripted):
    idempotent: ClassVar[bool] = True


class Batching(Scripted):
    max_batch: ClassVar[int] = 10


def campaign(**throttle: Any) -> Campaign:
    return Campaign.model_validate(
        {
            "name": "c",
            "from": "news@acme.test",
            "subject": "s",
            "template": "t.html",
            "audience": {"list": "l"},
            "providers": [{"url": "outbox://x"}],
            "throttle": throttle,
        }
    )


def message(i: int | str) -> Message:
    to = f"r{i}@x.test"
    return Message(
        campaign="c",
        key=to,
        recipient=to,
        sender="news@acme.test",
        message_id=f"<{i}@acme.test>",
        from_header="news@acme.test",
        to_header=to,
        subject="s",
        html="<p>x</p>",
        text="x",
        raw=f"To: {to}\r\nSubject: s\r\n\r\nx\r\n".encode(),
    )


def router(
    *adapters: Adapter, clock: FakeClock | None = None, store: Store | None = None, **throttle: Any
) -> tuple[Router, list[Event]]:
    events: list[Event] = []
    r = Router(
        campaign(**throttle),
        store,
        adapters=adapters,
        clock=clock or FakeClock(),
        on_event=events.append,
    )
    return r, events


def states(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.provider, e.state) for e in events if isinstance(e, ProviderState)]


# ----------------------------------------------------------------------------- failover


async def test_failover_moves_the_same_message_and_opens_the_circuit() -> None:
    a = Scripted("a", always(Outcome.PROVIDER_DOWN, detail="connect refused"))
    b = Scripted("b")
    r, events = router(a, b)
    async with r:
        first = await r.send(message(0))
        for i in range(1, 10):
            await r.send(message(i))
    assert (first.result.outcome, first.provider, first.attempts) == (Outcome.ACCEPTED, "b", 2)
    assert a.sent == 5  # then its circuit opened and traffic went straight to b
    assert b.sent == 10
    assert states(events) == [("a", "open")]
    [sa, sb] = r.states()
    assert (sa.state, sa.failed, sa.failovers) == ("open", 5, 5)
    assert (sb.state, sb.sent) == ("closed", 10)
    assert a.opened and a.closed and b.closed


@pytest.mark.parametrize(
    "outcome", [Outcome.RECIPIENT_REJECTED, Outcome.RECIPIENT_DEFERRED, Outcome.UNKNOWN]
)
async def test_never_fails_over_recipient_or_unknown_answers(outcome: Outcome) -> None:
    a = Scripted("a", always(outcome, detail="no"))
    b = Scripted("b")
    r, _ = router(a, b)
    async with r:
        deliveries = [await r.send(message(i)) for i in range(4)]
    assert all(d.result.outcome is outcome and d.provider == "a" for d in deliveries)
    assert all(d.attempts == 1 for d in deliveries)
    assert b.sent == 0


async def test_recipient_answers_never_open_the_circuit_but_unknowns_do() -> None:
    rejecting = Scripted("a", always(Outcome.RECIPIENT_REJECTED))
    r, _ = router(rejecting, Scripted("b"))
    async with r:
        for i in range(30):
            await r.send(message(i))
    assert r.states()[0].state == "closed" and r.states()[0].rejected == 30
    # a provider that keeps timing out after the data is sick: stop feeding it
    vague = Scripted("a", always(Outcome.UNKNOWN))
    r, _ = router(vague, Scripted("b"))
    async with r:
        for i in range(6):
            await r.send(message(i))
    assert r.states()[0].state == "open"
    assert vague.sent == 5


async def test_unknown_is_retried_only_on_an_idempotent_adapter() -> None:
    a = Idempotent("a", lambda _m, n: Result(Outcome.UNKNOWN if n == 1 else Outcome.ACCEPTED))
    r, _ = router(a, Scripted("b"))
    async with r:
        d = await r.send(message(0))
    assert (d.result.outcome, d.provider, d.attempts) == (Outcome.ACCEPTED, "a", 2)


async def test_refused_provider_is_out_for_the_run() -> None:
    a = Scripted("a", always(Outcome.PROVIDER_REFUSED, detail="535 auth failed"))
    b = Scripted("b")
    clock = FakeClock()
    r, events = router(a, b, clock=clock)
    async with r:
        await r.send(message(0))
        clock.advance(10_000)
        await r.send(message(1))
    assert a.sent == 1 and b.sent == 2
    assert states(events) == [("a", "refused")]
    assert r.states()[0].reason == "535 auth failed"
    assert not r.all_down


async def test_everything_down_returns_promptly() -> None:
    clock = FakeClock()
    a = Scripted("a", always(Outcome.PROVIDER_REFUSED, detail="suspended"))
    b = Scripted("b", always(Outcome.PROVIDER_DOWN, detail="timeout"))
    r, _ = router(a, b, clock=clock)
    async with r:
        first = await r.send(message(0))
        assert first.provider is None
        assert first.result.outcome is Outcome.PROVIDER_DOWN
        assert first.result.detail.startswith(ALL_DOWN)
        assert first.attempts == 2
        for i in range(1, 5):
            await r.send(message(i))  # b opens after 5
        start = clock.monotonic()
        late = await r.send(message(9))
        assert clock.monotonic() - start <= r.probe_wait  # did not sit out the 30 s cool-down
        assert (late.provider, late.attempts) == (None, 0)
        assert not r.all_down  # b will be probed after its cool-down
        assert r.retry_in() == pytest.approx(30.0 - (clock.monotonic() - start), abs=r.probe_wait)
        # b stays down through probes until its cool-down reached the cap
        for _ in range(10):
            clock.advance(300)
            await r.send(message("probe"))
        assert r.all_down


async def test_half_open_lets_exactly_one_probe_through() -> None:
    healthy = False
    a = Scripted("a", lambda _m, _n: Result(Outcome.ACCEPTED if healthy else Outcome.PROVIDER_DOWN))
    b = Scripted("b")
    clock = FakeClock()
    r, events = router(a, b, clock=clock)
    async with r:
        for i in range(5):
            await r.send(message(i))
        assert r.states()[0].state == "open"
        clock.advance(30)
        healthy = True
        before = a.sent
        await asyncio.gather(*(r.send(message(f"p{i}")) for i in range(10)))
        assert a.sent - before == 1  # one probe; the rest went to b meanwhile
        assert r.states()[0].state == "closed"
        await r.send(message("after"))
    assert a.calls[-1] == ["rafter@x.test"]
    assert states(events) == [("a", "open"), ("a", "half_open"), ("a", "closed")]


# ----------------------------------------------------------------------------- throttling


async def test_throttled_waits_and_retries_the_same_provider() -> None:
    a = Scripted(
        "a",
        lambda _m, n: Result(Outcome.THROTTLED, retry_after=2) if n <= 2 else ok(_m, n),
    )
    b = Scripted("b")
    clock = FakeClock()
    r, events = router(a, b, clock=clock)
    async with r:
        d = await r.send(message(0))
    assert (d.result.outcome, d.provider, d.attempts) == (Outcome.ACCEPTED, "a", 3)
    assert clock.monotonic() == pytest.approx(4.0)
    assert b.sent == 0
    assert r.states()[0].throttled == 2
    assert states(events) == []  # throttling never touches the circuit


async def test_throttled_beyond_the_budget_moves_on_without_opening() -> None:
    a = Scripted("a", always(Outcome.THROTTLED, retry_after=3600), max_throttle_wait="60s")
    b = Scripted("b")
    clock = FakeClock()
    r, _ = router(a, b, clock=clock)
    async with r:
        deliveries = [await r.send(message(i)) for i in range(10)]
    assert all(d.provider == "b" for d in deliveries)
    assert clock.monotonic() == 0.0
    assert r.states()[0].state == "closed"
    assert r.states()[0].failovers == 10


async def test_backoff_doubles_until_the_budget_then_reports_throttled() -> None:
    a = Scripted("a", always(Outcome.THROTTLED), max_throttle_wait=10)
    clock = FakeClock()
    r, _ = router(a, clock=clock, backoff=1)
    async with r:
        d = await r.send(message(0))
    # about 1 + 2 + 4 seconds (with jitter), then the next wait would pass 10 s
    assert d.result.outcome is Outcome.THROTTLED
    assert d.provider == "a"
    assert d.attempts == 4
    assert 5.6 <= clock.monotonic() <= 10.0


# ----------------------------------------------------------------------------- limits


async def test_weighted_split_is_exact() -> None:
    a, b = Scripted("a", weight=3), Scripted("b", weight=1)
    r, _ = router(a, b)
    async with r:
        for i in range(400):
            await r.send(message(i))
    assert (a.sent, b.sent) == (300, 100)


async def test_weighted_fails_over_too() -> None:
    a = Scripted("a", always(Outcome.PROVIDER_DOWN), weight=1)
    b = Scripted("b", weight=1)
    r, _ = router(a, b)
    async with r:
        deliveries = [await r.send(message(i)) for i in range(20)]
    assert all(d.provider == "b" for d in deliveries)


async def test_provider_rate_and_campaign_rate() -> None:
    clock = FakeClock()
    a = Scripted("a", rate="10/s")
    r, _ = router(a, clock=clock)
    async with r:
        await asyncio.gather(*(r.send(message(i)) for i in range(50)))
    assert clock.monotonic() == pytest.approx(4.0)  # 10 at once, then 40 at 10/s

    clock2 = FakeClock()
    r2, _ = router(Scripted("a"), Scripted("b"), clock=clock2, rate="5/s")
    async with r2:
        await asyncio.gather(*(r2.send(message(i)) for i in range(25)))
    assert clock2.monotonic() == pytest.approx(4.0)


async def test_concurrency_slots() -> None:
    a = Scripted("a", concurrency=2)
    r, _ = router(a)
    async with r:
        await asyncio.gather(*(r.send(message(i)) for i in range(30)))
    assert a.max_in_flight == 2
    assert a.sent == 30


async def test_batches_group_concurrent_messages() -> None:
    a = Batching("a", rate="100/s")
    clock = FakeClock()
    r, _ = router(a, clock=clock)
    async with r:
        deliveries = await asyncio.gather(*(r.send(message(i)) for i in range(25)))
    assert sorted(len(c) for c in a.calls) == [5, 10, 10]
    assert all(d.result.outcome is Outcome.ACCEPTED and d.attempts == 1 for d in deliveries)
    # each message got its own result back
    assert sorted(m for c in a.calls for m in c) == sorted(f"r{i}@x.test" for i in range(25))


async def test_batch_size_setting_caps_the_batch() -> None:
    a = Batching("a", batch_size=4)
    r, _ = router(a)
    async with r:
        await asyncio.gather(*(r.send(message(i)) for i in range(9)))
    assert sorted(len(c) for c in a.calls) == [1, 4, 4]


async def test_send_many_answers_each_message_in_order_with_one_call_per_batch() -> None:
    a = Batching("a")
    r, _ = router(a)
    async with r:
        deliveries = await r.send_many([message(i) for i in range(25)])
    assert [len(c) for c in a.calls] == [10, 10, 5]
    assert [c for call in a.calls for c in call] == [f"r{i}@x.test" for i in range(25)]
    assert all(d.provider == "a" and d.attempts == 1 for d in deliveries)


async def test_send_many_fails_over_only_what_the_provider_certainly_did_not_take() -> None:
    answers = {
        "r0@x.test": Result(Outcome.PROVIDER_DOWN, detail="503"),
        "r1@x.test": Result(Outcome.RECIPIENT_REJECTED, detail="550 no such user"),
        "r2@x.test": Result(Outcome.UNKNOWN, detail="timeout"),
        "r3@x.test": Result(Outcome.THROTTLED, retry_after=1000.0),  # past the wait budget
    }
    a = Batching("a", lambda m, _n: answers.get(m.recipient, Result(Outcome.ACCEPTED)))
    b = Scripted("b")
    r, _ = router(a, b)
    async with r:
        deliveries = await r.send_many([message(i) for i in range(6)])
    got = [(d.result.outcome, d.provider, d.attempts) for d in deliveries]
    assert got == [
        (Outcome.ACCEPTED, "b", 2),
        (Outcome.RECIPIENT_REJECTED, "a", 1),
        (Outcome.UNKNOWN, "a", 1),
        (Outcome.ACCEPTED, "b", 2),
        (Outcome.ACCEPTED, "a", 1),
        (Outcome.ACCEPTED, "a", 1),
    ]
    assert sorted(c for call in b.calls for c in call) == ["r0@x.test", "r3@x.test"]
    [sa, _] = r.states()
    assert (sa.sent, sa.rejected, sa.failovers) == (2, 1, 2)


async def test_send_many_splits_a_weighted_lot_across_providers() -> None:
    a = Batching("a", weight=3)
    b = Batching("b", weight=1)
    r, _ = router(a, b)
    async with r:
        deliveries = await r.send_many([message(i) for i in range(8)])
    assert (a.sent, b.sent) == (6, 2)
    assert [d.provider for d in deliveries].count("b") == 2


async def test_send_many_gives_quota_permits_back_when_cancelled(tmp_path: Path) -> None:
    class Hanging(Batching):
        async def send(self, messages: Sequence[Message]) -> list[Result]:
            await asyncio.Event().wait()
            return []

    store = prepared_store(tmp_path / "q.db")
    r, _ = router(Hanging("a", daily_quota=10), store=store)
    async with r:
        task = asyncio.create_task(r.send_many([message(i) for i in range(4)]))
        await asyncio.sleep(0.05)
        assert r.states()[0].quota_used == 4
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert r.states()[0].quota_used == 0
    store.close()


# ----------------------------------------------------------------------------- quotas


def prepared_store(path: Path) -> Store:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()
    return Store(path)


async def test_quota_used_passes_traffic_on(tmp_path: Path) -> None:
    a = Scripted("a", daily_quota=3)
    b = Scripted("b")
    with prepared_store(tmp_path / "stamp.db") as store:
        r, events = router(a, b, store=store)
        async with r:
            for i in range(6):
                await r.send(message(i))
            [sa, _] = r.states()
            assert (sa.state, sa.quota_used, sa.quota) == ("quota_used", 3, 3)
            assert r.all_down is False
        assert (a.sent, b.sent) == (3, 3)
        assert states(events) == [("a", "quota_used")]
        assert usage(store, "a", sa_day(r)) == 3


def sa_day(r: Router) -> str:
    from stampcli.store.quota import utc_day

    return utc_day(r.clock.time())


async def test_quota_freed_by_another_run_is_not_called_a_new_day(tmp_path: Path) -> None:
    down_once = iter([Result(Outcome.PROVIDER_DOWN)])
    first = Scripted("a", lambda _m, _n: next(down_once, Result(Outcome.ACCEPTED)), daily_quota=2)
    with prepared_store(tmp_path / "stamp.db") as store:
        r1, _ = router(first, Scripted("b"), store=store)
        r2, events = router(Scripted("a", daily_quota=2), Scripted("b"), store=store)
        async with r1, r2:
            await r1.send(message(0))  # a down: its permit stays reserved by r1, unused
            await r2.send(message(1))
            await r2.send(message(2))  # the shared count is full: a is out of quota for r2
            assert r2.states()[0].state == "quota_used"
        # r1 closed and returned its unused permit: the same day, one left
        assert r2.states()[0].state == "closed"
    reasons = [e.reason for e in events if isinstance(e, ProviderState)]
    assert reasons[-1] == "quota permits free again (1 left today)"


async def test_quota_permit_comes_back_when_not_accepted() -> None:
    calls = 0

    def flaky(_m: Message, _n: int) -> Result:
        nonlocal calls
        calls += 1
        return Result(Outcome.PROVIDER_DOWN if calls == 1 else Outcome.ACCEPTED)

    a = Scripted("a", flaky, daily_quota=2)
    r, _ = router(a, Scripted("b"))
    async with r:
        for i in range(4):
            await r.send(message(i))
    assert calls == 3  # one down (permit returned), then two accepted
    assert r.states()[0].quota_used == 2


async def test_only_quota_left_means_all_down() -> None:
    r, _ = router(Scripted("a", daily_quota=1))
    async with r:
        assert (await r.send(message(0))).provider == "a"
        d = await r.send(message(1))
        assert d.provider is None and d.result.detail == ALL_DOWN
        assert r.all_down


# ----------------------------------------------------------------------------- real adapters


async def test_real_smtp_down_fails_over_to_the_outbox(tmp_path: Path) -> None:
    with SMTPTestServer() as server:
        port = server.port
    dead = create_adapter(ProviderConfig(url=f"smtp://127.0.0.1:{port}?ehlo=t", name="relay"))
    box = create_adapter(ProviderConfig(url=f"outbox://{tmp_path}", name="box"))
    r = Router(campaign(), adapters=[dead, box])
    async with r:
        d = await r.send(message(0))
    assert (d.result.outcome, d.provider, d.attempts) == (Outcome.ACCEPTED, "box", 2)
    assert (tmp_path / "c" / "r0@x.test.eml").is_file()


async def test_real_smtp_rejection_is_not_failed_over(tmp_path: Path) -> None:
    with SMTPTestServer() as server:
        server.on_rcpt("r0@x.test", "550 5.1.1 user unknown")
        relay = create_adapter(ProviderConfig(url=server.url(ehlo="t"), name="relay"))
        box = create_adapter(ProviderConfig(url=f"outbox://{tmp_path}", name="box"))
        r = Router(campaign(), adapters=[relay, box])
        async with r:
            rejected = await r.send(message(0))
            accepted = await r.send(message(1))
        assert server.count("r1@x.test") == 1
    assert (rejected.result.outcome, rejected.provider) == (Outcome.RECIPIENT_REJECTED, "relay")
    assert rejected.result.suppress == "hard_bounce"
    assert (accepted.result.outcome, accepted.provider) == (Outcome.ACCEPTED, "relay")
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------- tallies


async def test_tallies_count_failovers_circuit_openings_and_answers() -> None:
    a = Scripted("a", always(Outcome.PROVIDER_DOWN, detail="connect refused"))
    b = Scripted("b")
    r, _ = router(a, b)
    async with r:
        for i in range(10):
            await r.send(message(i))
    ta, tb = r.tallies()
    assert (ta.provider, ta.answers, ta.failovers_out, ta.circuit_opens) == (
        "a", {"provider_down": 5}, 5, 1,
    )  # fmt: skip
    assert (tb.answers, tb.failovers_in, tb.failovers_out) == ({"accepted": 10}, 5, 0)
    # one answer time per adapter call, each counted in a bucket (a fake clock: 0 ms)
    assert sum(ta.answer_ms.values()) == 5 and sum(tb.answer_ms.values()) == 10
    assert set(tb.answer_ms) == {1}


async def test_tallies_count_throttle_waits_and_time_answers() -> None:
    class Slow(Scripted):
        async def send(self, messages: Sequence[Message]) -> list[Result]:
            await clock.sleep(0.12)  # 120 ms on the fake clock: the 150 ms bucket
            return await super().send(messages)

    clock = FakeClock()
    a = Slow("a", lambda _m, n: Result(Outcome.THROTTLED, retry_after=2) if n <= 2 else ok(_m, n))
    r, _ = router(a, clock=clock)
    async with r:
        await r.send(message(0))
    [t] = r.tallies()
    assert (t.throttle_waits, t.throttle_wait_ms) == (2, 4000)
    assert t.answers == {"throttled": 2, "accepted": 1}
    assert t.answer_ms == {150: 3}
