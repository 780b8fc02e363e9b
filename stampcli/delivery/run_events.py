"""Plain event objects the engine and router report; the CLI draws them.

The library never prints: it calls an ``on_event`` callback with these. The
CLI turns them into a rich progress view on a terminal, or JSON lines
(``--log-format json`` or no terminal). Events are about the run, not about
each message: per-message outcomes reach the screen only as counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events; ``kind`` names it in JSON logs."""

    kind = "event"

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": self.kind}
        name: str
        for name in self.__slots__:
            data[name] = getattr(self, name)
        return data


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    kind = "start"
    campaign: str
    total: int  # recipients in the ledger
    pending: int  # to be attempted in this run
    providers: list[str] = field(default_factory=list)
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Planned(Event):
    kind = "planned"
    campaign: str
    added: int  # new ledger rows this run
    suppressed: int
    rejected: int  # rows of the audience that could not be used (bad address, ...)
    duplicates: int
    segment_excluded: int
    segment_errors: int = 0  # rows the segment could not evaluate (left out too)
    first_segment_error: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderState(Event):
    """A provider's circuit or quota changed: closed, open, half_open, quota_used, refused."""

    kind = "provider"
    provider: str
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Progress(Event):
    """Periodic counts (a few times a second at most)."""

    kind = "progress"
    done: int  # recipients finished in this run (any final or deferred state)
    total: int  # recipients to attempt in this run
    counts: dict[str, int] = field(default_factory=dict)  # by ledger state, this run
    # provider label -> {"sent": n, "failed": n, ...}
    per_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    rate: float = 0.0  # messages per second, recent


@dataclass(frozen=True, slots=True)
class Notice(Event):
    """Something a person should read: a pause, a stop request, unknown rows found."""

    kind = "notice"
    level: str  # info | warning | error
    message: str


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    kind = "summary"
    campaign: str
    reason: str  # delivery.run.REASONS; the CLI maps it to an exit code (cli/exit_codes.py)
    counts: dict[str, int] = field(default_factory=dict)  # whole ledger by state
    run_counts: dict[str, int] = field(default_factory=dict)  # this run by state
    elapsed: float = 0.0
    per_provider: dict[str, dict[str, int]] = field(default_factory=dict)
    # a scheduled campaign that ended not_due: when the next row is due (ISO 8601, UTC)
    next_due_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = Event.as_dict(self)
        if self.next_due_at is None:  # unscheduled runs keep the line they always had
            data.pop("next_due_at")
        return data


EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default sink: drop every event."""
