"""The report's SQL aggregation against a plain per-event Python count, on both backends.

A generated campaign with the cases that trip aggregates up: opens only a machine
made (each provider's way of saying so), a recipient opened by a machine and by a
person, repeated clicks on one link, bounces after a delivery, soft bounces with no
kind, deferrals, drops, events matched to no ledger row, an event on a row under
another address, one recipient's events from two providers, another campaign's
events for the same recipients, unsubscribes by event and by stamp's link. Every
figure of ``store.reports`` (the one-pass ``summary`` and the single-part methods)
must equal what a straightforward loop over the same events and rows computes.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stampcli.records import Claim, EventRow, NewRow, Outcome
from stampcli.records_report import GroupFigures
from stampcli.store import open_store, protocols

NAME = "dec"
MACHINE_RAWS = (
    '{"event":"open","sg_machine_open":true}',
    '{"event":"proxy_open"}',
    '{"event":"unique_proxy_open"}',
    '{"loadedByProxy":true,"event":"opened"}',
)
HUMAN_RAWS = ('{"event":"open","sg_machine_open":false}', "{}", '{"event":"opened"}')
LINKS = ("https://acme.example/a", "https://acme.example/b?x=1", "https://acme.example/c")
DOMAINS = ("a.example", "b.example", "c.example", "d.example", "e.example")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[protocols.Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'stamp.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    with open_store(url) as s:
        yield s


def _machine(raw: str) -> bool:
    return any(
        mark in raw
        for mark in (
            '"sg_machine_open":true',
            '"event":"proxy_open"',
            '"event":"unique_proxy_open"',
            '"loadedByProxy":true',
        )
    )


def _fill(store: protocols.Store, seed: int) -> tuple[int, list[dict[str, Any]], list[EventRow]]:
    """The campaign (and another one), its ledger rows as dicts, and every event stored."""
    rnd = random.Random(seed)
    cid = store.campaigns.ensure(NAME).id
    other = store.campaigns.ensure("other").id
    keys = [f"u{i:03d}@{DOMAINS[i % len(DOMAINS) if i % 7 else 0]}" for i in range(90)]
    plans = ["free", "pro", "team", None]
    fields = []
    for i in range(len(keys)):
        plan = plans[i % 4]
        fields.append(json.dumps({} if plan is None else {"plan": plan}))
    store.ledger.insert(cid, [NewRow(k, k, f) for k, f in zip(keys, fields, strict=True)])
    store.ledger.insert(other, [NewRow(k, k, "{}") for k in keys[:30]])
    rows = store.ledger.read_pending(cid, after_id=0, limit=1000)
    states: dict[int, str] = {}
    claims, skipped, fates = [], [], []
    for i, r in enumerate(rows):
        if i % 17 == 5:
            skipped.append((r.id, "suppressed"))
            states[r.id] = "suppressed"
        elif i % 23 == 7:
            states[r.id] = "pending"  # never sent
        else:
            claims.append(Claim(r.id, f"<{r.key}>"))
            if i % 11 == 3:
                fates.append(Outcome(r.id, "failed", "sg", None, "550 no"))
                states[r.id] = "failed"
            else:
                fates.append(Outcome(r.id, "sent", "sg" if i % 3 else "mg", f"m{i}"))
                states[r.id] = "sent"
    store.ledger.claim(claims, skipped)
    store.ledger.record(fates)
    ledger = [
        {"id": r.id, "key": r.key, "fields": json.loads(f), "state": states[r.id]}
        for r, f in zip(rows, fields, strict=True)
    ]
    t0 = time.time() + 10
    events: list[EventRow] = []
    n = 0

    def ev(kind: str, key: str, lid: int | None, *, c: int = cid, **kw: Any) -> None:
        nonlocal n
        n += 1
        provider = kw.pop("provider", rnd.choice(("sg", "sg", "mg", "brevo")))
        events.append(
            EventRow(
                provider,
                f"e{n}",
                kind,
                t0 + rnd.uniform(0, 5000),
                key,
                campaign_id=c,
                ledger_id=lid,
                **kw,
            )
        )

    for row in ledger:
        if row["state"] != "sent" or row is ledger[4]:
            continue
        key, lid = row["key"], row["id"]
        fate = rnd.random()
        if fate < 0.08:  # bounced at once, hard or with no kind (soft)
            ev("deferred", key, lid, bounce_kind="soft")
            ev("bounced", key, lid, bounce_kind=rnd.choice(("hard", None, "soft")))
            continue
        ev("delivered", key, lid)
        if fate < 0.14:  # bounced after the delivery
            ev("bounced", key, lid, bounce_kind="hard")
        if rnd.random() < 0.05:
            ev("complained", key, lid)
        for _ in range(rnd.choice((0, 0, 1, 2, 3))):
            machine = rnd.random() < 0.4
            raw = rnd.choice(MACHINE_RAWS if machine else HUMAN_RAWS)
            ev("opened", key, lid, raw=raw)
        for _ in range(rnd.choice((0, 0, 0, 1, 3))):  # repeated clicks, often one link
            ev("clicked", key, lid, url=LINKS[0] if rnd.random() < 0.6 else rnd.choice(LINKS))
        if rnd.random() < 0.04:
            ev("unsubscribed", key, lid)
        if rnd.random() < 0.05:
            ev("dropped" if rnd.random() < 0.5 else "rejected", key, lid)
    first = ledger[0]["key"]
    # the same recipient's events from two providers (a failover's second provider)
    ev("delivered", ledger[1]["key"], ledger[1]["id"], provider="sg")
    ev("delivered", ledger[1]["key"], ledger[1]["id"], provider="mg")
    ev("opened", ledger[1]["key"], ledger[1]["id"], provider="mg", raw=MACHINE_RAWS[0])
    # unmatched: no ledger row, an address the campaign never had, and one of its own
    ev("opened", "stranger@z.example", None, raw="{}")
    ev("clicked", "stranger@z.example", None, url=LINKS[2])
    ev("delivered", first, None)
    ev("bounced", "ghost@a.example", None, bounce_kind="hard")
    # a row's event under another address (a forwarder), and only machine opens for one
    ev("opened", "alias@b.example", ledger[2]["id"], raw="{}")
    ev("complained", "alias@b.example", ledger[2]["id"])
    ev("delivered", ledger[4]["key"], ledger[4]["id"], provider="brevo")
    for raw in MACHINE_RAWS:
        ev("opened", ledger[4]["key"], ledger[4]["id"], raw=raw, provider="brevo")
    # another campaign's events for the same people must not count
    for row in ledger[:30]:
        ev("delivered", row["key"], None, c=other)
        ev("opened", row["key"], None, c=other, raw="{}")
        ev("clicked", row["key"], None, c=other, url=LINKS[1])
    # an event of no campaign at all
    ev("delivered", first, None, c=None)  # type: ignore[arg-type]
    store.events.add(events, received_at=t0 + 6000)
    unsub = [e.recipient for e in events if e.campaign_id == cid and e.type == "unsubscribed"]
    store.suppressions.add(ledger[6]["key"], "unsubscribed", f"unsubscribe:{NAME}")
    if unsub:
        store.suppressions.add(unsub[0], "unsubscribed", f"unsubscribe:{NAME}")  # both ways
    store.suppressions.add(ledger[8]["key"], "unsubscribed", "unsubscribe:other")
    return cid, ledger, events


def _expected(cid: int, ledger: list[dict[str, Any]], events: list[EventRow]) -> dict[str, Any]:
    mine = [e for e in events if e.campaign_id == cid]

    def who(pred: Any, among: list[EventRow] = mine) -> set[str]:
        return {e.recipient for e in among if pred(e)}

    hard = lambda e: e.type == "bounced" and e.bounce_kind == "hard"  # noqa: E731
    soft = lambda e: e.type == "bounced" and (e.bounce_kind or "soft") != "hard"  # noqa: E731
    types = Counter(e.type for e in mine)
    # by event, and by stamp's own link (a suppression with the campaign's source)
    unsub = who(lambda e: e.type == "unsubscribed") | {ledger[6]["key"]}
    states = Counter(r["state"] for r in ledger)
    funnel = {
        "planned": len(ledger),
        "sent": states["sent"],
        "failed": states["failed"],
        "suppressed": states["suppressed"],
        "unknown": states["unknown"],
        "deferred": states["deferred"],
        "pending": states["pending"] + states["sending"],
        "events": len(mine),
        "delivered": len(who(lambda e: e.type == "delivered")),
        "bounced": len(who(lambda e: e.type == "bounced")),
        "bounced_hard": len(who(hard)),
        "bounced_soft": len(who(soft)),
        "complained": len(who(lambda e: e.type == "complained")),
        "opened": len(who(lambda e: e.type == "opened")),
        "opened_human": len(who(lambda e: e.type == "opened" and not _machine(e.raw))),
        "opens": types["opened"],
        "opens_machine": sum(1 for e in mine if e.type == "opened" and _machine(e.raw)),
        "clicked": len(who(lambda e: e.type == "clicked")),
        "clicks": types["clicked"],
        "deferred_events": types["deferred"],
        "dropped": types["dropped"] + types["rejected"],
        "unsubscribed": len(unsub),
    }
    by_provider: dict[str, dict[str, int]] = {}
    for p in sorted({e.provider for e in mine}):
        of = [e for e in mine if e.provider == p]
        by_provider[p] = {
            "delivered": len(who(lambda e: e.type == "delivered", of)),
            "bounced_hard": len(who(hard, of)),
            "bounced_soft": len(who(soft, of)),
            "complained": len(who(lambda e: e.type == "complained", of)),
            "opened": len(who(lambda e: e.type == "opened", of)),
            "clicked": len(who(lambda e: e.type == "clicked", of)),
        }
    seen: dict[int, set[str]] = defaultdict(set)
    for e in mine:
        if e.ledger_id is not None:
            seen[e.ledger_id].add(e.type)

    def breakdown(group_of: Any, limit: int) -> list[GroupFigures]:
        groups: dict[Any, list[int]] = defaultdict(lambda: [0] * 7)
        for r in ledger:
            g = groups[group_of(r)]
            kinds = seen.get(r["id"], set())
            g[0] += 1
            g[1] += r["state"] == "sent"
            g[2] += r["state"] == "failed"
            for i, kind in enumerate(("delivered", "bounced", "complained", "opened"), 3):
                g[i] += kind in kinds
        # most rows first, then by group (a missing field, None, sorts first)
        order = sorted(groups, key=lambda g: (-groups[g][0], g is not None, g or ""))
        return [GroupFigures("" if g is None else g, *groups[g]) for g in order[:limit]]

    clicks: dict[str, list[Any]] = defaultdict(lambda: [0, set()])
    for e in mine:
        if e.type == "clicked" and e.url is not None:
            clicks[e.url][0] += 1
            clicks[e.url][1].add(e.recipient)
    links = sorted(((u, c, len(r)) for u, (c, r) in clicks.items()), key=lambda x: (-x[1], x[0]))
    return {
        "funnel": funnel,
        "providers": by_provider,
        "domains": breakdown(lambda r: r["key"].split("@", 1)[1], 3),
        "segments": breakdown(lambda r: r["fields"].get("plan"), 50),
        "links": links,
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_every_figure_equals_a_per_event_count(store: protocols.Store, seed: int) -> None:
    cid, ledger, events = _fill(store, seed)
    want = _expected(cid, ledger, events)
    summary = store.reports.summary(cid, NAME, segment="plan", domains=3)
    assert summary.funnel == want["funnel"]
    assert store.reports.funnel(cid, NAME) == want["funnel"]
    got_providers = {
        p.provider: p.events for p in summary.providers if p.provider in want["providers"]
    }
    assert got_providers == want["providers"]
    # a provider with ledger rows but no events of its own has zeros
    for p in summary.providers:
        if p.provider not in want["providers"]:
            assert set(p.events.values()) == {0}
    assert [p.events for p in store.reports.providers(cid)] == [p.events for p in summary.providers]
    assert summary.domains == want["domains"]
    assert store.reports.domains(cid, 3) == want["domains"]
    assert summary.segments == want["segments"]
    assert store.reports.segments(cid, "plan") == want["segments"]
    assert [(x.url, x.clicks, x.unique) for x in store.reports.links(cid)] == want["links"]


def test_event_timeline_equals_a_per_event_count(store: protocols.Store) -> None:
    cid, _, events = _fill(store, 3)
    start = min(e.occurred_at for e in events if e.campaign_id == cid) + 7.5
    width = 60.0
    want: Counter[tuple[int, str]] = Counter()
    for e in events:
        if e.campaign_id == cid and e.occurred_at >= start:
            want[(int((e.occurred_at - start) / width), e.type)] += 1
    got = store.reports.timeline(cid, start=start, width=width, events=True)
    assert {(p.bucket, p.kind): p.count for p in got} == dict(want)


def test_sqlite_report_never_scans_the_events_table(tmp_path: Path) -> None:
    """Every statement of a whole report reads the events through an index (the
    report's covering one for the counts), never by walking the table."""
    from stampcli.service.report import campaign_report
    from stampcli.store.reports import SQLiteReports

    with open_store(tmp_path / "stamp.db") as s:
        _fill(s, 4)
        seen: list[tuple[str, tuple[Any, ...]]] = []
        run = SQLiteReports._run

        def spy(self: SQLiteReports, sql: str, params: Any) -> list[tuple[Any, ...]]:
            seen.append((sql, tuple(params)))
            return run(self, sql, params)

        SQLiteReports._run = spy  # type: ignore[method-assign]
        try:
            campaign_report(s, NAME, segment_by="plan")
        finally:
            SQLiteReports._run = run  # type: ignore[method-assign]
        conn = s.conn  # type: ignore[attr-defined]
        covering = 0
        for sql, params in seen:
            if "events" not in sql:
                continue
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            # SEARCH is a range of an index; SCAN e / SCAN events walks all the store's
            assert not [p for p in plan if re.match(r"SCAN (e|events)\b", p)], (sql, plan)
            covering += sum("COVERING INDEX events_for_report" in p for p in plan)
        assert covering >= 10  # the funnel's ranges, the providers', the per-row pass, ...


def test_read_only_store_reports_the_same(store: protocols.Store) -> None:
    """A read-only open (what `stamp report` may use) gives the same figures."""
    cid, _, _ = _fill(store, 5)
    want = store.reports.summary(cid, NAME, segment="plan")
    with open_store(store.location, readonly=True) as ro:
        assert ro.reports.summary(cid, NAME, segment="plan") == want


def test_sqlite_store_made_before_the_index_gets_it_when_opened_for_writing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stamp.db"
    with open_store(path) as s:
        cid, ledger, events = _fill(s, 6)
        s.conn.execute("DROP INDEX events_for_report")  # type: ignore[attr-defined]
        s.conn.execute("PRAGMA user_version = 3")  # type: ignore[attr-defined]
    want = _expected(cid, ledger, events)["funnel"]
    with open_store(path, readonly=True) as ro:  # a read may not add it, and need not
        assert ro.reports.funnel(cid, NAME) == want
    with open_store(path) as s:
        names = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master")}  # type: ignore[attr-defined]
        assert "events_for_report" in names
        assert s.reports.funnel(cid, NAME) == want
