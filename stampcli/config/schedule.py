"""The campaign.yml keys that say when messages go out: ``schedule``, ``window``, ``pace``, ``ab``.

::

    schedule: {at: "2026-12-10T09:00", timezone: Europe/Berlin, timezone_field: TIMEZONE}
    window:   {days: [mon-fri], hours: "08:00-18:00"}
    pace:     10000/h
    ab:       {variants: [{subject: ...}, {subject: ..., template: ...}],
               test_share: 20%, metric: clicks, wait: 4h}

Checked when the campaign loads (unknown zones, impossible windows, shares that
do not add up), each with the key and what to write; what they mean at a given
instant is :mod:`stampcli.schedule`.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stampcli.config.values import Rate, parse_duration, parse_rate
from stampcli.schedule.zones import UnknownZone, parse_zone

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _zone(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        parse_zone(v)
    except UnknownZone as exc:
        raise ValueError(str(exc)) from None
    return v.strip()


class ScheduleConfig(_Model):
    """``schedule:``: the moment sending may start, in the campaign's (or each recipient's) zone."""

    # local wall time ("2026-12-10T09:00") read in the zone below, or an instant with
    # an offset ("2026-12-10T09:00+01:00"), the same moment for everyone
    at: datetime | None = None
    timezone: str = "UTC"  # the campaign's zone: `at`, `window`, and the fallback for recipients
    # the audience field holding each recipient's zone (IANA name or UTC offset)
    timezone_field: str | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v.strip())
            except ValueError:
                raise ValueError(
                    f"{v!r} is not a date and time; write it like 2026-12-10T09:00 "
                    "(or 2026-12-10T09:00+01:00 for one moment everywhere)"
                ) from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v) or "UTC"

    @field_validator("timezone_field")
    @classmethod
    def _field(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("timezone_field names an audience column, e.g. TIMEZONE")
        return v

    @model_validator(mode="after")
    def _fixed(self) -> ScheduleConfig:
        if self.at is not None and self.at.tzinfo is not None and self.timezone_field:
            raise ValueError(
                "schedule.at has a UTC offset, so it is one moment for everyone and "
                "timezone_field would change nothing; drop the offset to send at that "
                "local time in each recipient's zone"
            )
        return self


def _expand_days(items: list[str]) -> tuple[int, ...]:
    out: set[int] = set()
    for item in items:
        text = str(item).strip().lower()[:7]
        parts = [p.strip()[:3] for p in text.split("-")]
        if len(parts) > 2 or any(p not in DAYS for p in parts):
            raise ValueError(
                f"{item!r} is not a day; write days as mon, tue, ... sun, or a range like mon-fri"
            )
        first, last = DAYS.index(parts[0]), DAYS.index(parts[-1])
        if last < first:
            raise ValueError(f"{item!r} runs backwards; write a range like mon-fri")
        out.update(range(first, last + 1))
    if not out:
        raise ValueError("window.days is empty: no day would ever be due")
    return tuple(sorted(out))


class WindowConfig(_Model):
    """``window:``: the days and hours sending may happen, in the campaign's or recipient's zone."""

    days: tuple[int, ...] = tuple(range(7))  # Monday = 0, as date.weekday()
    hours: tuple[time, time] = (time(0, 0), time(23, 59, 59, 999999))

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, v: object) -> object:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple) and all(isinstance(x, str) for x in v):
            return _expand_days(list(v))
        return v

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        m = _HOURS.match(v)
        if m is None:
            raise ValueError(f"{v!r} is not a span of hours; write it like 08:00-18:00")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"{v!r} has a time that does not exist; hours run 00:00-24:00")
        start = time(h1, m1)
        end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
        if end <= start:
            raise ValueError(
                f"{v!r} ends before it starts; a window stays within one day "
                "(08:00-18:00; for 22:00-06:00 write two campaigns or 00:00-06:00)"
            )
        return (start, end)


def _share(v: object) -> object:
    if isinstance(v, str):
        text = v.strip()
        try:
            return float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{v!r} is not a share; write it like 20% or 0.2") from None
    return v


class VariantConfig(_Model):
    """One A/B variant: what it changes (subject, template, From), all else as the campaign."""

    name: str | None = None
    subject: str | None = None
    template: Path | None = None
    from_: str | None = Field(None, alias="from")

    @model_validator(mode="after")
    def _changes(self) -> VariantConfig:
        if self.subject is None and self.template is None and self.from_ is None:
            raise ValueError("a variant changes subject, template and/or from; this one none")
        return self


class ABConfig(_Model):
    """``ab:``: variants tried on a test share; the rest get the winner after ``wait``."""

    variants: list[VariantConfig] = Field(min_length=2, max_length=26)
    test_share: float = Field(0.2, description="of the audience, split evenly between variants")
    metric: Literal["opens", "clicks"] = "clicks"
    wait: float = 4 * 3600.0

    @field_validator("test_share", mode="before")
    @classmethod
    def _test_share(cls, v: object) -> object:
        return _share(v)

    @field_validator("test_share")
    @classmethod
    def _share_range(cls, v: float) -> float:
        if not 0 < v < 1:
            raise ValueError(
                f"test_share {v:.0%} leaves no one to send the winner to, or tests no one; "
                "give a share between 1% and 99%, like 20%"
            )
        return v

    @field_validator("wait", mode="before")
    @classmethod
    def _wait(cls, v: object) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _names(self) -> ABConfig:
        names = [v.name for v in self.variants if v.name]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two variants are named {dupes[0]!r}; give each its own name")
        return self

    def label(self, index: int) -> str:
        """A variant's name: its own, else A, B, C..."""
        return self.variants[index].name or chr(ord("A") + index)


def parse_pace(v: object) -> Rate | None:
    return None if v is None else parse_rate(v)
