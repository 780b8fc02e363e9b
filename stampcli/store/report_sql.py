"""The report's aggregates as SQL, written once for both backends.

Every figure of ``stamp report`` is a GROUP BY in the database: a campaign of a
million recipients and three million events is never read into Python, only its
counts are. The statements are plain SQL both SQLite and PostgreSQL run
(``COUNT(CASE WHEN ... THEN 1 END)``, ``COUNT(DISTINCT ...)``, window sums);
where the two dialects differ (a placeholder, the domain of an address, a bucket
number, a JSON field) :class:`Dialect` supplies the piece, so the two backends
cannot drift apart. The backends (``store/reports.py``, ``store/postgres/reports.py``)
only run them and write the router's tallies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stampcli.records_report import (
    CampaignRef,
    GroupFigures,
    LinkFigures,
    ProviderFigures,
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


@dataclass(frozen=True, slots=True)
class Dialect:
    """The pieces of SQL that differ between the backends."""

    name: str
    domain: str  # the domain part of ``l.key``
    bucket: str  # ``{x}`` as a whole bucket number (x >= 0)
    json_field: str  # the text of field ``?`` of ``l.fields`` (JSON text)


SQLITE = Dialect(
    "sqlite",
    domain="substr(l.key, instr(l.key, '@') + 1)",
    bucket="CAST({x} AS INTEGER)",
    json_field="CAST(json_extract(l.fields, ?) AS TEXT)",
)
POSTGRES = Dialect(
    "postgres",
    domain="substr(l.key, strpos(l.key, '@') + 1)",
    bucket="CAST(floor({x}) AS bigint)",
    json_field="(l.fields::jsonb ->> ?)",
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

_EVENT_FUNNEL = (
    "SELECT COUNT(*), "
    "COUNT(DISTINCT CASE WHEN e.type = 'delivered' THEN e.recipient END), "
    "COUNT(DISTINCT CASE WHEN e.type = 'bounced' THEN e.recipient END), "
    f"COUNT(DISTINCT CASE WHEN {_HARD} THEN e.recipient END), "
    f"COUNT(DISTINCT CASE WHEN {_SOFT} THEN e.recipient END), "
    "COUNT(DISTINCT CASE WHEN e.type = 'complained' THEN e.recipient END), "
    "COUNT(DISTINCT CASE WHEN e.type = 'opened' THEN e.recipient END), "
    f"COUNT(DISTINCT CASE WHEN {HUMAN_OPEN} THEN e.recipient END), "
    "COUNT(CASE WHEN e.type = 'opened' THEN 1 END), "
    f"COUNT(CASE WHEN {MACHINE_OPEN} THEN 1 END), "
    "COUNT(DISTINCT CASE WHEN e.type = 'clicked' THEN e.recipient END), "
    "COUNT(CASE WHEN e.type = 'clicked' THEN 1 END), "
    "COUNT(CASE WHEN e.type = 'deferred' THEN 1 END), "
    "COUNT(CASE WHEN e.type = 'dropped' OR e.type = 'rejected' THEN 1 END) "
    "FROM events e WHERE e.campaign_id = ?"
)
EVENT_KEYS = (
    "events", "delivered", "bounced", "bounced_hard", "bounced_soft", "complained", "opened",
    "opened_human", "opens", "opens_machine", "clicked", "clicks", "deferred_events",
    "dropped",
)  # fmt: skip
# provider events of the type, and stamp's own unsubscribe link (server/unsubscribe.py)
_UNSUBSCRIBED = (
    "SELECT COUNT(*) FROM (SELECT e.recipient FROM events e "
    "WHERE e.campaign_id = ? AND e.type = 'unsubscribed' "
    "UNION SELECT s.key FROM suppressions s WHERE s.source = ?) AS u"
)


def funnel(run: Run, campaign_id: int, name: str) -> dict[str, int]:
    """The campaign's funnel counts: ledger states, and distinct recipients per event."""
    out = dict(zip(LEDGER_KEYS, run(_LEDGER_FUNNEL, (campaign_id,))[0], strict=True))
    out.update(zip(EVENT_KEYS, run(_EVENT_FUNNEL, (campaign_id,))[0], strict=True))
    out["unsubscribed"] = run(_UNSUBSCRIBED, (campaign_id, f"unsubscribe:{name}"))[0][0]
    return {k: int(v or 0) for k, v in out.items()}


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


