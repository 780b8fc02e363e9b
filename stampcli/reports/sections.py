"""A report as sections (title, typed columns, rows, one chart): what the HTML page, the
workbook and the terminal each draw in their own way.

Built from :class:`stampcli.service.report.CampaignReport` (or ``CampaignsReport``
for ``--all``), so that the formats cannot disagree on a figure: each one only
decides how a column kind (``text``, ``int``, ``pct``, ``ms``, ``time``) looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stampcli.records_report import GroupFigures
from stampcli.service.report import CampaignReport, CampaignsReport, share

TEXT, INT, PCT, MS, TIME = "text", "int", "pct", "ms", "time"


@dataclass(frozen=True, slots=True)
class Chart:
    kind: str  # bar | hbar | hstack | stack | line
    title: str
    labels: list[str]
    series: list[tuple[str, list[float]]]
    percent: bool = False
    unit: str = ""  # for a line over time: minute | hour | day
    times: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    columns: list[tuple[str, str]]  # (heading, kind)
    rows: list[list[Any]]
    chart: Chart | None = None
    note: str | None = None


def _funnel(r: CampaignReport) -> Section:
    c, rates = r.counts, r.rates

    def line(label: str, key: str, rate: str | None = None) -> list[Any]:
        of = rates.get(rate or key, {})
        return [label, c.get(key, 0), of.get("of_sent"), of.get("of_delivered")]

    rows = [
        ["planned", c["planned"], None, None],
        ["sent (accepted)", c["sent"], None, None],
        line("failed at hand-off", "failed"),
        ["suppressed", c["suppressed"], None, None],
        ["unknown / still to send", c["unknown"] + c["pending"] + c["deferred"], None, None],
        line("delivered", "delivered"),
        line("bounced", "bounced"),
        line("  hard", "bounced_hard"),
        line("  soft", "bounced_soft"),
        line("complained", "complained"),
        line("unsubscribed", "unsubscribed"),
        line("opened (unique)", "opened"),
        line("  opened by people", "opened_human"),
        ["  opens by machines (total)", c["opens_machine"], None, None],
        line("clicked (unique)", "clicked"),
        ["click-to-open", c["clicked"], rates["click_to_open"]["of_opened"], None],
    ]
    stages = [
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("opened", "opened"),
        ("clicked", "clicked"),
        ("bounced", "bounced"),
        ("complained", "complained"),
        ("unsubscribed", "unsubscribed"),
    ]
    chart = Chart(
        "hbar",
        "Funnel (recipients)",
        [s for s, _ in stages],
        [("recipients", [float(c[k]) for _, k in stages])],
    )
    return Section(
        "funnel",
        "Funnel",
        [("stage", TEXT), ("recipients", INT), ("of sent", PCT), ("of delivered", PCT)],
        rows,
        chart,
        None if r.has_events else r.notes[0],
    )


def _sends(r: CampaignReport) -> Section:
    tl = r.timeline
    rows = [[p["t"], int(p["sent"])] for p in tl.sends]
    chart = None
    if rows:
        chart = Chart(
            "line",
            f"Messages sent per {tl.unit}",
            [],
            [("sent", [float(p["sent"]) for p in tl.sends])],
            unit=tl.unit,
            times=[p["t"] for p in tl.sends],
        )
    return Section(
        "sends", f"Sends per {tl.unit}", [(f"{tl.unit} (UTC)", TIME), ("sent", INT)], rows, chart
    )


def _events(r: CampaignReport) -> Section:
    from stampcli.service.report import TIMELINE_EVENTS

    tl = r.timeline
    kinds = [k for k in TIMELINE_EVENTS if any(p.get(k) for p in tl.events)]
    rows = [[p["t"], *(int(p[k]) for k in kinds)] for p in tl.events]
    chart = None
    if rows and kinds:
        chart = Chart(
            "line",
            f"Events per {tl.events_unit} since the send",
            [],
            [(k, [float(p[k]) for p in tl.events]) for k in kinds],
            unit=tl.events_unit,
            times=[p["t"] for p in tl.events],
        )
    return Section(
        "events",
        "Events over time",
        [(f"{tl.events_unit} (UTC)", TIME), *((k, INT) for k in kinds)],
        rows,
        chart,
        None if rows else "no delivery events were received for this campaign",
    )


def _providers(r: CampaignReport) -> Section:
    rows = []
    for p in r.providers:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(p["answers"].items()) if k != "accepted")
        rows.append(
            [
                p["provider"],
                p["messages"],
                p["share"],
                p["states"].get("sent", 0),
                p["states"].get("failed", 0),
                p["failovers_out"],
                p["failovers_in"],
                p["throttle_waits"],
                p["throttle_wait_ms"] / 1000.0,
                p["circuit_opens"],
                errors or "-",
                p["answer_p50_ms"],
                p["answer_p95_ms"],
                p["events"]["delivered"],
                p["events"]["bounced_hard"],
                p["events"]["complained"],
            ]
        )
    chart = None
    if rows:
        other = [float(row[1] - row[3] - row[4]) for row in rows]
        chart = Chart(
            "stack",
            "Messages per provider",
            [row[0] for row in rows],
            [
                ("sent", [float(row[3]) for row in rows]),
                ("failed", [float(row[4]) for row in rows]),
                ("other", other),
            ],
        )
    return Section(
        "providers",
        "Providers",
        [
            ("provider", TEXT),
            ("messages", INT),
            ("share", PCT),
            ("sent", INT),
            ("failed", INT),
            ("failovers out", INT),
            ("failovers in", INT),
            ("throttle waits", INT),
            ("waited s", TEXT),
            ("circuit openings", INT),
            ("errors by class", TEXT),
            ("answer median ms", MS),
            ("answer p95 ms", MS),
            ("delivered", INT),
            ("hard bounces", INT),
            ("complaints", INT),
        ],
        rows,
        chart,
        "answer times: the upper bound of the time bucket holding the median and the 95th "
        "percentile of the adapter calls (one call per batch for batching providers)",
    )


def _groups(
    key: str, title: str, heading: str, groups: Sequence[GroupFigures], note: str | None
) -> Section:
    rows = [
        [
            g.group,
            g.messages,
            g.sent,
            g.failed,
            share(g.delivered, g.sent),
            share(g.bounced, g.sent),
            share(g.complained, g.delivered or g.sent),
            share(g.opened, g.delivered or g.sent),
        ]
        for g in groups
    ]
    chart = None
    if rows:
        other = [float(g.messages - g.delivered - g.bounced - g.failed) for g in groups]
        chart = Chart(
            "hstack",
            f"{title} (recipients)",
            [g.group or "(none)" for g in groups],
            [
                ("delivered", [float(g.delivered) for g in groups]),
                ("bounced", [float(g.bounced) for g in groups]),
                ("failed at hand-off", [float(g.failed) for g in groups]),
                ("no event", [max(0.0, v) for v in other]),
            ],
        )
    return Section(
        key,
        title,
        [
            (heading, TEXT),
            ("messages", INT),
            ("sent", INT),
            ("failed", INT),
            ("delivered", PCT),
            ("bounced", PCT),
            ("complained", PCT),
            ("opened", PCT),
        ],
        rows,
        chart,
        note,
    )


def _links(r: CampaignReport) -> Section:
    rows = [[link.url, link.clicks, link.unique] for link in r.links]
    chart = None
    if rows:
        chart = Chart(
            "hbar",
            "Clicks per link",
            [link.url for link in r.links],
            [
                ("clicks", [float(link.clicks) for link in r.links]),
                ("unique", [float(link.unique) for link in r.links]),
            ],
        )
    return Section(
        "links",
        "Links",
        [("link", TEXT), ("clicks", INT), ("unique", INT)],
        rows,
        chart,
        None if rows else "no clicks were reported",
    )


def campaign_sections(r: CampaignReport) -> list[Section]:
    """The sections of one campaign's report, in the order they are shown."""
    if r.segment_field is None:
        seg_note = "per segment: give --by FIELD (a contact field such as country or plan)"
    else:
        seg_note = f"grouped by the contact field {r.segment_field!r} as it was when planned"
    segments = _groups("segments", "Segments", r.segment_field or "segment", r.segments, seg_note)
    return [
        _funnel(r),
        _sends(r),
        _events(r),
        _providers(r),
        _groups(
            "domains",
            "Recipient domains",
            "domain",
            r.domains,
            "the 20 domains with the most recipients",
        ),
        _links(r),
        segments,
        Section(
            "variants",
            "Variants",
            [],
            [],
            None,
            "A/B variants: stamp sends one version of a campaign, so there are none to compare",
        ),
    ]


