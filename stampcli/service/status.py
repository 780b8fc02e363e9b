"""Status and reports from the ledger, as plain data the CLI prints or dumps as JSON.

``campaign_status`` answers "where is this campaign?": recipients by state and
by provider, the latest errors, who holds the lock, whether it is paused, how
the last run ended (with the provider states it saw), when a run died, how
many of the rows it left ``unknown`` can in fact have gone out, and what the
providers' delivery events said (counts and rates, see :func:`event_summary`).
Everything is read in one pass over a read-only store; nothing here prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stampcli.config import Campaign
from stampcli.delivery.crashwindow import CrashWindow, crash_window
from stampcli.delivery.planner import segment_errors
from stampcli.delivery.warmup import cap_today, warmup_label
from stampcli.store import ledger, locks
from stampcli.store.db import now
from stampcli.store.location import DbArg, StoreChoice, for_campaign
from stampcli.store.protocols import Store
from stampcli.store.quota import utc_day


@dataclass(frozen=True, slots=True)
class LockStatus:
    owner: str
    heartbeat_age: float  # seconds since the holder's last heartbeat
    stale: str | None  # why it would be taken over, or None while it looks alive


RUN_STATES = ("ended", "running", "died")


@dataclass(frozen=True, slots=True)
class LastRun:
    started_at: float
    ended_at: float | None  # None: still running, or died
    exit_code: int | None  # None: not ended, or run by a caller that keeps no exit codes
    reason: str | None
    providers: list[dict[str, Any]] = field(default_factory=list)
    # ended (it recorded its end), running (not ended, its lock is alive), died (neither)
    state: str = "ended"


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    campaign: str
    exists: bool  # False: the campaign has never been planned in this store
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    per_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    last_errors: list[dict[str, Any]] = field(default_factory=list)
    lock: LockStatus | None = None
    paused_reason: str | None = None
    paused_at: float | None = None
    last_run: LastRun | None = None
    # delivery events: counts by type (opened/clicked also ``_unique``), and rates
    events: dict[str, int] = field(default_factory=dict)
    event_rates: dict[str, float] = field(default_factory=dict)
    crash: CrashWindow | None = None  # rows dead runs left in doubt, and how many went out
    # rows the segment could not evaluate (left out) when the audience was last planned
    segment_errors: int = 0
    first_segment_error: str | None = None
    # warmup: the day's cap and what every run used of it ({label, day, cap, used})
    warmup: list[dict[str, Any]] = field(default_factory=list)

    @property
    def left(self) -> int:
        """Recipients still to attempt (pending, deferred, or in flight)."""
        c = self.counts
        return c.get(ledger.PENDING, 0) + c.get(ledger.DEFERRED, 0) + c.get(ledger.SENDING, 0)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["left"] = self.left
        data["crash"] = None if self.crash is None else self.crash.as_dict()
        return data


# what status shows of the events (store.events.counts has more)
EVENT_COUNTS = (
    "delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed", "opened",
    "opened_unique", "clicked", "clicked_unique", "deferred", "rejected", "dropped",
    "auto_replied", "opened_machine", "clicked_machine",
)  # fmt: skip
# rate name -> the distinct recipients it counts; each is a share of the messages sent
_RATES = {
    "delivered": "delivered_unique",
    "bounced_hard": "bounced_hard_unique",
    "bounced_soft": "bounced_soft_unique",
    "complained": "complained_unique",
    "unsubscribed": "unsubscribed_unique",
    "opened": "opened_unique",
    "clicked": "clicked_unique",
}


def event_summary(counts: dict[str, int], sent: int) -> tuple[dict[str, int], dict[str, float]]:
    """(counts, rates) for status from ``store.events.counts``: a rate is the share of the
    ``sent`` messages with at least one such event (0.0 while nothing was sent)."""
    shown = {name: counts.get(name, 0) for name in EVENT_COUNTS}
    rates = {
        name: round(counts.get(unique, 0) / sent, 4) if sent else 0.0
        for name, unique in _RATES.items()
    }
    return shown, rates


def campaign_status(
    store: Store, name: str, *, errors: int = 10, campaign: Campaign | None = None
) -> CampaignStatus:
    """The campaign's state as recorded in the store (``campaign``: for the crash window)."""
    row = store.campaigns.get(name)
    if row is None:
        return CampaignStatus(name, exists=False)
    counts = store.ledger.counts(row.id)
    held = store.locks.holder(row.id)
    lock = None
    if held is not None:
        at = now()
        lock = LockStatus(held.owner, at - held.heartbeat_at, locks.stale_reason(held, at=at))
    last = store.runs.last(row.id)
    last_run = None
    if last is not None:
        summary = last.summary or {}
        # a run's end is its ended_at (and reason), not its exit code: a library run
        # records no exit code, and has ended all the same
        if last.ended_at is not None:
            state = "ended"
        else:
            state = "running" if lock is not None and lock.stale is None else "died"
        last_run = LastRun(
            last.started_at,
            last.ended_at,
            last.exit_code,
            summary.get("reason"),
            list(summary.get("providers") or []),
            state,
        )
    seg_errors, first_seg_error = segment_errors(store, row.id)
    events, rates = event_summary(store.events.counts(row.id), counts.get(ledger.SENT, 0))
    crash = None
    if campaign is not None:
        # `sending` rows with no live run holding the lock were left by one that died
        dead = lock is None or lock.stale is not None
        crash = crash_window(
            store, row.id, campaign, still_sending=counts[ledger.SENDING] if dead else 0
        )
    return CampaignStatus(
        campaign=name,
        exists=True,
        total=sum(counts.values()),
        counts=counts,
        per_provider=store.ledger.provider_counts(row.id),
        last_errors=[asdict(e) for e in store.ledger.last_errors(row.id, errors)],
        lock=lock,
        paused_reason=row.paused_reason,
        paused_at=row.paused_at,
        last_run=last_run,
        events=events,
        event_rates=rates,
        crash=crash,
        segment_errors=seg_errors,
        first_segment_error=first_seg_error,
        warmup=warmup_usage(store, campaign) if campaign is not None else [],
    )


def warmup_usage(store: Store, campaign: Campaign) -> list[dict[str, Any]]:
    """The warm-up caps of today (UTC) and how much of each every run has used."""
    schedule = campaign.warmup
    if schedule is None:
        return []
    day = utc_day(now())
    labels = dict.fromkeys(warmup_label(campaign, p.label) for p in campaign.providers)
    return [
        {
            "label": label,
            "day": day,
            "cap": cap_today(schedule, day),
            "used": store.quota.usage(label, day),
        }
        for label in labels
    ]


def status_of(campaign: Campaign, db: DbArg = None) -> tuple[CampaignStatus, StoreChoice]:
    """``campaign``'s status from its store (``db``, else the campaign's own), and that store.

    A store that does not exist yet is not created: the campaign was never planned.
    """
    choice = for_campaign(campaign, db)
    if not choice.exists:
        return CampaignStatus(campaign.name, exists=False), choice
    with choice.open(readonly=True) as store:
        return campaign_status(store, campaign.name, campaign=campaign), choice
