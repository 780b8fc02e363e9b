"""``stamp check``'s look at recipient time zones: rows per zone, and each row that falls back.

A row whose ``schedule.timezone_field`` is empty or names no zone gets the
message at the campaign's ``schedule.timezone`` instead; ``stamp check`` says
which rows (row number, field and value, with why) and how many, as a warning.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from stampcli.config import Campaign
from stampcli.records import Contact
from stampcli.schedule.gate import Gate
from stampcli.schedule.zones import UnknownZone, parse_zone, zone_name

MAX_SHOWN = 20  # fallback rows kept with their reason


@dataclass(slots=True)
class ZoneCheck:
    field: str
    fallback_zone: str
    zones: Counter[str] = dataclasses.field(default_factory=Counter)
    fallback: int = 0
    problems: list[tuple[int, str]] = dataclasses.field(
        default_factory=list
    )  # (row, why), the first few

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "fallback_zone": self.fallback_zone,
            "zones": dict(self.zones.most_common()),
            "fallback": self.fallback,
            "problems": [{"row": r, "reason": why} for r, why in self.problems],
        }


def watch_zones(
    campaign: Campaign, contacts: Iterable[Contact]
) -> tuple[ZoneCheck | None, Iterator[Contact]]:
    """(the check, filled as ``contacts`` is read; the contacts, unchanged)."""
    sched = campaign.schedule
    if sched is None or sched.timezone_field is None:
        return None, iter(contacts)
    gate = Gate(campaign, lambda: 0.0)
    check = ZoneCheck(sched.timezone_field, sched.timezone)

    def each() -> Iterator[Contact]:
        for contact in contacts:
            value = gate.zone_value(contact.fields)
            text = "" if value is None else str(value).strip()
            why = None
            if not text:
                why = f"{check.field} is empty"
            else:
                try:
                    check.zones[zone_name(parse_zone(text))] += 1
                except UnknownZone as exc:
                    why = f"{check.field}: {exc}"
            if why is not None:
                check.fallback += 1
                check.zones[zone_name(parse_zone(sched.timezone))] += 1
                if len(check.problems) < MAX_SHOWN:
                    check.problems.append((contact.row, why))
            yield contact

    return check, each()
