"""``bounce_policy``: what a bounce or complaint event does to an address.

The default is what the issue and most senders settle on: a hard bounce and a
complaint suppress at once; three soft bounces within 30 days suppress too,
unless a delivery to the same address came in between (it resets the count).
A campaign file may set its own ``bounce_policy:``; a send stores it with the
campaign row, where the event server (which never reads campaign files) finds it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SoftBouncePolicy(BaseModel):
    """Suppress after ``count`` soft bounces within ``within`` seconds (``30d`` in a file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(3, ge=1)
    within: float = 30 * 86400.0

    @field_validator("within", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        from stampcli.config.values import parse_duration  # config imports this module

        seconds = parse_duration(value)
        if seconds <= 0:
            raise ValueError("within must be above zero")
        return seconds


class BouncePolicy(BaseModel):
    """``bounce_policy: {soft: {count: 3, within: 30d}, hard: suppress, complaint: suppress}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    soft: SoftBouncePolicy = SoftBouncePolicy()
    hard: Literal["suppress", "ignore"] = "suppress"
    complaint: Literal["suppress", "ignore"] = "suppress"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as the campaign row stores it (``within`` in seconds)."""
        return self.model_dump()


DEFAULT_POLICY = BouncePolicy()
