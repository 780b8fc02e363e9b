"""Status and reports from the ledger, as plain data the CLI prints or dumps as JSON.

``campaign_status`` answers "where is this campaign?": recipients by state and
by provider, the latest errors, who holds the lock, whether it is paused, and
how the last run ended (with the provider states it saw), and, when a run
died, how many of the rows it left ``unknown`` can in fact have gone out.
Everything is read in one pass over a read-only store; nothing here prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stampcli.config import Campaign
from stampcli.delivery.crashwindow import CrashWindow, crash_window
from stampcli.store import ledger, locks
from stampcli.store.db import now
from stampcli.store.protocols import Store


@dataclass(frozen=True, slots=True)
class LockStatus:
    owner: str
    heartbeat_age: float  # seconds since the holder's last heartbeat
    stale: str | None  # why it would be taken over, or None while it looks alive


@dataclass(frozen=True, slots=True)
class LastRun:
    started_at: float
    ended_at: float | None
    exit_code: int | None  # None: still running, or died
    reason: str | None
    providers: list[dict[str, Any]] = field(default_factory=list)


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
    crash: CrashWindow | None = None  # rows dead runs left in doubt, and how many went out

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
        last_run = LastRun(
            last.started_at,
            last.ended_at,
            last.exit_code,
            summary.get("reason"),
            list(summary.get("providers") or []),
        )
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
        crash=crash,
    )
