"""Per-recipient-domain throttles with adaptive back-off (``domains:`` in campaign.yml).

Receiving providers limit senders per domain: Gmail, Yahoo and Microsoft
answer a sender going too fast with ``421 4.7.0 try again later`` or a
``4.7.x`` deferral. Such an answer says the *receiving domain* wants less, not
that the relay is down, so it slows only that domain: its gate is paused for
the back-off and its rate halved (down to a twentieth of the configured
rate), while mail to every other domain goes on at full speed. Each run of
answers accepted at the lowered rate wins a quarter of the rate back
(multiplicative decrease, gradual increase, as TCP does), so a domain that
recovers is sent to at its configured rate again within the run.

A gate exists per ``domains:`` rule (a pattern's domains share one) and, under
``default``, per recipient domain; domains without any rule get a gate only
once they answer with a throttle, and then only the pause (there is no rate
to lower). The gates live in one process: several workers on one store each
keep their own (the rate is per run).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.config.sending import DomainLimit, rule_for
from stampcli.delivery.throttle import TokenBucket
from stampcli.providers.base import Outcome, Result
from stampcli.render.message import Message

MIN_FACTOR = 0.05  # the rate is never lowered below a twentieth of the configured one
RECOVER_AFTER = 50  # answers accepted at a lowered rate before a step back up
_POLICY = re.compile(r"\b4\.7\.\d{1,3}\b")
_SMTP_THROTTLE = re.compile(r"^(?:RCPT TO|DATA|end of data): 421\b")


def domain_of(message: Message) -> str:
    return message.key.rsplit("@", 1)[-1]


def is_domain_throttle(result: Result) -> bool:
    """The answer is the receiving domain asking to slow down: a 4.7.x status on a
    throttled or deferred message, or an SMTP 421 to the recipient or its data."""
    if result.outcome not in (Outcome.THROTTLED, Outcome.RECIPIENT_DEFERRED):
        return False
    return bool(_POLICY.search(result.detail) or _SMTP_THROTTLE.match(result.detail))


@dataclass
class DomainGate:
    """One rule's (or one domain's) rate and pause."""

    name: str
    bucket: TokenBucket | None
    base_rate: float | None
    factor: float = 1.0
    paused_until: float = 0.0  # monotonic
    backoffs: int = 0  # throttles in a row, for the doubling back-off
    accepted: int = 0  # answers accepted since the last change of rate

    def set_factor(self, factor: float) -> None:
        self.factor = factor
        if self.bucket is not None and self.base_rate is not None:
            self.bucket.tokens  # noqa: B018 - refill at the old rate first
            self.bucket.per_second = self.base_rate * factor


class DomainThrottles:
    """The gates of one run: ``acquire`` before a send, ``answered`` after it."""

    def __init__(
        self,
        domains: dict[str, DomainLimit],
        *,
        clock: Clock = SYSTEM_CLOCK,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> None:
        self.domains = domains
        self.clock = clock
        self.backoff = max(backoff, 0.05)
        self.max_backoff = max_backoff
        self._gates: dict[str, DomainGate] = {}

    def gate(self, domain: str, *, create: bool = False) -> DomainGate | None:
        rule = rule_for(self.domains, domain)
        name = domain if rule in (None, "default") else rule
        found = self._gates.get(name)
        if found is None and (rule is not None or create):
            limit = self.domains[rule] if rule is not None else None
            rate = limit.rate if limit is not None else None
            bucket = TokenBucket(rate, clock=self.clock) if rate is not None else None
            found = DomainGate(name, bucket, rate.per_second if rate is not None else None)
            self._gates[name] = found
        return found

    async def acquire(self, messages: Sequence[Message]) -> None:
        """Wait until each message's domain may take it (pause, then rate tokens)."""
        counts = Counter(domain_of(m) for m in messages)
        waits = []
        for domain, n in counts.items():
            gate = self.gate(domain)
            if gate is not None:
                waits.append(self._wait(gate, n))
        if len(waits) == 1:
            await waits[0]
        elif waits:
            await asyncio.gather(*waits)

    async def _wait(self, gate: DomainGate, n: int) -> None:
        pause = gate.paused_until - self.clock.monotonic()
        if pause > 0:
            await self.clock.sleep(pause)
        if gate.bucket is not None:
            await gate.bucket.acquire(n)

    def answered(self, message: Message, result: Result) -> float | None:
        """Note ``result``; the seconds the domain is paused for when it asked to slow down."""
        domain = domain_of(message)
        if is_domain_throttle(result):
            gate = self.gate(domain, create=True)
            assert gate is not None
            gate.backoffs += 1
            gate.accepted = 0
            if result.retry_after is not None:
                wait = max(0.05, result.retry_after)
            else:
                wait = min(self.max_backoff, self.backoff * 2 ** (gate.backoffs - 1))
            gate.paused_until = max(gate.paused_until, self.clock.monotonic() + wait)
            gate.set_factor(max(MIN_FACTOR, gate.factor / 2))
            return wait
        if result.outcome is Outcome.ACCEPTED:
            gate = self._gates.get(self.gate_name(domain))
            if gate is not None:
                gate.backoffs = 0
                if gate.factor < 1.0:
                    gate.accepted += 1
                    if gate.accepted >= RECOVER_AFTER:
                        gate.accepted = 0
                        gate.set_factor(min(1.0, gate.factor + 0.25))
        return None

    def pause_left(self, message: Message) -> float:
        """Seconds until the message's domain may be sent to again (0: now)."""
        gate = self._gates.get(self.gate_name(domain_of(message)))
        return 0.0 if gate is None else max(0.0, gate.paused_until - self.clock.monotonic())

    def gate_name(self, domain: str) -> str:
        rule = rule_for(self.domains, domain)
        return domain if rule in (None, "default") else rule

    def states(self) -> dict[str, float]:
        """Each slowed gate's share of its configured rate (1.0 = full speed)."""
        return {name: g.factor for name, g in self._gates.items() if g.factor < 1.0}
