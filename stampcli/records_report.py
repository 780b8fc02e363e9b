"""The rows a report is made of, as the store hands them out (``store.reports``).

Plain frozen records below every layer, like :mod:`stampcli.records`: both store
backends return them, :mod:`stampcli.service.report` assembles them, and the
drawing code (terminal, HTML, workbook) reads them. Kept apart from
``records.py`` because only reports use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Upper bounds (ms) of the answer-time buckets the router counts into: roughly 1-2-3-5-7
# steps, so a median read from them is within ~30% of the true one; the last is "longer".
ANSWER_BUCKETS_MS = (
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500,
    2000, 3000, 5000, 7000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 1_000_000_000,
)  # fmt: skip


@dataclass(slots=True)
class ProviderTally:
    """What the router counted for one provider during one run (saved at the run's end).

    ``answers``: adapter answers by outcome (``accepted``, ``throttled``,
    ``provider_down``, ...); ``answer_ms``: adapter calls by the upper bound of their
    answer-time bucket (:data:`ANSWER_BUCKETS_MS`), one call per batch for batching
    providers; ``failovers_out``: messages this provider passed on, ``failovers_in``:
    messages it took after another one had passed them on.
    """

    provider: str
    answers: dict[str, int] = field(default_factory=dict)
    answer_ms: dict[int, int] = field(default_factory=dict)
    failovers_out: int = 0
    failovers_in: int = 0
    throttle_waits: int = 0
    throttle_wait_ms: int = 0
    circuit_opens: int = 0


@dataclass(frozen=True, slots=True)
class CampaignRef:
    """A campaign as ``--all`` lists it."""

    id: int
    name: str
    created_at: float
    first_send: float | None  # the first hand-over to a provider; None: never sent


@dataclass(frozen=True, slots=True)
class ProviderFigures:
    """One provider's row of the providers section."""

    provider: str
    messages: int  # ledger rows it answered last
    states: dict[str, int]  # those rows by ledger state
    events: dict[str, int]  # distinct recipients per event type it reported
    answers: dict[str, int]  # adapter answers by outcome, over every run (tallies)
    failovers_out: int
    failovers_in: int
    throttle_waits: int
    throttle_wait_ms: int
    circuit_opens: int
    calls_timed: int  # adapter calls with an answer time
    answer_p50_ms: int | None  # upper bound of the bucket holding the median
    answer_p95_ms: int | None


@dataclass(frozen=True, slots=True)
class GroupFigures:
    """One group of recipients (a domain, a contact field's value): rows, and rows with
    each outcome."""

    group: str
    messages: int
    sent: int
    failed: int
    delivered: int
    bounced: int
    complained: int
    opened: int


@dataclass(frozen=True, slots=True)
class LinkFigures:
    url: str
    clicks: int
    unique: int  # distinct recipients who clicked it


@dataclass(frozen=True, slots=True)
class TimePoint:
    """Count of ``kind`` (``sent`` from the ledger, else an event type) in one bucket."""

    bucket: int  # bucket number from the report's start (0 = the first)
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class Spans:
    """When a campaign's sends and events happened (epoch seconds; None: none)."""

    first_send: float | None
    last_send: float | None
    first_event: float | None
    last_event: float | None


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """The figures of a report that come from the events, read in one pass
    (``ReportStore.summary``): the funnel counts, the providers, the top domains
    and the segments (empty unless a field was asked for)."""

    funnel: dict[str, int]
    providers: list[ProviderFigures]
    domains: list[GroupFigures]
    segments: list[GroupFigures]
