"""Warm-up caps (``warmup:``): a daily limit that grows while a new domain or IP warms up.

A :class:`WarmupQuota` is a :class:`~stampcli.store.quota.DailyQuota` whose
limit is the schedule's cap for the current UTC day
(:meth:`stampcli.config.sending.WarmupConfig.cap`), counted in the store's
``quota_usage`` table under ``warmup:<From domain>`` (``scope: domain``: every
provider and every campaign from that domain together) or
``warmup:<provider label>`` (``scope: provider``). So the cap holds across
runs, cron ticks and processes on both store backends, and ``stamp status``
reads what was used. Once the schedule ends there is no cap.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.config.sending import WarmupConfig
from stampcli.store.quota import DailyQuota, utc_day

if TYPE_CHECKING:
    from stampcli.config import Campaign
    from stampcli.store import protocols

UNCAPPED = 2**62  # past the schedule: a limit nothing reaches


def warmup_label(campaign: Campaign, provider: str | None = None) -> str:
    """The quota_usage key of ``campaign``'s warm-up (for a provider under scope: provider)."""
    if campaign.warmup is not None and campaign.warmup.scope == "provider" and provider:
        return f"warmup:{provider}"
    return f"warmup:{campaign.sender_domain}"


def cap_today(schedule: WarmupConfig, day: str) -> int | None:
    return schedule.cap(dt.date.fromisoformat(day))


class WarmupQuota(DailyQuota):
    """Permits under the warm-up cap of the day; the limit moves at UTC midnight."""

    def __init__(
        self,
        label: str,
        schedule: WarmupConfig,
        store: protocols.Store | None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.schedule = schedule
        cap = cap_today(schedule, utc_day(clock.time()))
        super().__init__(label, UNCAPPED if cap is None else cap, store, clock=clock)
        self._set_limit()

    def _set_limit(self) -> None:
        cap = cap_today(self.schedule, self.day)
        self.cap = cap
        self.limit = UNCAPPED if cap is None else cap
        self.chunk = max(1, min(50, self.limit // 20))

    def _roll(self) -> None:
        before = self.day
        super()._roll()
        if self.day != before:
            self._set_limit()
