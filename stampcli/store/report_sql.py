"""The report's aggregates as SQL, written once for both backends.

Every figure of ``stamp report`` is aggregated in the database: a campaign of a
million recipients and three million events is never read into Python, only its
counts are. The statements are plain SQL both SQLite and PostgreSQL run
(``COUNT(CASE WHEN ... THEN 1 END)``, ``SELECT DISTINCT``, window sums); where the
two dialects differ (a placeholder, the domain of an address, a bucket number, a
JSON field, an index hint) :class:`Dialect` supplies the piece, so the two backends
cannot drift apart. The backends (``store/reports.py``, ``store/postgres/reports.py``)
only run them and write the router's tallies.

How the events are read (what makes a 1M-recipient report take seconds): through
the ``events_for_report`` index only (campaign, type, recipient, provider, ledger
row, bounce kind, time), never the table and its raw text, except the opens' raw
text for the machine-open mark. A count of distinct recipients of one outcome is
one range of that index walked in recipient order (no sort, no per-event
aggregate); the funnel reads each event about once, each provider its own part
again; the domains and segments share one pass per ledger row, joined to the
ledger once; the timeline and the links are one pass each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stampcli.records_report import (
    CampaignRef,
    GroupFigures,
    LinkFigures,
    ProviderFigures,
    ReportSummary,
    Spans,
    TimePoint,
)

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
"""Runs one statement with ``?`` placeholders and returns every row."""

# An open a machine made (a privacy proxy fetching every image, a scanner), where the
# provider's event says so: SendGrid's sg_machine_open, Brevo's proxy_open events and
# its pull's loadedByProxy. Matched in the stored raw event (canonical JSON, sorted keys,
# no spaces: stampcli.events.model.raw_json). Other providers do not say; their opens
# count as human.
MACHINE_OPEN = (
    "(e.type = 'opened' AND (e.raw LIKE '%\"sg_machine_open\":true%' "
    'OR e.raw LIKE \'%"event":"proxy_open"%\' OR e.raw LIKE \'%"event":"unique_proxy_open"%\' '
    "OR e.raw LIKE '%\"loadedByProxy\":true%'))"
)
HUMAN_OPEN = f"(e.type = 'opened' AND NOT {MACHINE_OPEN})"
_HARD = "(e.type = 'bounced' AND e.bounce_kind = 'hard')"
_SOFT = "(e.type = 'bounced' AND COALESCE(e.bounce_kind, 'soft') <> 'hard')"


@dataclass(slots=True)
class Outcomes:
    """What :func:`outcomes` found: the funnel's distinct recipients per outcome, the same
    per provider, and the domain and segment breakdowns."""

    funnel: dict[str, int] = field(default_factory=dict)
    providers: dict[str, dict[str, int]] = field(default_factory=dict)
    domains: list[GroupFigures] = field(default_factory=list)
    segments: list[GroupFigures] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The pieces of SQL that differ between the backends."""

    name: str
    domain: str  # the domain part of ``l.key``
    bucket: str  # ``{x}`` as a whole bucket number (x >= 0)
    json_field: str  # the text of field ``?`` of ``l.fields`` (JSON text)
    # the events as ``e``, read through events_by_campaign (campaign, type): SQLite
    # would otherwise walk the opens through events_for_report in recipient order
    events_by_type: str
    # whether GROUP BY and joins hash (PostgreSQL) rather than sort (SQLite): then the
    # providers' figures are one pass over the (type, recipient, provider) triples and
    # the openers come from one per-recipient count of opens joined to the machine
    # opens; SQLite walks each provider's part of the ranges and seeks per machine opener
    hashed: bool


