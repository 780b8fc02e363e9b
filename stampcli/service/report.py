"""``stamp report``: how a campaign went, as one dataclass every format is drawn from.

:func:`campaign_report` gathers the figures of one campaign from the store's SQL
aggregates (``store.reports``: nothing is read row by row) and adds what
needs judgement: rates against sent and delivered, the flags against the
Gmail/Yahoo bulk-sender complaint lines (0.1% and 0.3%) and the campaign's
auto-stop thresholds, the timeline's unit, the links in the order the template
has them. :func:`campaigns_report` is ``--all``: one funnel per campaign.
The terminal, HTML, workbook and JSON forms all draw ``as_dict()``'s figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stampcli.config import Campaign
from stampcli.config.model import AutoStopConfig
from stampcli.errors import InputError
from stampcli.records_report import GroupFigures, LinkFigures
from stampcli.store.protocols import Store

SCHEMA = 1  # the JSON document's version ("schema"); keys are only ever added
# Gmail's and Yahoo's bulk-sender rules (2024): keep spam complaints under 0.1%, never 0.3%
COMPLAINT_WARN = 0.001
COMPLAINT_LIMIT = 0.003
TOP_DOMAINS = 20
# the unit of a timeline by the span it covers: minutes up to 3 h, hours up to 7 days
_UNITS = (("minute", 60.0, 3 * 3600.0), ("hour", 3600.0, 7 * 86400.0), ("day", 86400.0, None))
# the event types a timeline shows (others are counted in the funnel only)
TIMELINE_EVENTS = ("delivered", "bounced", "complained", "opened", "clicked", "unsubscribed")
# rate name -> the count it is a share of sent (and of delivered) of
RATES = {
    "sent": "sent",
    "delivered": "delivered",
    "bounced": "bounced",
    "bounced_hard": "bounced_hard",
    "bounced_soft": "bounced_soft",
    "failed": "failed",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
    "opened": "opened",
    "opened_human": "opened_human",
    "clicked": "clicked",
}


@dataclass(frozen=True, slots=True)
class Flag:
    """A figure past a line someone drew: ``level`` is ``warn`` or ``bad``."""

    figure: str
    level: str
    value: float
    limit: float
    text: str


@dataclass(frozen=True, slots=True)
class Timeline:
    unit: str  # minute | hour | day
    start: float | None  # epoch seconds of bucket 0; None: nothing happened
    # one dict per bucket: {"t": epoch seconds, "sent": n} or {"t": ..., <event type>: n}
    sends: list[dict[str, float]] = field(default_factory=list)
    events: list[dict[str, float]] = field(default_factory=list)
    events_unit: str = "minute"
    events_start: float | None = None


@dataclass(frozen=True, slots=True)
class CampaignReport:
    campaign: str
    store: str
    generated_at: float
    counts: dict[str, int]
    rates: dict[str, dict[str, float | None]]  # name -> {"of_sent": x, "of_delivered": y}
    flags: list[Flag]
    thresholds: dict[str, float]
    has_events: bool
    timeline: Timeline
    providers: list[dict[str, Any]]
    domains: list[GroupFigures]
    links: list[LinkFigures]
    segment_field: str | None
    segments: list[GroupFigures]
    paused_reason: str | None
    first_send: float | None
    last_send: float | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = SCHEMA
        return data


@dataclass(frozen=True, slots=True)
class CampaignLine:
    """One campaign of ``--all``: its counts and rates."""

    campaign: str
    first_send: float | None
    counts: dict[str, int]
    rates: dict[str, dict[str, float | None]]
    flags: list[Flag]


@dataclass(frozen=True, slots=True)
class CampaignsReport:
    store: str
    generated_at: float
    since: float | None
    campaigns: list[CampaignLine]
    has_events: bool

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"] = SCHEMA
        return data


def share(part: int, whole: int) -> float | None:
    """``part / whole`` rounded to 6 places; None when ``whole`` is 0."""
    return round(part / whole, 6) if whole else None


def rates_of(counts: dict[str, int]) -> dict[str, dict[str, float | None]]:
    """Each rate against the messages sent and (where events said so) delivered."""
    sent, delivered = counts.get("sent", 0), counts.get("delivered", 0)
    out = {
        name: {
            "of_sent": share(counts.get(key, 0), sent),
            "of_delivered": share(counts.get(key, 0), delivered),
        }
        for name, key in RATES.items()
    }
    out["sent"] = {"of_planned": share(sent, counts.get("planned", 0))}
    out["delivered"]["of_delivered"] = None
    out["click_to_open"] = {"of_opened": share(counts.get("clicked", 0), counts.get("opened", 0))}
    return out


def flags_of(counts: dict[str, int], auto_stop: AutoStopConfig) -> list[Flag]:
    """The figures past the bulk-sender lines or the campaign's auto-stop thresholds.

    Complaints are a share of the delivered messages when delivery events came
    (the mailbox providers' measure), else of the messages sent.
    """
    out: list[Flag] = []
    base = counts.get("delivered") or counts.get("sent", 0)
    complaints = share(counts.get("complained", 0), base)
    if complaints is not None:
        if complaints >= COMPLAINT_LIMIT:
            out.append(
                Flag(
                    "complained",
                    "bad",
                    complaints,
                    COMPLAINT_LIMIT,
                    "complaints at or over 0.3%: Gmail and Yahoo reject or junk bulk mail",
                )
            )
        elif complaints >= COMPLAINT_WARN:
            out.append(
                Flag(
                    "complained",
                    "warn",
                    complaints,
                    COMPLAINT_WARN,
                    "complaints over 0.1%: Gmail and Yahoo ask bulk senders to stay under",
                )
            )
        if complaints >= auto_stop.complaint_rate:
            out.append(
                Flag(
                    "complained",
                    "bad",
                    complaints,
                    auto_stop.complaint_rate,
                    "complaints at the campaign's auto-stop threshold",
                )
            )
    hard = share(counts.get("bounced_hard", 0), counts.get("sent", 0))
    if hard is not None and hard >= auto_stop.hard_bounce_rate:
        out.append(
            Flag(
                "bounced_hard",
                "bad",
                hard,
                auto_stop.hard_bounce_rate,
                "hard bounces at the campaign's auto-stop threshold",
            )
        )
    return out


def _unit(span: float) -> tuple[str, float]:
    for name, width, longest in _UNITS:
        if longest is None or span <= longest:
            return name, width
    return _UNITS[-1][0], _UNITS[-1][1]  # pragma: no cover  (the last has no limit)


def _dense(
    points: Sequence[Any], start: float, width: float, kinds: Sequence[str]
) -> list[dict[str, float]]:
    """One dict per bucket from 0 to the last one with anything, zeros filled in."""
    if not points:
        return []
    last = max(p.bucket for p in points)
    rows: list[dict[str, float]] = [
        {"t": start + i * width, **dict.fromkeys(kinds, 0)} for i in range(last + 1)
    ]
    for p in points:
        if p.kind in kinds:
            rows[p.bucket][p.kind] += p.count
    return rows


def _timeline(
    store: Store,
    campaign_id: int,
    first: float | None,
    last: float | None,
    last_event: float | None,
) -> Timeline:
    if first is None:
        return Timeline("minute", None)
    unit, width = _unit((last or first) - first)
    sends = store.reports.timeline(campaign_id, start=first, width=width, events=False)
    ev_unit, ev_width = _unit(max(last_event or first, last or first) - first)
    events = store.reports.timeline(campaign_id, start=first, width=ev_width, events=True)
    return Timeline(
        unit,
        first,
        _dense(sends, first, width, ("sent",)),
        _dense(events, first, ev_width, TIMELINE_EVENTS),
        ev_unit,
        first,
    )


def link_order(links: list[LinkFigures], template_text: str | None) -> list[LinkFigures]:
    """``links`` in the order the template has them; links it does not hold (personalised,
    or added by the provider) after, most clicked first."""
    if not template_text:
        return links
    found = [(template_text.find(link.url), i) for i, link in enumerate(links)]
    order = sorted(range(len(links)), key=lambda i: (found[i][0] < 0, found[i][0], i))
    return [links[i] for i in order]


def _auto_stop(store: Store, campaign_id: int, given: AutoStopConfig | None) -> AutoStopConfig:
    if given is not None:
        return given
    stored = store.campaigns.settings(campaign_id).get("auto_stop")
    try:
        return AutoStopConfig.model_validate(stored) if stored else AutoStopConfig()
    except ValueError:
        return AutoStopConfig()


def campaign_report(
    store: Store,
    name: str,
    *,
    auto_stop: AutoStopConfig | None = None,
    template_text: str | None = None,
    segment_by: str | None = None,
) -> CampaignReport:
    """The report of campaign ``name``; InputError if the store has never planned it or
    it has no sends yet."""
    row = store.campaigns.get(name)
    if row is None:
        known = [c.name for c in store.reports.campaigns()]
        hint = f" (it has: {', '.join(known[:10])})" if known else " (it has no campaigns)"
        raise InputError(f"no campaign called {name!r} in the store {store.location}{hint}")
    spans = store.reports.spans(row.id)
    if spans.first_send is None:
        planned = store.reports.funnel(row.id, name)["planned"]
        raise InputError(
            f"campaign {name!r} has no sends yet ({planned} recipients planned): "
            "nothing to report; `stamp send` it first"
        )
    config = _auto_stop(store, row.id, auto_stop)
    # one read of the events for the funnel, providers, domains and segments
    summary = store.reports.summary(row.id, name, segment=segment_by, domains=TOP_DOMAINS)
    counts = summary.funnel
    providers = [asdict(p) for p in summary.providers]
    sent_total = sum(p["messages"] for p in providers) or 1
    for p in providers:
        p["share"] = round(p["messages"] / sent_total, 6)
    notes = []
    has_events = counts["events"] > 0
    if not has_events:
        notes.append(
            "no delivery events were received for this campaign (webhooks: `stamp serve`; "
            "or `stamp events pull`): delivered, bounces, complaints, opens and clicks are "
            "not known, only what the providers answered at hand-off"
        )
    notes.append(
        "A/B variants: stamp sends one version of a campaign, so there are none to compare"
    )
    return CampaignReport(
        campaign=name,
        store=store.location,
        generated_at=time.time(),
        counts=counts,
        rates=rates_of(counts),
        flags=flags_of(counts, config),
        thresholds={
            "complaint_warn": COMPLAINT_WARN,
            "complaint_limit": COMPLAINT_LIMIT,
            "auto_stop_complaint_rate": config.complaint_rate,
            "auto_stop_hard_bounce_rate": config.hard_bounce_rate,
        },
        has_events=has_events,
        timeline=_timeline(store, row.id, spans.first_send, spans.last_send, spans.last_event),
        providers=providers,
        domains=summary.domains,
        links=link_order(store.reports.links(row.id), template_text),
        segment_field=segment_by,
        segments=summary.segments,
        paused_reason=row.paused_reason,
        first_send=spans.first_send,
        last_send=spans.last_send,
        notes=notes,
    )


def campaigns_report(store: Store, since: float | None = None) -> CampaignsReport:
    """``--all``: one line per campaign sent (or made) at or after ``since``, oldest first."""
    lines = []
    for ref in store.reports.campaigns(since):
        counts = store.reports.funnel(ref.id, ref.name)
        lines.append(
            CampaignLine(
                ref.name,
                ref.first_send,
                counts,
                rates_of(counts),
                flags_of(counts, _auto_stop(store, ref.id, None)),
            )
        )
    return CampaignsReport(
        store=store.location,
        generated_at=time.time(),
        since=since,
        campaigns=lines,
        has_events=any(line.counts["events"] for line in lines),
    )


def template_text_of(campaign: Campaign) -> str | None:
    """The campaign's template source, for :func:`link_order` (None if unreadable)."""
    try:
        return Path(campaign.template).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
