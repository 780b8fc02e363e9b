"""The circuit breaker: when it opens, how it probes, what never counts."""

from __future__ import annotations

from stampcli.clock import FakeClock
from stampcli.delivery.breaker import CLOSED, HALF_OPEN, OPEN, REFUSED, CircuitBreaker
from stampcli.providers.base import Outcome


def breaker(clock: FakeClock) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(clock=clock, on_change=lambda s, r: changes.append((s, r)))
    return b, changes


def test_opens_after_five_consecutive_downs() -> None:
    b, changes = breaker(FakeClock(auto_advance=False))
    for _ in range(4):
        b.record(Outcome.PROVIDER_DOWN, "connect refused")
    assert b.state == CLOSED
    b.record(Outcome.PROVIDER_DOWN, "connect refused")
    assert b.state == OPEN
    assert not b.allow()
    assert changes == [(OPEN, "5 provider-down answers in a row: connect refused")]


def test_a_success_resets_the_streak() -> None:
    b, _ = breaker(FakeClock(auto_advance=False))
    for _ in range(4):
        b.record(Outcome.PROVIDER_DOWN)
    b.record(Outcome.ACCEPTED)
    for _ in range(4):
        b.record(Outcome.PROVIDER_DOWN)
    assert b.state == CLOSED


def test_opens_on_half_of_a_window_of_twenty() -> None:
    b, _ = breaker(FakeClock(auto_advance=False))
    # alternate: never 5 in a row, but 50% over 20 calls
    for i in range(19):
        b.record(Outcome.PROVIDER_DOWN if i % 2 == 0 else Outcome.ACCEPTED)
    assert b.state == CLOSED  # 10 of 19: the window is not full yet
    b.record(Outcome.ACCEPTED)
    assert b.state == CLOSED  # 10 of 20, but the last answer was fine
    b.record(Outcome.PROVIDER_DOWN)
    assert b.state == OPEN


def test_old_answers_leave_the_window() -> None:
    clock = FakeClock(auto_advance=False)
    b, _ = breaker(clock)
    for i in range(18):
        b.record(Outcome.PROVIDER_DOWN if i % 2 == 0 else Outcome.ACCEPTED)
    clock.advance(120)  # the window is 60 s
    for i in range(3):
        b.record(Outcome.PROVIDER_DOWN if i % 2 == 0 else Outcome.ACCEPTED)
    assert b.state == CLOSED


def test_throttling_and_recipient_answers_never_count() -> None:
    b, _ = breaker(FakeClock(auto_advance=False))
    for _ in range(50):
        b.record(Outcome.THROTTLED)
        b.record(Outcome.RECIPIENT_REJECTED)
        b.record(Outcome.RECIPIENT_DEFERRED)
    assert b.state == CLOSED
    for _ in range(4):
        b.record(Outcome.PROVIDER_DOWN)
        b.record(Outcome.THROTTLED)  # does not break the streak either
    b.record(Outcome.PROVIDER_DOWN)
    assert b.state == OPEN


def test_exactly_one_probe_after_the_cool_down_then_close() -> None:
    clock = FakeClock(auto_advance=False)
    b, changes = breaker(clock)
    for _ in range(5):
        b.record(Outcome.PROVIDER_DOWN)
    clock.advance(29.9)
    assert not b.allow()
    assert b.retry_at == 30.0
    clock.advance(0.1)
    assert b.available()
    assert b.allow()  # the probe
    assert b.state == HALF_OPEN
    assert not b.allow()  # nobody else while it is out
    b.record(Outcome.ACCEPTED, probe=True)
    assert b.state == CLOSED
    assert b.allow() and b.allow()
    assert [s for s, _ in changes] == [OPEN, HALF_OPEN, CLOSED]


def test_failed_probes_double_the_cool_down_up_to_the_cap() -> None:
    clock = FakeClock(auto_advance=False)
    b, _ = breaker(clock)
    for _ in range(5):
        b.record(Outcome.PROVIDER_DOWN)
    waits = []
    for _ in range(6):
        retry = b.retry_at
        assert retry is not None
        waits.append(retry - clock.monotonic())
        clock.advance(waits[-1])
        assert b.allow()
        b.record(Outcome.PROVIDER_DOWN, probe=True)
        assert b.state == OPEN
    assert waits == [30, 60, 120, 240, 300, 300]
    assert b.down_since == 0.0  # the outage began with the first opening


def test_a_throttled_or_abandoned_probe_lets_another_probe() -> None:
    clock = FakeClock(auto_advance=False)
    b, _ = breaker(clock)
    for _ in range(5):
        b.record(Outcome.PROVIDER_DOWN)
    clock.advance(30)
    assert b.allow()
    b.record(Outcome.THROTTLED, probe=True)
    assert b.state == HALF_OPEN
    assert b.allow()
    b.release()
    assert b.allow()
    b.record(Outcome.RECIPIENT_REJECTED, probe=True)
    assert b.state == CLOSED


def test_late_answers_while_open_do_not_decide() -> None:
    clock = FakeClock(auto_advance=False)
    b, _ = breaker(clock)
    for _ in range(5):
        b.record(Outcome.PROVIDER_DOWN)
    b.record(Outcome.ACCEPTED)  # sent before it opened
    assert b.state == OPEN


def test_refused_is_for_the_rest_of_the_run() -> None:
    clock = FakeClock(auto_advance=False)
    b, changes = breaker(clock)
    b.record(Outcome.PROVIDER_REFUSED, "535 authentication failed")
    assert b.state == REFUSED
    clock.advance(10_000)
    assert not b.allow()
    b.record(Outcome.ACCEPTED)
    assert b.state == REFUSED
    assert changes == [(REFUSED, "535 authentication failed")]