SQLITE = Dialect(
    "sqlite",
    domain="substr(l.key, instr(l.key, '@') + 1)",
    bucket="CAST({x} AS INTEGER)",
    json_field="CAST(json_extract(l.fields, ?) AS TEXT)",
    events_by_type="events e INDEXED BY events_by_campaign",
    hashed=False,
)
POSTGRES = Dialect(
    "postgres",
    domain="substr(l.key, strpos(l.key, '@') + 1)",
    bucket="CAST(floor({x}) AS bigint)",
    json_field="(l.fields::jsonb ->> ?)",
    events_by_type="events e",
    hashed=True,
)


def json_path(dialect: Dialect, name: str) -> str:
    """The parameter that names contact field ``name`` for :attr:`Dialect.json_field`."""
    if dialect.name == "sqlite":
        return '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


_LEDGER_FUNNEL = (
    "SELECT COUNT(*), COUNT(CASE WHEN state = 'sent' THEN 1 END), "
    "COUNT(CASE WHEN state = 'failed' THEN 1 END), "
    "COUNT(CASE WHEN state = 'suppressed' THEN 1 END), "
    "COUNT(CASE WHEN state = 'unknown' THEN 1 END), "
    "COUNT(CASE WHEN state = 'deferred' THEN 1 END), "
    "COUNT(CASE WHEN state = 'pending' OR state = 'sending' THEN 1 END) "
    "FROM ledger WHERE campaign_id = ?"
)
LEDGER_KEYS = ("planned", "sent", "failed", "suppressed", "unknown", "deferred", "pending")


# The event side of the report reads the campaign's events through one index that
# holds every column it needs (events_for_report: campaign, type, recipient, provider,
# ledger row, bounce kind, time), never the table: a campaign's events of one type are
# one range of it, its recipients in order. "How many recipients had a delivery" is
# then a walk along that range counting changes of recipient (no sort, no per-event
# aggregate), and the funnel's outcomes together read each event about once.
def _recipients(cond: str) -> str:
    """The number of distinct recipients of the campaign's events matching ``cond``
    (one ``?``: the campaign; ``cond`` names the type first: one range of the index)."""
    return (
        "(SELECT COUNT(*) FROM (SELECT DISTINCT e.recipient FROM events e "
        f"WHERE e.campaign_id = ? AND {cond}) AS x)"
    )


