"""Token buckets and the virtual clock they wait on."""

from __future__ import annotations

import asyncio

import pytest

from stampcli.clock import FakeClock, SystemClock
from stampcli.config import parse_rate
from stampcli.delivery.throttle import TokenBucket, default_burst


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock()
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    await asyncio.gather(nap("long", 30), nap("short", 1), nap("mid", 5))
    assert woke == [("short", 1.0), ("mid", 5.0), ("long", 30.0)]
    assert clock.slept == 30.0


async def test_fake_clock_manual_advance() -> None:
    clock = FakeClock(auto_advance=False)
    task = asyncio.create_task(clock.sleep(10))
    await asyncio.sleep(0)
    clock.advance(9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(1)
    await asyncio.sleep(0)
    assert task.done()
    assert clock.time() == 1_700_000_010.0


async def test_system_clock_is_real() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() - before >= 0.009
    assert clock.time() > 1_600_000_000


def test_burst_is_one_seconds_worth() -> None:
    assert default_burst(parse_rate("100/s")) == 100
    assert default_burst(parse_rate("3000/min")) == 50
    assert default_burst(parse_rate("2000/day")) == 1
    assert default_burst(parse_rate("0.5/s")) == 1


async def test_bucket_holds_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(parse_rate("10/s"), clock=clock)
    start = clock.monotonic()
    for _ in range(10):  # the burst goes at once
        assert await bucket.acquire() == 0.0
    assert clock.monotonic() == start
    for _ in range(50):  # then 10 a second
        await bucket.acquire()
    assert clock.monotonic() - start == pytest.approx(5.0)


async def test_concurrent_waiters_share_fairly() -> None:
    clock = FakeClock()
    bucket = TokenBucket(parse_rate("2/s"), burst=1, clock=clock)
    finished: list[tuple[int, float]] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        finished.append((i, clock.monotonic()))

    await asyncio.gather(*(take(i) for i in range(5)))
    assert [i for i, _ in finished] == [0, 1, 2, 3, 4]  # first come, first served
    assert [t for _, t in finished] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_a_batch_larger_than_the_burst_borrows() -> None:
    clock = FakeClock()
    bucket = TokenBucket(parse_rate("100/s"), clock=clock)
    assert await bucket.acquire(500) == pytest.approx(4.0)  # 100 in hand, 400 owed
    assert bucket.delay_for(1) == pytest.approx(0.01)


async def test_slow_rates_space_messages_out() -> None:
    clock = FakeClock()
    bucket = TokenBucket(parse_rate("6/min"), clock=clock)
    await bucket.acquire()
    await bucket.acquire()
    assert clock.monotonic() == pytest.approx(10.0)


async def test_a_cancelled_waiter_gives_its_tokens_back() -> None:
    clock = FakeClock(auto_advance=False)
    bucket = TokenBucket(parse_rate("1/s"), clock=clock)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.tokens == pytest.approx(0.0)
    bucket.give_back()
    assert bucket.tokens == pytest.approx(1.0)
