"""Per-recipient-domain throttles (``domains:``) and the adaptive back-off of a throttling domain.

Time is the project's FakeClock (no real sleeps) for the scripted adapter;
the last test goes through the real SMTP adapter to the local aiosmtpd,
which answers ``421 4.7.0`` for one domain's recipients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from smtp_server import SMTPTestServer

from stampcli.clock import FakeClock
from stampcli.config import Campaign, ProviderConfig
from stampcli.delivery.domains import RECOVER_AFTER, DomainThrottles, is_domain_throttle
from stampcli.delivery.router import Router
from stampcli.errors import ConfigError
from stampcli.providers import create_adapter
from stampcli.providers.base import Adapter, CheckReport, Outcome, Result
from stampcli.render.message import Message


def campaign(domains: dict[str, Any], **throttle: Any) -> Campaign:
    return Campaign.model_validate(
        {
            "name": "c",
            "from": "news@acme.test",
            "subject": "s",
            "template": "t.html",
            "audience": {"list": "l"},
            "providers": [{"url": "outbox://x"}],
            "domains": domains,
            "throttle": throttle,
        }
    )


def message(to: str) -> Message:
    return Message(
        campaign="c",
        key=to,
        recipient=to,
        sender="news@acme.test",
        message_id=f"<{to}>",
        from_header="news@acme.test",
        to_header=to,
        subject="s",
        html="<p>x</p>",
        text="x",
        raw=f"To: {to}\r\nSubject: s\r\n\r\nx\r\n".encode(),
    )


class Timed(Adapter):
    """Records when each recipient was sent (virtual time); throttles some domains."""

    scheme: ClassVar[str] = "outbox"

    def __init__(self, clock: FakeClock, throttle: dict[str, int] | None = None) -> None:
        super().__init__(ProviderConfig.model_validate({"url": "outbox://x", "name": "a"}))
        self.clock = clock
        self.throttle = dict(throttle or {})  # domain -> how many more 421s it answers
        self.sent: dict[str, float] = {}
        self.tries: list[str] = []

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        await asyncio.sleep(0)
        out = []
        for m in messages:
            domain = m.key.rsplit("@", 1)[1]
            self.tries.append(m.key)
            if self.throttle.get(domain, 0) > 0:
                self.throttle[domain] -= 1
                out.append(Result(Outcome.THROTTLED, detail="RCPT TO: 421 4.7.0 slow down"))
            else:
                self.sent[m.key] = self.clock.monotonic()
                out.append(Result(Outcome.ACCEPTED))
        return out

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True)


async def send_all(r: Router, keys: list[str]) -> list[Any]:
    async with r:
        return list(await asyncio.gather(*(r.send(message(k)) for k in keys)))


async def test_each_domain_keeps_its_own_rate() -> None:
    clock = FakeClock()
    adapter = Timed(clock)
    domains = {"gmail.test": {"rate": "2/s"}, "*.yahoo.*": {"rate": "1/s"}}
    r = Router(campaign(domains), adapters=[adapter], clock=clock)
    gmail = [f"g{i}@gmail.test" for i in range(6)]
    yahoo = ["y1@yahoo.test", "y2@mail.yahoo.co.uk", "y3@yahoo.test"]  # one shared gate
    other = [f"o{i}@other.test" for i in range(20)]
    await send_all(r, gmail + yahoo + other)
    assert all(adapter.sent[k] == 0.0 for k in other)  # no rule: never waits
    times = sorted(adapter.sent[k] for k in gmail)
    assert times[-1] == pytest.approx(2.0)  # 2 in the burst, then 2 a second
    assert sorted(adapter.sent[k] for k in yahoo) == pytest.approx([0.0, 1.0, 2.0])


async def test_default_gives_each_other_domain_its_own_gate() -> None:
    clock = FakeClock()
    adapter = Timed(clock)
    r = Router(campaign({"default": {"rate": "1/s"}}), adapters=[adapter], clock=clock)
    keys = ["a1@a.test", "a2@a.test", "b1@b.test", "b2@b.test"]
    await send_all(r, keys)
    assert sorted(adapter.sent.values()) == pytest.approx([0.0, 0.0, 1.0, 1.0])


async def test_a_throttling_domain_slows_only_itself() -> None:
    clock = FakeClock()
    adapter = Timed(clock, throttle={"gmail.test": 2})
    r = Router(
        campaign({"gmail.test": {"rate": "10/s"}}, backoff="1s"), adapters=[adapter], clock=clock
    )
    other = [f"o{i}@other.test" for i in range(10)]
    out = await send_all(r, ["g0@gmail.test", *other])
    assert all(d.result.outcome is Outcome.ACCEPTED for d in out)
    assert all(adapter.sent[k] == 0.0 for k in other)  # the provider was never paused
    assert adapter.sent["g0@gmail.test"] == pytest.approx(3.0)  # 1 s, then 2 s of back-off
    assert r.states()[0].state == "closed"
    gate = r.domains.gate("gmail.test")
    assert gate is not None and gate.factor == pytest.approx(0.25)  # halved twice
    assert gate.bucket is not None and gate.bucket.per_second == pytest.approx(2.5)


async def test_past_the_wait_limit_the_row_is_deferred_not_failed_over() -> None:
    clock = FakeClock()
    adapter = Timed(clock, throttle={"gmail.test": 100})
    spare = Timed(clock)
    r = Router(campaign({}, backoff="10s"), adapters=[adapter, spare], clock=clock)
    [d] = await send_all(r, ["g0@gmail.test"])
    assert d.result.outcome is Outcome.RECIPIENT_DEFERRED
    assert "gmail.test asks to slow down" in d.result.detail
    assert spare.tries == []  # no failover: the other provider meets the same domain


def test_the_rate_comes_back_after_accepted_answers() -> None:
    clock = FakeClock()
    throttles = DomainThrottles({"gmail.test": _limit("8/s")}, clock=clock)
    m = message("g@gmail.test")
    throttles.answered(m, Result(Outcome.RECIPIENT_DEFERRED, detail="RCPT TO: 450 4.7.1 later"))
    gate = throttles.gate("gmail.test")
    assert gate is not None and gate.factor == 0.5
    for _ in range(RECOVER_AFTER):
        throttles.answered(m, Result(Outcome.ACCEPTED))
    assert gate.factor == 0.75
    for _ in range(RECOVER_AFTER):
        throttles.answered(m, Result(Outcome.ACCEPTED))
    assert gate.factor == 1.0 and gate.bucket is not None and gate.bucket.per_second == 8.0


def _limit(rate: str) -> Any:
    from stampcli.config.sending import DomainLimit

    return DomainLimit.model_validate({"rate": rate})


@pytest.mark.parametrize(
    ("detail", "outcome", "domain"),
    [
        ("RCPT TO: 421 4.7.0 try later", Outcome.THROTTLED, True),
        ("end of data: 421 too fast", Outcome.THROTTLED, True),
        ("RCPT TO: 451 4.7.1 greylisted", Outcome.RECIPIENT_DEFERRED, True),
        ("MAIL FROM: 421 4.3.2 closing", Outcome.THROTTLED, False),  # the relay, not a domain
        ("429 too many requests", Outcome.THROTTLED, False),
        ("RCPT TO: 452 4.2.2 mailbox full", Outcome.RECIPIENT_DEFERRED, False),
    ],
)
def test_what_counts_as_a_domain_throttle(detail: str, outcome: Outcome, domain: bool) -> None:
    assert is_domain_throttle(Result(outcome, detail=detail)) is domain


def test_bad_domain_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="'gmail' is not a domain"):
        campaign({"gmail": {"rate": "1/s"}})
    with pytest.raises(ValueError, match="rate"):
        campaign({"gmail.com": {"rate": "fast"}})


def test_bad_domains_in_a_file_name_the_key(tmp_path: Any) -> None:
    from stampcli.config import load_campaign

    (tmp_path / "t.html").write_text("<p>x</p>")
    (tmp_path / "l.csv").write_text("email\na@x.test\n")
    (tmp_path / "c.yml").write_text(
        "name: c\nfrom: n@acme.test\nsubject: s\ntemplate: t.html\ntransactional: true\n"
        "audience: {file: l.csv}\nproviders: [{url: 'outbox://o'}]\n"
        "domains:\n  gmail.com: {rate: 20/s, burst: 3}\n"
    )
    with pytest.raises(ConfigError, match=r"c.yml:9: domains.gmail.com.burst: unknown key"):
        load_campaign(tmp_path / "c.yml")


async def test_a_421_from_one_domain_over_real_smtp() -> None:
    with SMTPTestServer(tls="none") as server:
        server.on_rcpt("g0@gmail.test", "421 4.7.0 Try again later, closing connection", times=1)
        relay = create_adapter(ProviderConfig(url=server.url(ehlo="t"), name="relay"))
        clock = FakeClock()
        r = Router(campaign({}, backoff="1s"), adapters=[relay], clock=clock)
        async with r:
            first = await r.send(message("g0@gmail.test"))
            other = await r.send(message("o0@other.test"))
        assert (first.result.outcome, other.result.outcome) == (Outcome.ACCEPTED,) * 2
        assert server.count("g0@gmail.test") == 1 and server.count("o0@other.test") == 1
    assert r.domains.states() == {"gmail.test": 0.5}