_OUTCOMES = (
    ("delivered", "e.type = 'delivered'"),
    ("bounced", "e.type = 'bounced'"),
    ("bounced_hard", _HARD),
    ("bounced_soft", _SOFT),
    ("complained", "e.type = 'complained'"),
    ("opened", "e.type = 'opened'"),
    ("clicked", "e.type = 'clicked'"),
)
OUTCOME_KEYS = tuple(k for k, _ in _OUTCOMES)
# Machine opens are the one figure in the raw event: only the opens are read for it
# (through events_by_campaign, in the order they were stored), per recipient. A
# recipient opened only by machines is one whose opens all are; the funnel's human
# openers are the openers less those.
_MACHINE_OPENS = (
    "SELECT e.recipient AS rc, COUNT(*) AS n FROM {events_by_type} "
    f"WHERE e.campaign_id = ? AND {MACHINE_OPEN} GROUP BY e.recipient"
)
_FUNNEL = (
    "WITH m AS ({machine}) SELECT "
    + ", ".join(_recipients(cond) for _, cond in _OUTCOMES)
    + ", COALESCE((SELECT SUM(n) FROM m), 0), "
    "(SELECT COUNT(*) FROM m WHERE m.n = (SELECT COUNT(*) FROM events e "
    "WHERE e.campaign_id = ? AND e.type = 'opened' AND e.recipient = m.rc)), "
    # provider events of the type, and stamp's own unsubscribe link (server/unsubscribe.py)
    "(SELECT COUNT(*) FROM (SELECT e.recipient FROM events e "
    "WHERE e.campaign_id = ? AND e.type = 'unsubscribed' "
    "UNION SELECT s.key FROM suppressions s WHERE s.source = ?) AS u)"
)
# the same where joins hash: the opens counted per recipient once (o), which gives the
# openers, and joined to the machine opens for those opened only by machines
_FUNNEL_HASHED = (
    "WITH m AS ({machine}), o AS (SELECT e.recipient AS rc, COUNT(*) AS n FROM events e "
    "WHERE e.campaign_id = ? AND e.type = 'opened' GROUP BY e.recipient) SELECT "
    + ", ".join(
        "(SELECT COUNT(*) FROM o)" if key == "opened" else _recipients(cond)
        for key, cond in _OUTCOMES
    )
    + ", COALESCE((SELECT SUM(n) FROM m), 0), "
    "(SELECT COUNT(*) FROM m JOIN o ON o.rc = m.rc AND o.n = m.n), "
    "(SELECT COUNT(*) FROM (SELECT e.recipient FROM events e "
    "WHERE e.campaign_id = ? AND e.type = 'unsubscribed' "
    "UNION SELECT s.key FROM suppressions s WHERE s.source = ?) AS u)"
)
# Every provider label of the store, by skipping along the (provider, event_id) index
# one label at a time, that has an event of the campaign
_EVENT_PROVIDERS = (
    "WITH RECURSIVE p(v) AS (SELECT MIN(provider) FROM events UNION ALL "
    "SELECT (SELECT MIN(e.provider) FROM events e WHERE e.provider > p.v) FROM p "
    "WHERE p.v IS NOT NULL) SELECT v FROM p WHERE v IS NOT NULL AND EXISTS "
    "(SELECT 1 FROM events e WHERE e.campaign_id = ? AND e.provider = p.v)"
)
# what ProviderFigures.events holds, each counted along the provider's part of a range
PROVIDER_EVENT_KEYS = (
    "delivered", "bounced_hard", "bounced_soft", "complained", "opened", "clicked",
)  # fmt: skip
_PROVIDER = "SELECT " + ", ".join(
    _recipients(f"{cond} AND e.provider = ?")
    for key, cond in _OUTCOMES
    if key in PROVIDER_EVENT_KEYS
)
# the same in one pass: the distinct (type, recipient, provider) in the index's order,
# counted per (provider, type); bounces (few) per provider and kind apart
_PROVIDERS_ONE_PASS = (
    "SELECT x.provider, x.type, COUNT(*) FROM (SELECT DISTINCT e.type, e.recipient, "
    "e.provider FROM events e WHERE e.campaign_id = ?) AS x "
    "WHERE x.type <> 'bounced' GROUP BY x.provider, x.type "
    "UNION ALL SELECT b.provider, b.kind, COUNT(*) FROM (SELECT DISTINCT e.provider, "
    "CASE WHEN e.bounce_kind = 'hard' THEN 'bounced_hard' ELSE 'bounced_soft' END AS kind, "
    "e.recipient FROM events e WHERE e.campaign_id = ? AND e.type = 'bounced') AS b "
    "GROUP BY b.provider, b.kind"
)
# Per ledger row, which outcomes its events showed (1/0), for the domains and segments:
# one pass over the index, shared by both breakdowns of one statement.
_PER_ROW = (
    "per_row AS (SELECT e.ledger_id AS lid, "
    "MAX(CASE WHEN e.type = 'delivered' THEN 1 ELSE 0 END) AS d, "
    "MAX(CASE WHEN e.type = 'bounced' THEN 1 ELSE 0 END) AS b, "
    "MAX(CASE WHEN e.type = 'complained' THEN 1 ELSE 0 END) AS c, "
    "MAX(CASE WHEN e.type = 'opened' THEN 1 ELSE 0 END) AS o "
    "FROM events e WHERE e.campaign_id = ? "
    "AND e.type IN ('delivered', 'bounced', 'complained', 'opened') "
    "AND e.ledger_id IS NOT NULL GROUP BY e.ledger_id)"
)
# the campaign's ledger rows with their group(s) and outcomes: one ledger pass and one
# join for both breakdowns
_JOINED = (
    "j AS (SELECT {groups}, l.state, d, b, c, o FROM ledger l "
    "LEFT JOIN per_row ON per_row.lid = l.id WHERE l.campaign_id = ?)"
)
_BREAKDOWN = (
    "SELECT * FROM (SELECT '{section}', {section}g, COUNT(*), "
    "COUNT(CASE WHEN state = 'sent' THEN 1 END), COUNT(CASE WHEN state = 'failed' THEN 1 END), "
    "COALESCE(SUM(d), 0), COALESCE(SUM(b), 0), COALESCE(SUM(c), 0), COALESCE(SUM(o), 0) "
    # a missing field (NULL) sorts first on both backends (PostgreSQL would put it last)
    "FROM j GROUP BY {section}g ORDER BY COUNT(*) DESC, "
    "CASE WHEN {section}g IS NULL THEN 0 ELSE 1 END, {section}g LIMIT ?) AS {section}"
)
# the totals a per-type count gives (an index-only count)
_TYPE_COUNTS = "SELECT e.type, COUNT(*) FROM events e WHERE e.campaign_id = ? GROUP BY e.type"