# Per ledger row, which outcomes its events showed (1/0): joined to the ledger by row id.
_PER_ROW = (
    "SELECT e.ledger_id, "
    "MAX(CASE WHEN e.type = 'delivered' THEN 1 ELSE 0 END) AS d, "
    "MAX(CASE WHEN e.type = 'bounced' THEN 1 ELSE 0 END) AS b, "
    "MAX(CASE WHEN e.type = 'complained' THEN 1 ELSE 0 END) AS c, "
    "MAX(CASE WHEN e.type = 'opened' THEN 1 ELSE 0 END) AS o "
    "FROM events e WHERE e.campaign_id = ? AND e.ledger_id IS NOT NULL GROUP BY e.ledger_id"
)


def breakdown(
    run: Run, group: str, campaign_id: int, *, limit: int, group_params: Sequence[Any] = ()
) -> list[GroupFigures]:
    """Rows grouped by the SQL expression ``group`` over ledger ``l`` (a domain, a
    contact field), the largest ``limit`` groups first."""
    sql = (
        f"SELECT g, COUNT(*), COUNT(CASE WHEN state = 'sent' THEN 1 END), "
        "COUNT(CASE WHEN state = 'failed' THEN 1 END), "
        "COALESCE(SUM(d), 0), COALESCE(SUM(b), 0), COALESCE(SUM(c), 0), COALESCE(SUM(o), 0) "
        f"FROM (SELECT l.id, {group} AS g, l.state FROM ledger l WHERE l.campaign_id = ?) AS r "
        f"LEFT JOIN ({_PER_ROW}) AS ev ON ev.ledger_id = r.id "
        "GROUP BY g ORDER BY COUNT(*) DESC, g LIMIT ?"
    )
    rows = run(sql, (*group_params, campaign_id, campaign_id, limit))
    return [GroupFigures("" if r[0] is None else str(r[0]), *(int(v) for v in r[1:])) for r in rows]


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
_PROVIDER_EVENTS = (
    "SELECT e.provider, "
    "COUNT(DISTINCT CASE WHEN e.type = 'delivered' THEN e.recipient END), "
    f"COUNT(DISTINCT CASE WHEN {_HARD} THEN e.recipient END), "
    f"COUNT(DISTINCT CASE WHEN {_SOFT} THEN e.recipient END), "
    "COUNT(DISTINCT CASE WHEN e.type = 'complained' THEN e.recipient END), "
    "COUNT(DISTINCT CASE WHEN e.type = 'opened' THEN e.recipient END), "
    "COUNT(DISTINCT CASE WHEN e.type = 'clicked' THEN e.recipient END) "
    "FROM events e WHERE e.campaign_id = ? GROUP BY e.provider"
)
_PROVIDER_EVENT_KEYS = (
    "delivered", "bounced_hard", "bounced_soft", "complained", "opened", "clicked",
)  # fmt: skip
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


def providers(run: Run, campaign_id: int) -> list[ProviderFigures]:
    states: dict[str, dict[str, int]] = {}
    for provider, state, n in run(_PROVIDER_STATES, (campaign_id,)):
        states.setdefault(str(provider), {})[str(state)] = int(n)
    events: dict[str, dict[str, int]] = {}
    for provider, *values in run(_PROVIDER_EVENTS, (campaign_id,)):
        events[str(provider)] = {
            k: int(v) for k, v in zip(_PROVIDER_EVENT_KEYS, values, strict=True)
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
                events=events.get(name, dict.fromkeys(_PROVIDER_EVENT_KEYS, 0)),
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
