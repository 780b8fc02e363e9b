"""``domains:`` (per-recipient-domain throttles) and ``warmup:`` (daily caps) of a campaign.

``domains:`` maps a receiving domain, a glob pattern (``"*.yahoo.*"``) or
``default`` to a limit::

    domains:
      gmail.com: {rate: 20/s}
      "*.yahoo.*": {rate: 10/s}        # yahoo.com, yahoo.co.uk, ... share it
      default: {rate: 50/s}            # every other domain, each its own

``warmup:`` caps the messages a day while a new domain or IP builds its
reputation, from ``since`` (a UTC date): ``start`` on the first day, times
``factor`` each ``per`` (day or week) until it reaches ``max``, where the
warm-up ends and the cap with it; or an explicit table
``days: [200, 500, 1000, ...]`` (one cap a day, no cap after the table).
``scope: domain`` (the default) counts every provider's sends from the From
domain together; ``scope: provider`` gives each provider the cap of its own.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stampcli.config.values import Rate, parse_rate

_PATTERN = re.compile(r"^[a-z0-9*?._-]+$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DomainLimit(_Model):
    """One entry of ``domains:``."""

    rate: Rate

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, v: object) -> Rate:
        return parse_rate(v)


def check_domains(v: dict[str, DomainLimit]) -> dict[str, DomainLimit]:
    out: dict[str, DomainLimit] = {}
    for name, limit in v.items():
        key = name.strip().lower().rstrip(".")
        if key != "default" and (not _PATTERN.match(key) or "." not in key):
            raise ValueError(
                f"domains: {name!r} is not a domain (gmail.com), a pattern (*.yahoo.*) or 'default'"
            )
        if key in out:
            raise ValueError(f"domains: {name!r} is given twice")
        out[key] = limit
    return out


def rule_for(domains: dict[str, DomainLimit], domain: str) -> str | None:
    """The ``domains:`` key that applies to recipient ``domain``: exact, then the first
    matching pattern in file order (``*.`` at the start also matches no label at all),
    then ``default``; None when none applies."""
    domain = domain.lower()
    if domain in domains and domain != "default":
        return domain
    for key in domains:
        if not any(c in key for c in "*?"):
            continue
        # "*.yahoo.*" covers yahoo.com itself as well as mail.yahoo.co.uk
        if fnmatch.fnmatchcase(domain, key) or (
            key.startswith("*.") and fnmatch.fnmatchcase(domain, key[2:])
        ):
            return key
    return "default" if "default" in domains else None


class WarmupConfig(_Model):
    """``warmup:``: a daily cap that grows while a new sender warms up."""

    since: dt.date
    start: int | None = Field(None, ge=1)
    factor: float = Field(1.5, gt=1, le=10)
    per: Literal["day", "week"] = "day"
    max: int | None = Field(None, ge=1)
    days: list[int] | None = None
    scope: Literal["domain", "provider"] = "domain"

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(n < 1 for n in v)):
            raise ValueError("warmup.days is a list of daily caps, each at least 1")
        return v

    @model_validator(mode="after")
    def _one_way(self) -> WarmupConfig:
        if (self.start is None) == (self.days is None):
            raise ValueError(
                "give warmup.start (with factor, per, max) or warmup.days (a cap per day)"
            )
        return self

    def cap(self, day: dt.date) -> int | None:
        """The cap for the UTC ``day``; None once the warm-up is over (no cap)."""
        n = max(0, (day - self.since).days)
        if self.days is not None:
            return self.days[n] if n < len(self.days) else None
        assert self.start is not None
        steps = n // 7 if self.per == "week" else n
        # in logs: factor ** steps overflows a float after a few years of days
        log_value = math.log(self.start) + steps * math.log(self.factor)
        if log_value >= math.log(self.max or 10**12):
            return None  # grown to max: warmed up
        return round(math.exp(log_value))