def outcomes(
    run: Run,
    dialect: Dialect,
    campaign_id: int,
    name: str | None,
    *,
    providers: bool = False,
    domains: int | None = None,
    segment: str | None = None,
    segments: int = 50,
) -> Outcomes:
    """The event side of the report, each part in one statement over the index.

    ``name`` given: the funnel's distinct recipients per outcome (and unsubscribed,
    also by stamp's own link); ``providers``: the same per provider; ``domains``: the
    largest that many recipient domains; ``segment``: the largest ``segments`` values
    of that contact field (both breakdowns in one statement, one pass for both).
    """
    out = Outcomes()
    if name is not None:
        machine = _MACHINE_OPENS.format(events_by_type=dialect.events_by_type)
        sql = (_FUNNEL_HASHED if dialect.hashed else _FUNNEL).format(machine=machine)
        # every placeholder is the campaign but the last, the unsubscribe link's source
        params = [campaign_id] * (sql.count("?") - 1) + [f"unsubscribe:{name}"]
        numbers = [int(v or 0) for v in run(sql, params)[0]]
        out.funnel.update(zip(OUTCOME_KEYS, numbers, strict=False))
        k = len(_OUTCOMES)
        out.funnel["opens_machine"] = numbers[k]
        out.funnel["opened_human"] = out.funnel["opened"] - numbers[k + 1]
        out.funnel["unsubscribed"] = numbers[k + 2]
    if providers and dialect.hashed:
        for label, kind, n in run(_PROVIDERS_ONE_PASS, (campaign_id, campaign_id)):
            # every provider with an event is here, one whose events are all of other
            # types (deferrals, drops) with zeros
            figures = out.providers.setdefault(str(label), dict.fromkeys(PROVIDER_EVENT_KEYS, 0))
            if kind in figures:
                figures[str(kind)] = int(n)
    elif providers:
        for (label,) in run(_EVENT_PROVIDERS, (campaign_id,)):
            row = run(_PROVIDER, [campaign_id, label] * len(PROVIDER_EVENT_KEYS))[0]
            out.providers[str(label)] = {
                key: int(v or 0) for key, v in zip(PROVIDER_EVENT_KEYS, row, strict=True)
            }
    groups: list[str] = []
    group_params: list[Any] = []
    parts: list[str] = []
    limits: list[Any] = []
    if domains is not None:
        groups.append(f"{dialect.domain} AS dg")
        parts.append(_BREAKDOWN.format(section="d"))
        limits.append(domains)
    if segment is not None:
        groups.append(f"{dialect.json_field} AS sg")
        group_params.append(json_path(dialect, segment))
        parts.append(_BREAKDOWN.format(section="s"))
        limits.append(segments)
    if parts:
        joined = _JOINED.format(groups=", ".join(groups))
        sql = f"WITH {_PER_ROW}, {joined} " + " UNION ALL ".join(parts)
        params = [campaign_id, *group_params, campaign_id, *limits]
        for section, group, *values in run(sql, params):
            group_row = GroupFigures("" if group is None else str(group), *(int(v) for v in values))
            (out.domains if section == "d" else out.segments).append(group_row)
    return out


