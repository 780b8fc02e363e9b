"""Pause a campaign whose hard bounces or spam complaints pass a share of the answers.

Mailbox providers judge a sender by these shares (Gmail and Yahoo want
complaints under 0.1% and never at 0.3%); a list that suddenly bounces or
annoys is better paused after a few hundred answers than mailed to the end.
The engine feeds every result to :meth:`AutoStop.observe`; the first time a
share reaches its threshold it gets a reason string back, records the pause
and refuses to go on until a person resumes the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass

from stampcli.config import AutoStopConfig
from stampcli.events.model import Reason
from stampcli.providers.base import Outcome, Result

# Outcomes that are a provider's verdict on a recipient. Throttling, a down or
# refusing provider and unknown outcomes say nothing about the list's quality.
_ANSWERS = frozenset({Outcome.ACCEPTED, Outcome.RECIPIENT_REJECTED, Outcome.RECIPIENT_DEFERRED})
_HARD_BOUNCE = frozenset({Reason.HARD_BOUNCE, Reason.INVALID})


@dataclass(frozen=True, slots=True)
class AutoStopStats:
    answers: int
    hard_bounces: int
    complaints: int

    @property
    def hard_bounce_share(self) -> float:
        return self.hard_bounces / self.answers if self.answers else 0.0

    @property
    def complaint_share(self) -> float:
        return self.complaints / self.answers if self.answers else 0.0


class AutoStop:
    """Counts answers, hard bounces and complaints; says once when to stop."""

    def __init__(self, config: AutoStopConfig) -> None:
        self.config = config
        self.answers = 0
        self.hard_bounces = 0
        self.complaints = 0
        self.reason: str | None = None  # set once tripped

    def seed(self, answers: int, hard_bounces: int, complaints: int) -> None:
        """Start from earlier runs' counts, so that small cron runs add up to a verdict."""
        self.answers += answers
        self.hard_bounces += hard_bounces
        self.complaints += complaints

    @property
    def stats(self) -> AutoStopStats:
        return AutoStopStats(self.answers, self.hard_bounces, self.complaints)

    def observe(self, result: Result) -> str | None:
        """Count ``result``; the reason to stop the first time a threshold is reached."""
        if result.outcome not in _ANSWERS:
            return None
        self.answers += 1
        if result.outcome is Outcome.RECIPIENT_REJECTED:
            if result.suppress in _HARD_BOUNCE:
                self.hard_bounces += 1
            elif result.suppress == Reason.COMPLAINT:
                self.complaints += 1
        if self.reason is not None:
            return None
        return self.verdict()

    def verdict(self) -> str | None:
        """The reason to stop if the counts so far reach a threshold (remembered), else None.

        Also what the event side calls (``service.events``), seeded from the store.
        """
        if self.reason is not None or not self.config.enabled:
            return self.reason
        if self.answers < self.config.min_answers:
            return None
        # Complaints first: they hurt a sender's reputation most.
        if self.complaints and self.complaints / self.answers >= self.config.complaint_rate:
            self.reason = self._say("spam complaints", self.complaints, self.config.complaint_rate)
        elif self.hard_bounces and (
            self.hard_bounces / self.answers >= self.config.hard_bounce_rate
        ):
            self.reason = self._say("hard bounces", self.hard_bounces, self.config.hard_bounce_rate)
        return self.reason

    def _say(self, what: str, count: int, limit: float) -> str:
        share = count / self.answers
        return (
            f"{what} reached {share:.2%} ({count} of {self.answers} answers), "
            f"at or over the auto_stop limit of {limit:.2%}"
        )
