"""Whether an instant is due for a schedule and a send window in one zone, and until when.

A recipient (or a whole campaign, without recipient zones) is due at instant
``t`` when ``t`` is at or after ``schedule.at`` read in its zone, and the local
time at ``t`` falls inside ``window`` (its days and hours). :func:`due_in_zone`
says whether that holds now, and when it next changes: when the open window
closes, or when the next one opens. Local times that a DST change skips or
repeats resolve as :mod:`zoneinfo` resolves them (``fold=0``): a window opening
at 02:30 on the night clocks go forward opens at 03:00.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from stampcli.config.schedule import ScheduleConfig, WindowConfig

_LOOKAHEAD_DAYS = 8  # any window opens within a week


@dataclass(frozen=True, slots=True)
class ZoneState:
    """Due or not at one instant, in one zone.

    ``until``: when a due state ends (the window closes; None: never).
    ``next_at``: when a state that is not due becomes due (None: it never will).
    """

    due: bool
    until: float | None = None
    next_at: float | None = None


def start_at(schedule: ScheduleConfig | None, zone: tzinfo) -> float | None:
    """``schedule.at`` as an instant in ``zone`` (None: no start time)."""
    if schedule is None or schedule.at is None:
        return None
    at = schedule.at
    if at.tzinfo is None:
        at = at.replace(tzinfo=zone)
    return at.timestamp()


def _local(day: datetime, clock: object, zone: tzinfo) -> float:
    moment = datetime.combine(day.date(), clock, tzinfo=zone)  # type: ignore[arg-type]
    # normalise through UTC: a skipped local time (DST gap) lands after the gap
    return moment.astimezone(UTC).timestamp()


def window_state(window: WindowConfig | None, zone: tzinfo, t: float) -> ZoneState:
    """Inside ``window`` at ``t`` (until it closes), or when it opens next."""
    if window is None:
        return ZoneState(True)
    start, end = window.hours
    local = datetime.fromtimestamp(t, zone)
    for ahead in range(_LOOKAHEAD_DAYS):
        day = local + timedelta(days=ahead)
        if day.weekday() not in window.days:
            continue
        opens, closes = _local(day, start, zone), _local(day, end, zone)
        if t < opens:
            return ZoneState(False, next_at=opens)
        if t < closes:
            return ZoneState(True, until=closes)
    return ZoneState(False, next_at=None)  # not reached: a week has every weekday


def due_in_zone(
    schedule: ScheduleConfig | None, window: WindowConfig | None, zone: tzinfo, t: float
) -> ZoneState:
    """The state at ``t`` for recipients in ``zone``."""
    start = start_at(schedule, zone)
    if start is not None and t < start:
        opening = window_state(window, zone, start)
        return ZoneState(False, next_at=start if opening.due else opening.next_at)
    return window_state(window, zone, t)
