"""A campaign's schedule state in the store: the A/B phase, and what a run leaves behind.

Every real run ends by :func:`record` (state and next due time, for ``stamp
schedule list`` and for workers picking due campaigns with
``store.schedules.due(now)``). :func:`ab_phase` works out where an A/B test
stands at the start of a run and moves it on: the test share is sending; it
has finished (the wait starts then, once); the wait is over (the winner is
chosen from the events, and recorded with its figures). :func:`choose_winner`
is the manual override.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from stampcli.config import Campaign
from stampcli.errors import ConfigError
from stampcli.records import ScheduleRow
from stampcli.schedule import ab as ab_rules
from stampcli.schedule.gate import TESTING, WAITING, WINNER, Survey
from stampcli.store import ledger
from stampcli.store.protocols import Store

# what a campaign's row says: nothing sent yet and not due; due now (or a run is at it);
# waiting for recipients' hours or the next window; A/B test done, the winner not yet
# due; nothing left to send
SCHEDULED, DUE, WAITING_WINDOW, AB_WAITING, DONE = (
    "scheduled", "due", "waiting", "ab_waiting", "done",
)  # fmt: skip
STATES = (SCHEDULED, DUE, WAITING_WINDOW, AB_WAITING, DONE)
_OPEN = (ledger.PENDING, ledger.DEFERRED, ledger.SENDING)


def iso(ts: float | None) -> str | None:
    """An instant as ISO 8601 in UTC (how JSON output and the store's detail show it)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def current(store: Store, campaign_id: int) -> ScheduleRow:
    return store.schedules.get(campaign_id) or ScheduleRow(campaign_id, SCHEDULED)


@dataclass(frozen=True, slots=True)
class Phase:
    """Where the A/B test stands: ``phase`` (gate.TESTING / WAITING / WINNER), the
    winner's index once chosen, and when the wait ends."""

    phase: str
    winner: int | None = None
    next_at: float | None = None


def ab_phase(campaign: Campaign, store: Store, campaign_id: int, now: float) -> Phase:
    """The A/B phase at ``now``, moving the test on (the wait starts, the winner is chosen)."""
    ab = campaign.ab
    if ab is None:
        return Phase(WINNER)
    row = current(store, campaign_id)
    if row.ab_winner is not None:
        return Phase(WINNER, row.ab_winner)
    left = store.schedules.keys(campaign_id, _OPEN)
    if any(ab_rules.variant_of(ab, campaign.name, k) is not None for k in left):
        return Phase(TESTING)
    if row.ab_test_done_at is None:  # the test share has just finished: the wait starts
        row = replace(row, ab_test_done_at=now, updated_at=now)
        store.schedules.save(row)
    due = (row.ab_test_done_at or now) + ab.wait
    if now < due:
        return Phase(WAITING, next_at=due)
    winner = _decide(campaign, store, row, now, manual=None)
    return Phase(WINNER, winner)


def ab_figures(campaign: Campaign, store: Store, campaign_id: int) -> list[ab_rules.VariantFigures]:
    """The test's figures so far, per variant."""
    if campaign.ab is None:
        return []
    sent = store.schedules.keys(campaign_id, (ledger.SENT,))
    return ab_rules.figures(campaign.ab, campaign.name, sent, store.schedules.engaged(campaign_id))


def _decide(
    campaign: Campaign, store: Store, row: ScheduleRow, now: float, *, manual: int | None
) -> int:
    ab = campaign.ab
    assert ab is not None
    found = ab_figures(campaign, store, row.campaign_id)
    index = ab_rules.winner(ab, found) if manual is None else manual
    detail = dict(row.detail)
    detail["ab"] = {
        "metric": ab.metric,
        "winner": ab.label(index),
        "manual": manual is not None,
        "decided_at": iso(now),
        "variants": [f.as_dict(ab.metric) for f in found],
    }
    store.schedules.save(
        replace(
            row,
            ab_winner=index,
            ab_decided_at=now,
            ab_manual=manual is not None,
            detail=detail,
            updated_at=now,
        )
    )
    return index


def choose_winner(campaign: Campaign, store: Store, variant: str, now: float) -> dict[str, Any]:
    """``stamp schedule winner``: the winner chosen by hand; the rest go on the next run."""
    if campaign.ab is None:
        raise ConfigError(f"{campaign.path}: the campaign has no ab: section, so no winner")
    index = ab_rules.variant_index(campaign.ab, variant)
    found = store.campaigns.get(campaign.name)
    if found is None:
        raise ConfigError(
            f"{campaign.name!r} has never been sent from the store {store.location}; "
            "send the test share first (stamp send), or name the store that did (--db)"
        )
    row = current(store, found.id)
    _decide(campaign, store, row, now, manual=index)
    saved = current(store, found.id)
    return {"campaign": campaign.name, **saved.detail.get("ab", {})}


def record(
    campaign: Campaign,
    store: Store,
    campaign_id: int,
    now: float,
    *,
    survey: Survey | None,
    phase: Phase | None,
    counts: dict[str, int],
) -> ScheduleRow:
    """Write what the run leaves: the state and when the campaign is next due."""
    row = current(store, campaign_id)
    left = sum(counts.get(s, 0) for s in _OPEN)
    next_at: float | None
    if survey is not None:
        next_at = survey.next_at if survey.due == 0 else now
    else:
        next_at = now if left else None
    if not left:
        state, next_at = DONE, None
    elif phase is not None and phase.phase == WAITING and (survey is None or survey.due == 0):
        state = AB_WAITING
    elif survey is not None and survey.due == 0:
        state = SCHEDULED if not counts.get(ledger.SENT) else WAITING_WINDOW
    else:
        state = DUE
    detail = dict(row.detail)
    if survey is not None:
        detail["survey"] = survey.as_dict()
    saved = replace(
        row,
        state=state,
        next_due_at=next_at,
        file=str(campaign.path),
        detail=detail,
        updated_at=now,
    )
    store.schedules.save(saved)
    return saved
