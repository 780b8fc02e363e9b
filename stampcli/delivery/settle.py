"""What one provider answer means for a recipient's row: a decision, nothing done.

:func:`settle` maps an answer (``Result``) to a :class:`Record` (write this
fate: sent, failed, unknown, deferred until a time, or back to pending) or a
:class:`RetryAfter` (send again in this run after a backoff), and says when the
answer shows that no provider takes messages any more (``halt``). It is pure:
it reads its arguments only and never calls back into the send loop, which
carries the decision out (``stampcli.delivery.engine``).

The retry rules: a transient answer (provider down, refused, throttled,
recipient deferral) is retried up to ``throttle.retries`` times in the run with
exponential backoff and jitter (at least the provider's ``Retry-After``). After
that, a provider-down or refused answer leaves the row ``pending`` (certainly
not accepted, not the recipient's fault: due again next run), and a recipient
deferral defers the row (retried by a later run after at least a minute) until
``throttle.expire_after`` since its first attempt, when it fails as expired.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from stampcli import redact
from stampcli.config import Campaign
from stampcli.providers.base import Outcome, Result
from stampcli.store import ledger
from stampcli.store.db import now
from stampcli.store.suppressions import Suppression

DOWN = frozenset({Outcome.PROVIDER_DOWN, Outcome.PROVIDER_REFUSED})  # no provider took it
DEFER_AT_LEAST = 60.0  # seconds before a deferred row is due again
ALL_DOWN = "every provider is down; no more messages are sent"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A campaign's ``throttle`` retry settings."""

    retries: int  # sends again within one run after a transient answer
    backoff: float  # seconds before the first retry; doubled for each next one
    expire_after: float  # seconds after the first attempt a deferred row fails

    @classmethod
    def of(cls, campaign: Campaign) -> RetryPolicy:
        t = campaign.throttle
        return cls(t.retries, t.backoff, t.expire_after)

    def backoff_for(
        self,
        tries: int,
        retry_after: float | None,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> float:
        base = self.backoff * (2.0 ** (tries - 1))
        delay = base * jitter(0.5, 1.5)  # jitter: retries of a batch spread out
        return max(delay, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class Record:
    """Write ``outcome`` to the row; ``halt``: no provider takes messages (why)."""

    outcome: ledger.Outcome
    suppress: Suppression | None = None  # add with the fate (hard bounce, complaint)
    halt: str | None = None


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Send the message again in ``delay`` seconds; ``down``: no provider took it."""

    delay: float
    down: bool


Decision = Record | RetryAfter


def clean(text: str) -> str:
    """Provider or render text fit for the ledger: secrets out, one line, bounded."""
    return redact.redact(" ".join(text.split()))[:500]


def settle(
    row: ledger.PendingRow,
    tries: int,
    result: Result,
    label: str | None,
    policy: RetryPolicy,
    *,
    all_down: bool,
    stopping: bool,
    everyone_down: bool,
) -> Decision:
    """The decision for ``row`` after its ``tries``-th send answered ``result``.

    ``label``: the provider that answered (None: none could be tried). ``all_down``:
    the run already knows no provider takes messages; ``stopping``: the run claims
    no more; ``everyone_down``: the router says every provider is down now (asked
    only for a provider-down or refused answer).
    """
    outcome = result.outcome
    extra = tries - 1
    if outcome is Outcome.ACCEPTED:
        return Record(
            ledger.Outcome(
                row.id,
                ledger.SENT,
                provider=label,
                provider_message_id=result.message_id,
                extra_attempts=extra,
            )
        )
    detail = clean(result.detail) or outcome.value
    if outcome is Outcome.RECIPIENT_REJECTED:
        fate = ledger.Outcome(
            row.id, ledger.FAILED, provider=label, last_error=detail, extra_attempts=extra
        )
        suppress = None
        if result.suppress and label:
            suppress = Suppression(row.key, result.suppress, label, detail=detail)
        return Record(fate, suppress)
    if outcome is Outcome.UNKNOWN:
        return Record(
            ledger.Outcome(
                row.id, ledger.UNKNOWN, provider=label, last_error=detail, extra_attempts=extra
            )
        )
    down = outcome in DOWN
    halt = None
    if down and everyone_down and not all_down:
        halt, all_down, stopping = ALL_DOWN, True, True
    if tries <= policy.retries and not stopping:
        return RetryAfter(policy.backoff_for(tries, result.retry_after), down)
    decision = give_up(row, tries, result, label, policy, all_down=all_down, stopping=stopping)
    if halt is not None:
        return Record(decision.outcome, decision.suppress, halt)
    return decision


def give_up(
    row: ledger.PendingRow,
    tries: int,
    result: Result,
    label: str | None,
    policy: RetryPolicy,
    *,
    all_down: bool,
    stopping: bool,
    at: float | None = None,
) -> Record:
    """No more tries this run for a transient answer: pending, deferred or expired."""
    detail = clean(result.detail) or result.outcome.value
    if result.outcome in DOWN:
        # certainly not accepted, and not the recipient's fault: due again next run
        fate = ledger.Outcome(row.id, ledger.PENDING, last_error=detail, extra_attempts=tries - 1)
        halt = None if all_down or stopping else f"no provider takes messages: {detail}"
        return Record(fate, halt=halt)
    at = now() if at is None else at
    first = row.first_attempt_at or at
    if at - first >= policy.expire_after:
        return Record(
            ledger.Outcome(
                row.id,
                ledger.FAILED,
                provider=label,
                last_error=f"expired: {detail}",
                extra_attempts=tries - 1,
            )
        )
    due = at + max(policy.backoff_for(tries + 1, None), DEFER_AT_LEAST)
    return Record(
        ledger.Outcome(
            row.id,
            ledger.DEFERRED,
            provider=label,
            last_error=detail,
            next_attempt_at=due,
            extra_attempts=max(tries - 1, 0),
        )
    )
