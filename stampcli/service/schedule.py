"""Schedules as use cases: what is due when (``stamp schedule list``), due campaigns for a
worker, and the manual A/B winner (``stamp schedule winner``).

Reads the ``schedules`` table each real run writes (``stampcli.schedule.state``):
every campaign that ran from this store, with its state and next due time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stampcli.clock import SYSTEM_CLOCK, Clock
from stampcli.config import Campaign
from stampcli.records import ScheduleRow
from stampcli.schedule.state import DONE, choose_winner, iso
from stampcli.store.location import DbArg, StoreChoice, for_campaign
from stampcli.store.protocols import Store as StoreLike


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One campaign's line in ``stamp schedule list``."""

    campaign: str
    state: str
    next_due_at: float | None
    due_now: bool
    file: str | None
    left: int  # rows a later run still sends (pending, deferred, sending)
    ab_winner: str | None
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "state": self.state,
            "next_due_at": iso(self.next_due_at),
            "due_now": self.due_now,
            "file": self.file,
            "left": self.left,
            "ab_winner": self.ab_winner,
            "updated_at": iso(self.updated_at),
        }


def _entry(store: StoreLike, row: ScheduleRow, now: float) -> ScheduleEntry:
    counts = store.ledger.counts(row.campaign_id)
    left = counts.get("pending", 0) + counts.get("deferred", 0) + counts.get("sending", 0)
    ab = row.detail.get("ab") or {}
    due = row.state != DONE and row.next_due_at is not None and row.next_due_at <= now
    return ScheduleEntry(
        row.campaign, row.state, row.next_due_at, due, row.file, left, ab.get("winner"),
        row.updated_at,
    )  # fmt: skip


def schedule_list(store: StoreLike, clock: Clock = SYSTEM_CLOCK) -> list[ScheduleEntry]:
    """Every campaign that ran from ``store``, soonest due first, finished ones last."""
    now = clock.time()
    # dry runs keep their own ledger and never a schedule row, so none shows here
    return [_entry(store, row, now) for row in store.schedules.all()]


def due_campaigns(store: StoreLike, clock: Clock = SYSTEM_CLOCK) -> list[ScheduleRow]:
    """The campaigns a worker should run now (their file is ``row.file``)."""
    return store.schedules.due(clock.time())


def list_from(choice: StoreChoice, clock: Clock = SYSTEM_CLOCK) -> list[ScheduleEntry]:
    """:func:`schedule_list` of the store ``choice`` names (none yet: an empty list)."""
    if not choice.exists:
        return []
    with choice.open(readonly=True) as store:
        return schedule_list(store, clock)


def set_winner(
    campaign: Campaign, variant: str, db: DbArg = None, clock: Clock = SYSTEM_CLOCK
) -> dict[str, Any]:
    """Choose the A/B winner by hand; the next run sends it to the rest."""
    with for_campaign(campaign, db).open() as store:
        return choose_winner(campaign, store, variant, clock.time())