def type_counts(run: Run, campaign_id: int) -> dict[str, int]:
    """The campaign's events per type (an index-only count)."""
    return {str(t): int(n) for t, n in run(_TYPE_COUNTS, (campaign_id,))}


def funnel(run: Run, dialect: Dialect, campaign_id: int, name: str) -> dict[str, int]:
    """The campaign's funnel counts: ledger states, and distinct recipients per event."""
    return funnel_of(run, campaign_id, outcomes(run, dialect, campaign_id, name))


def funnel_of(run: Run, campaign_id: int, found: Outcomes) -> dict[str, int]:
    """The funnel: ledger states, the event totals by type, and ``found``'s outcomes."""
    out = dict(zip(LEDGER_KEYS, run(_LEDGER_FUNNEL, (campaign_id,))[0], strict=True))
    types = type_counts(run, campaign_id)
    seen = found.funnel
    out.update(
        events=sum(types.values()),
        **{k: seen.get(k, 0) for k in OUTCOME_KEYS[:6]},
        opened_human=seen.get("opened_human", 0),
        opens=types.get("opened", 0),
        opens_machine=seen.get("opens_machine", 0),
        clicked=seen.get("clicked", 0),
        clicks=types.get("clicked", 0),
        deferred_events=types.get("deferred", 0),
        dropped=types.get("dropped", 0) + types.get("rejected", 0),
        unsubscribed=seen.get("unsubscribed", 0),
    )
    return {k: int(v or 0) for k, v in out.items()}


def summary(
    run: Run,
    dialect: Dialect,
    campaign_id: int,
    name: str,
    *,
    domains: int,
    segment: str | None,
    segments: int,
) -> ReportSummary:
    """The funnel, the providers, the domains and the segments, from one events pass."""
    found = outcomes(
        run,
        dialect,
        campaign_id,
        name,
        providers=True,
        domains=domains,
        segment=segment,
        segments=segments,
    )
    return ReportSummary(
        funnel_of(run, campaign_id, found),
        providers_of(run, campaign_id, found),
        found.domains,
        found.segments,
    )


def domains(run: Run, dialect: Dialect, campaign_id: int, limit: int) -> list[GroupFigures]:
    return outcomes(run, dialect, campaign_id, None, domains=limit).domains


def segments(
    run: Run, dialect: Dialect, campaign_id: int, field: str, limit: int
) -> list[GroupFigures]:
    return outcomes(run, dialect, campaign_id, None, segment=field, segments=limit).segments


def spans(run: Run, campaign_id: int) -> Spans:
    send = run(
        "SELECT MIN(first_attempt_at), MAX(sent_at) FROM ledger WHERE campaign_id = ?",
        (campaign_id,),
    )[0]
    ev = run(
        "SELECT MIN(occurred_at), MAX(occurred_at) FROM events WHERE campaign_id = ?",
        (campaign_id,),
    )[0]
    return Spans(send[0], send[1], ev[0], ev[1])


def timeline(
    run: Run, dialect: Dialect, campaign_id: int, *, start: float, width: float, events: bool
) -> list[TimePoint]:
    """Sends (``events=False``) or events by type (``events=True``) per bucket of
    ``width`` seconds from ``start``; empty buckets are left out."""
    if events:
        b = dialect.bucket.format(x="(e.occurred_at - ?) / ?")
        sql = (
            f"SELECT {b} AS b, e.type, COUNT(*) FROM events e "
            "WHERE e.campaign_id = ? AND e.occurred_at >= ? GROUP BY b, e.type ORDER BY b"
        )
    else:
        b = dialect.bucket.format(x="(l.sent_at - ?) / ?")
        sql = (
            f"SELECT {b} AS b, 'sent', COUNT(*) FROM ledger l "
            "WHERE l.campaign_id = ? AND l.sent_at >= ? GROUP BY b ORDER BY b"
        )
    rows = run(sql, (start, width, campaign_id, start))
    return [TimePoint(int(r[0]), str(r[1]), int(r[2])) for r in rows]