def campaigns_sections(r: CampaignsReport) -> list[Section]:
    """``--all``: one table of campaigns and the trend of their rates."""
    rows = []
    for line in r.campaigns:
        rt = line.rates
        rows.append(
            [
                line.campaign,
                line.first_send,
                line.counts["planned"],
                line.counts["sent"],
                rt["delivered"]["of_sent"],
                rt["bounced"]["of_sent"],
                rt["complained"]["of_delivered"]
                if line.counts["delivered"]
                else rt["complained"]["of_sent"],
                rt["unsubscribed"]["of_sent"],
                rt["opened"]["of_sent"],
                rt["clicked"]["of_sent"],
            ]
        )
    chart = None
    sent = [row for row in rows if row[3]]
    if sent:
        names = [str(row[0]) for row in sent]
        chart = Chart(
            "line",
            "Rates per campaign (of sent)",
            names,
            [
                (name, [float(row[i] or 0) for row in sent])
                for name, i in (("delivered", 4), ("bounced", 5), ("opened", 8), ("clicked", 9))
            ],
            percent=True,
        )
    return [
        Section(
            "campaigns",
            "Campaigns",
            [
                ("campaign", TEXT),
                ("first send (UTC)", TIME),
                ("planned", INT),
                ("sent", INT),
                ("delivered", PCT),
                ("bounced", PCT),
                ("complained", PCT),
                ("unsubscribed", PCT),
                ("opened", PCT),
                ("clicked", PCT),
            ],
            rows,
            chart,
            None if r.has_events else "no delivery events were received: only sends are known",
        )
    ]


def flags_text(flags: Sequence[Any]) -> list[str]:
    return [f"{f.text}: {f.value:.2%} (line {f.limit:.2%})" for f in flags]


def campaign_summary(r: CampaignReport) -> dict[str, Any]:
    """The few lines above the sections: campaign, store, when, pause."""
    return {
        "campaign": r.campaign,
        "store": r.store,
        "first_send": r.first_send,
        "last_send": r.last_send,
        "paused": r.paused_reason,
    }
