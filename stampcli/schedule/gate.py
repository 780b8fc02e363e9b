"""Which of a campaign's pending rows a run may send now, and when the rest are due.

A :class:`Gate` is built for one run from the campaign (``schedule``,
``window``, ``ab``), the run's clock and the A/B phase. The send loop asks it
twice per row: when reading (rows not due are skipped, never rendered) and
again just before claiming (a window may have closed meanwhile). Each row's
zone comes from its ``schedule.timezone_field`` (an IANA name or UTC offset);
a missing or unknown one falls back to the campaign's zone and is counted.
Zone states are cached until the instant they change, so a row costs a dict
look-up and, with recipient zones, one JSON parse of its fields.

:meth:`Gate.survey` reads the pending rows once more at the end of a run (or
at its start) to count what is due and say when the rest next is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

import orjson

from stampcli.audience.columns import field_id
from stampcli.config import Campaign
from stampcli.records import PendingRow
from stampcli.schedule.ab import variant_of
from stampcli.schedule.calendar import ZoneState, due_in_zone
from stampcli.schedule.zones import UnknownZone, parse_zone, zone_name
from stampcli.store.protocols import Store

# A/B phases: the test share is sending; the test is done and the winner not yet due;
# the winner is chosen (everyone may go)
TESTING, WAITING, WINNER = "testing", "waiting", "winner"
_SURVEY_PAGE = 5000


def scheduled(campaign: Campaign) -> bool:
    """Whether the campaign has anything that holds rows back (schedule, window, A/B)."""
    return campaign.schedule is not None or campaign.window is not None or campaign.ab is not None


@dataclass(slots=True)
class Survey:
    """What the pending rows hold, at one instant."""

    due: int = 0  # rows a run may send now
    held: int = 0  # rows due later
    next_at: float | None = None  # when the first held row is due (None: none is, or never)
    zones: Counter[str] = field(default_factory=Counter)  # rows per zone shown
    fallback: int = 0  # rows whose zone was missing or unknown
    bad_zones: Counter[str] = field(default_factory=Counter)  # unknown zone values

    def as_dict(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "held": self.held,
            "next_at": self.next_at,
            "zones": dict(self.zones.most_common(20)),
            "fallback": self.fallback,
            "bad_zones": dict(self.bad_zones.most_common(10)),
        }


class Gate:
    """Due or not, per row, at the clock's time (``clock``: seconds since the epoch)."""

    def __init__(
        self,
        campaign: Campaign,
        now: Callable[[], float],
        *,
        phase: str = WINNER,
        ab_next_at: float | None = None,
    ) -> None:
        self.campaign = campaign
        self.now = now
        self.phase = phase if campaign.ab is not None else WINNER
        self.ab_next_at = ab_next_at  # when WAITING ends
        sched = campaign.schedule
        self.zone = parse_zone(sched.timezone if sched else "UTC")
        self.field = sched.timezone_field.strip() if sched and sched.timezone_field else None
        self._wanted = field_id(self.field) if self.field else ""
        self._found: dict[frozenset[str], str | None] = {}  # row's keys -> the matching key
        self._states: dict[tzinfo, tuple[ZoneState, float | None]] = {}  # state, valid until
        self._zones: dict[int, tzinfo] = {}  # row id -> zone, read and not yet claimed

    # ------------------------------------------------------------------ zones

    def zone_value(self, fields: dict[str, Any]) -> Any:
        """The row's zone cell (by field name, or the header as written)."""
        if self.field is None:
            return None
        if self.field in fields:
            return fields[self.field]
        # headers match ignoring case and punctuation, as everywhere (TIMEZONE, Time Zone)
        names = frozenset(fields)
        if names not in self._found:
            match = [k for k in fields if field_id(k) == self._wanted]
            self._found[names] = match[0] if match else None
        key = self._found[names]
        return None if key is None else fields.get(key)

    def zone_of_fields(self, fields: dict[str, Any]) -> tuple[tzinfo, bool]:
        """(zone, True if it is the row's own; False: the campaign's, as a fallback)."""
        value = self.zone_value(fields)
        if value is None or (isinstance(value, str) and not value.strip()):
            return self.zone, False
        try:
            return parse_zone(str(value)), True
        except UnknownZone:
            return self.zone, False

    def _zone_of(self, row: PendingRow) -> tzinfo:
        if self.field is None:
            return self.zone
        found = self._zones.get(row.id)
        if found is None:
            try:
                fields = orjson.loads(row.fields)
            except orjson.JSONDecodeError:
                fields = {}
            found = self.zone_of_fields(fields if isinstance(fields, dict) else {})[0]
        return found

    def state(self, zone: tzinfo) -> ZoneState:
        """The zone's state now (cached until it changes)."""
        t = self.now()
        cached = self._states.get(zone)
        if cached is not None:
            state, valid_until = cached
            if valid_until is None or t < valid_until:
                return state
        state = due_in_zone(self.campaign.schedule, self.campaign.window, zone, t)
        self._states[zone] = (state, state.until if state.due else state.next_at)
        return state

    # ------------------------------------------------------------------ rows

    def ab_allows(self, key: str) -> bool:
        if self.phase == WINNER:
            return True
        if self.phase == WAITING:
            return False
        ab = self.campaign.ab
        return ab is not None and variant_of(ab, self.campaign.name, key) is not None

    def admit(self, row: PendingRow) -> bool:
        """When reading: may this row be rendered for sending now?"""
        if not self.ab_allows(row.key):
            return False
        zone = self._zone_of(row)
        if not self.state(zone).due:
            return False
        if self.field is not None:
            self._zones[row.id] = zone  # kept for the claim-time look
        return True

    def still_due(self, row: PendingRow) -> bool:
        """Just before claiming: is the row's window still open?"""
        zone = self._zones.pop(row.id, None) if self.field is not None else self.zone
        if zone is None:
            zone = self._zone_of(row)
        return self.state(zone).due

    # ------------------------------------------------------------------ survey

    def survey(self, store: Store, campaign_id: int) -> Survey:
        """Count the pending rows due now and held, and when the first held one is due."""
        out = Survey()
        after = 0
        while True:
            rows = store.ledger.read_pending(campaign_id, after_id=after, limit=_SURVEY_PAGE)
            if not rows:
                break
            after = rows[-1].id
            for row in rows:
                self._survey_row(row, out)
        return out

    def _survey_row(self, row: PendingRow, out: Survey) -> None:
        if self.field is not None:
            try:
                fields = orjson.loads(row.fields)
            except orjson.JSONDecodeError:
                fields = {}
            fields = fields if isinstance(fields, dict) else {}
            zone, own = self.zone_of_fields(fields)
            if not own:
                out.fallback += 1
                value = self.zone_value(fields)
                if value is not None and str(value).strip():
                    out.bad_zones[str(value).strip()[:64]] += 1
        else:
            zone = self.zone
        out.zones[zone_name(zone)] += 1
        state = self.state(zone)
        allowed = self.ab_allows(row.key)
        if allowed and state.due:
            out.due += 1
            return
        out.held += 1
        if not allowed:  # held by the A/B test: due with the winner, in its zone's window
            when = self.ab_next_at
            if when is not None and state.due:
                when = max(when, self.now())
            elif when is not None:
                later = due_in_zone(self.campaign.schedule, self.campaign.window, zone, when)
                when = when if later.due else later.next_at
        else:
            when = state.next_at
        if when is not None and (out.next_at is None or when < out.next_at):
            out.next_at = when