def links(run: Run, campaign_id: int) -> list[LinkFigures]:
    rows = run(
        "SELECT e.url, COUNT(*), COUNT(DISTINCT e.recipient) FROM events e "
        "WHERE e.campaign_id = ? AND e.type = 'clicked' AND e.url IS NOT NULL "
        "GROUP BY e.url ORDER BY COUNT(*) DESC, e.url",
        (campaign_id,),
    )
    return [LinkFigures(str(r[0]), int(r[1]), int(r[2])) for r in rows]


_PROVIDER_STATES = (
    "SELECT l.provider, l.state, COUNT(*) FROM ledger l "
    "WHERE l.campaign_id = ? AND l.provider IS NOT NULL GROUP BY l.provider, l.state"
)
_TALLIES = (
    "SELECT provider, metric, SUM(value) FROM provider_tallies WHERE campaign_id = ? "
    "GROUP BY provider, metric"
)
# the median and 95th percentile answer time: the first bucket whose running total
# reaches that share of the provider's timed calls
_PERCENTILES = (
    "SELECT provider, MAX(total), "
    "MIN(CASE WHEN running * 2 >= total THEN le_ms END), "
    "MIN(CASE WHEN running * 20 >= total * 19 THEN le_ms END) "
    "FROM (SELECT provider, le_ms, "
    "SUM(n) OVER (PARTITION BY provider ORDER BY le_ms) AS running, "
    "SUM(n) OVER (PARTITION BY provider) AS total "
    "FROM (SELECT provider, le_ms, SUM(calls) AS n FROM provider_answer_times "
    "WHERE campaign_id = ? GROUP BY provider, le_ms) AS h) AS c GROUP BY provider"
)


def providers(run: Run, dialect: Dialect, campaign_id: int) -> list[ProviderFigures]:
    return providers_of(run, campaign_id, outcomes(run, dialect, campaign_id, None, providers=True))


def providers_of(run: Run, campaign_id: int, found: Outcomes) -> list[ProviderFigures]:
    """Per provider: ledger rows by state, ``found``'s outcomes, the router's tallies."""
    states: dict[str, dict[str, int]] = {}
    for provider, state, n in run(_PROVIDER_STATES, (campaign_id,)):
        states.setdefault(str(provider), {})[str(state)] = int(n)
    events = {
        provider: {k: figures.get(k, 0) for k in PROVIDER_EVENT_KEYS}
        for provider, figures in found.providers.items()
    }
    tallies: dict[str, dict[str, int]] = {}
    for provider, metric, value in run(_TALLIES, (campaign_id,)):
        tallies.setdefault(str(provider), {})[str(metric)] = int(value)
    times: dict[str, tuple[int, int | None, int | None]] = {}
    for provider, total, p50, p95 in run(_PERCENTILES, (campaign_id,)):
        times[str(provider)] = (
            int(total or 0),
            None if p50 is None else int(p50),
            None if p95 is None else int(p95),
        )
    out = []
    for name in sorted(set(states) | set(events) | set(tallies) | set(times)):
        t = tallies.get(name, {})
        total, p50, p95 = times.get(name, (0, None, None))
        out.append(
            ProviderFigures(
                provider=name,
                messages=sum(states.get(name, {}).values()),
                states=states.get(name, {}),
                events=events.get(name, dict.fromkeys(PROVIDER_EVENT_KEYS, 0)),
                answers={
                    k.removeprefix("answers."): v for k, v in t.items() if k.startswith("answers.")
                },
                failovers_out=t.get("failovers_out", 0),
                failovers_in=t.get("failovers_in", 0),
                throttle_waits=t.get("throttle_waits", 0),
                throttle_wait_ms=t.get("throttle_wait_ms", 0),
                circuit_opens=t.get("circuit_opens", 0),
                calls_timed=total,
                answer_p50_ms=p50,
                answer_p95_ms=p95,
            )
        )
    return out


def campaigns(run: Run, since: float | None) -> list[CampaignRef]:
    """Every campaign of the store (first sent at or after ``since``, if given), oldest first."""
    rows = run(
        "SELECT c.id, c.name, c.created_at, MIN(l.first_attempt_at) FROM campaigns c "
        "LEFT JOIN ledger l ON l.campaign_id = c.id GROUP BY c.id, c.name, c.created_at "
        "HAVING COALESCE(MIN(l.first_attempt_at), c.created_at) >= ? "
        "ORDER BY COALESCE(MIN(l.first_attempt_at), c.created_at), c.id",
        (since if since is not None else 0.0,),
    )
    return [CampaignRef(int(r[0]), str(r[1]), float(r[2]), r[3]) for r in rows]


class ReportReads:
    """The report's reads of :class:`stampcli.store.protocols.ReportStore`, once for both
    backends: each subclass gives its :attr:`dialect` and ``_run`` (how it runs one
    statement with ``?`` placeholders on its connection)."""

    dialect: Dialect

    def _run(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # each backend's own

    def funnel(self, campaign_id: int, name: str) -> dict[str, int]:
        return funnel(self._run, self.dialect, campaign_id, name)

    def summary(
        self,
        campaign_id: int,
        name: str,
        *,
        segment: str | None = None,
        domains: int = 20,
        segments: int = 50,
    ) -> ReportSummary:
        return summary(
            self._run,
            self.dialect,
            campaign_id,
            name,
            domains=domains,
            segment=segment,
            segments=segments,
        )

    def spans(self, campaign_id: int) -> Spans:
        return spans(self._run, campaign_id)

    def timeline(
        self, campaign_id: int, *, start: float, width: float, events: bool
    ) -> list[TimePoint]:
        return timeline(
            self._run, self.dialect, campaign_id, start=start, width=width, events=events
        )

    def domains(self, campaign_id: int, limit: int = 20) -> list[GroupFigures]:
        return domains(self._run, self.dialect, campaign_id, limit)

    def segments(self, campaign_id: int, field: str, limit: int = 50) -> list[GroupFigures]:
        return segments(self._run, self.dialect, campaign_id, field, limit)

    def links(self, campaign_id: int) -> list[LinkFigures]:
        return links(self._run, campaign_id)

    def providers(self, campaign_id: int) -> list[ProviderFigures]:
        return providers(self._run, self.dialect, campaign_id)

    def campaigns(self, since: float | None = None) -> list[CampaignRef]:
        return campaigns(self._run, since)


def tally_rows(
    run_id: int, campaign_id: int, tallies: Sequence[Any]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``provider_tallies`` and ``provider_answer_times`` rows of ``tallies``
    (:class:`stampcli.records_report.ProviderTally`)."""
    metrics: list[tuple[Any, ...]] = []
    times: list[tuple[Any, ...]] = []
    for t in tallies:
        values = {f"answers.{k}": v for k, v in t.answers.items()}
        values.update(
            failovers_out=t.failovers_out,
            failovers_in=t.failovers_in,
            throttle_waits=t.throttle_waits,
            throttle_wait_ms=t.throttle_wait_ms,
            circuit_opens=t.circuit_opens,
        )
        metrics.extend((run_id, campaign_id, t.provider, k, int(v)) for k, v in values.items() if v)
        times.extend(
            (run_id, campaign_id, t.provider, int(le), int(n)) for le, n in t.answer_ms.items() if n
        )
    return metrics, times
