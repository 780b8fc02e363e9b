"""The report's store contract (``store.reports``) and its use case, on both backends.

A store is filled with known sends, tallies and events through the protocols
only; every figure of :func:`stampcli.service.report.campaign_report` is then
checked exactly (counts and rates), the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stampcli.errors import InputError, StoreError
from stampcli.records import Claim, EventRow, NewRow, Outcome
from stampcli.records_report import ProviderTally
from stampcli.service.report import campaign_report, campaigns_report, link_order
from stampcli.store import open_store, protocols


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stamp.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[protocols.Store]:
    with open_store(url) as s:
        yield s


def _ev(kind: str, n: int, key: str, lid: int, cid: int, at: float, **kw: object) -> EventRow:
    return EventRow(
        "sg", f"{cid}-{kind}-{n}-{key}", kind, at, key, campaign_id=cid, ledger_id=lid, **kw
    )  # type: ignore[arg-type]


def fill(store: protocols.Store, name: str = "nov") -> int:
    """20 recipients (12 at a.example, 8 at b.example; country DE for the first 10):
    16 sent (10 by sg, 6 by mg after failing over), 3 failed, 1 suppressed; events:
    14 delivered, 2 hard and 1 soft bounce, 1 complaint, opens from 6 recipients
    (one of them only a machine's), clicks from 3, 1 unsubscribe by event and 1 by
    stamp's own link."""
    cid = store.campaigns.ensure(name).id
    T0 = time.time() + 5  # the events come after the sends
    keys = [f"u{i:02d}@{'a' if i < 12 else 'b'}.example" for i in range(20)]
    store.ledger.insert(
        cid,
        [
            NewRow(k, k, json.dumps({"country": "DE" if i < 10 else "FR"}))
            for i, k in enumerate(keys)
        ],
    )
    rows = store.ledger.read_pending(cid, after_id=0, limit=100)
    ids = {r.key: r.id for r in rows}
    store.ledger.claim(
        [Claim(r.id, f"<{r.key}>") for r in rows[:19]], [(rows[19].id, "suppressed")]
    )
    fates = []
    for i, r in enumerate(rows[:19]):
        if i < 16:
            fates.append(Outcome(r.id, "sent", "sg" if i < 10 else "mg", f"m{i}"))
        else:
            fates.append(Outcome(r.id, "failed", "sg", None, "550 no such user"))
    store.ledger.record(fates)
    run = store.runs.start(cid)
    store.reports.save_tallies(
        run,
        cid,
        [
            ProviderTally(
                "sg",
                {"accepted": 10, "recipient_rejected": 3, "provider_down": 6},
                {50: 10, 100: 8, 1000: 1},
                failovers_out=6,
                circuit_opens=1,
            ),
            ProviderTally(
                "mg",
                {"accepted": 6},
                {20: 6},
                failovers_in=6,
                throttle_waits=2,
                throttle_wait_ms=1500,
            ),
        ],
    )
    # a second save of the same run replaces the first (the heartbeat saves totals so far)
    store.reports.save_tallies(
        run,
        cid,
        [
            ProviderTally(
                "sg",
                {"accepted": 10, "recipient_rejected": 3, "provider_down": 6},
                {50: 10, 100: 8, 1000: 2},
                failovers_out=6,
                circuit_opens=1,
            ),
            ProviderTally(
                "mg",
                {"accepted": 6},
                {20: 6},
                failovers_in=6,
                throttle_waits=2,
                throttle_wait_ms=1500,
            ),
        ],
    )
    ev: list[EventRow] = []
    for i, k in enumerate(keys[:14]):
        ev.append(_ev("delivered", 0, k, ids[k], cid, T0 + 30 + i))
    ev.append(_ev("bounced", 0, keys[14], ids[keys[14]], cid, T0 + 90, bounce_kind="hard"))
    ev.append(_ev("bounced", 0, keys[15], ids[keys[15]], cid, T0 + 90, bounce_kind="hard"))
    ev.append(_ev("bounced", 0, keys[13], ids[keys[13]], cid, T0 + 95, bounce_kind="soft"))
    ev.append(_ev("complained", 0, keys[12], ids[keys[12]], cid, T0 + 4000))
    for i, k in enumerate(keys[:5]):  # humans: two opens each from u00, u01
        ev.append(_ev("opened", 0, k, ids[k], cid, T0 + 600))
        if i < 2:
            ev.append(_ev("opened", 1, k, ids[k], cid, T0 + 700))
    machine = '{"event":"open","sg_machine_open":true}'
    ev.append(_ev("opened", 9, keys[5], ids[keys[5]], cid, T0 + 65, raw=machine))
    ev.append(_ev("opened", 9, keys[0], ids[keys[0]], cid, T0 + 65, raw=machine))
    for i, k in enumerate(keys[:3]):
        ev.append(_ev("clicked", 0, k, ids[k], cid, T0 + 800, url="https://acme.example/b"))
        if i == 0:
            ev.append(_ev("clicked", 1, k, ids[k], cid, T0 + 801, url="https://acme.example/b"))
            ev.append(_ev("clicked", 2, k, ids[k], cid, T0 + 802, url="https://acme.example/a"))
    ev.append(_ev("unsubscribed", 0, keys[3], ids[keys[3]], cid, T0 + 900))
    store.events.add(ev, received_at=T0 + 1000)
    store.suppressions.add(keys[4], "unsubscribed", f"unsubscribe:{name}")
    store.suppressions.add(keys[3], "unsubscribed", f"unsubscribe:{name}")  # already counted
    store.suppressions.add(keys[6], "unsubscribed", "unsubscribe:other")  # another campaign
    return cid


def test_funnel_counts_and_rates_are_exact(store: protocols.Store) -> None:
    fill(store)
    r = campaign_report(store, "nov")
    c = r.counts
    assert (c["planned"], c["sent"], c["failed"], c["suppressed"]) == (20, 16, 3, 1)
    assert (c["delivered"], c["bounced"], c["bounced_hard"], c["bounced_soft"]) == (14, 3, 2, 1)
    assert (c["complained"], c["unsubscribed"]) == (1, 2)
    assert (c["opened"], c["opened_human"], c["opens"], c["opens_machine"]) == (6, 5, 9, 2)
    assert (c["clicked"], c["clicks"]) == (3, 5)
    assert r.rates["delivered"]["of_sent"] == pytest.approx(14 / 16, abs=1e-6)
    assert r.rates["opened"]["of_delivered"] == pytest.approx(6 / 14, abs=1e-6)
    assert r.rates["opened_human"]["of_delivered"] == pytest.approx(5 / 14, abs=1e-6)
    assert r.rates["clicked"]["of_sent"] == pytest.approx(3 / 16, abs=1e-6)
    assert r.rates["click_to_open"]["of_opened"] == pytest.approx(0.5, abs=1e-6)
    assert r.rates["sent"]["of_planned"] == pytest.approx(16 / 20, abs=1e-6)
    # 1 of 14 delivered complained: past both Gmail/Yahoo lines and the default auto-stop;
    # 2 of 16 hard bounces: past the default auto-stop's 5%
    figures = sorted((f.figure, f.level, f.limit) for f in r.flags)
    assert figures == [
        ("bounced_hard", "bad", 0.05),
        ("complained", "bad", 0.001),
        ("complained", "bad", 0.003),
    ]
    assert r.has_events


def test_providers_domains_links_segments(store: protocols.Store) -> None:
    fill(store)
    r = campaign_report(
        store, "nov", segment_by="country", template_text='<a href="https://acme.example/a">'
    )
    by = {p["provider"]: p for p in r.providers}
    assert by["sg"]["messages"] == 13 and by["sg"]["states"] == {"sent": 10, "failed": 3}
    assert by["mg"]["messages"] == 6 and by["mg"]["share"] == pytest.approx(6 / 19, abs=1e-6)
    assert by["sg"]["answers"] == {"accepted": 10, "recipient_rejected": 3, "provider_down": 6}
    assert (by["sg"]["failovers_out"], by["mg"]["failovers_in"]) == (6, 6)
    assert (by["mg"]["throttle_waits"], by["mg"]["throttle_wait_ms"]) == (2, 1500)
    assert by["sg"]["circuit_opens"] == 1
    # sg: 20 calls, 10 under 50 ms, 8 under 100, 2 under 1000: median in 50, p95 in 1000
    assert (by["sg"]["calls_timed"], by["sg"]["answer_p50_ms"], by["sg"]["answer_p95_ms"]) == (
        20,
        50,
        1000,
    )
    assert (by["mg"]["answer_p50_ms"], by["mg"]["answer_p95_ms"]) == (20, 20)
    assert by["sg"]["events"]["delivered"] == 14
    doms = {d.group: d for d in r.domains}
    assert [d.group for d in r.domains] == ["a.example", "b.example"]
    a, b = doms["a.example"], doms["b.example"]
    assert (a.messages, a.sent, a.failed, a.delivered, a.opened) == (12, 12, 0, 12, 6)
    assert (b.messages, b.sent, b.failed, b.delivered, b.bounced, b.complained) == (
        8,
        4,
        3,
        2,
        3,
        1,
    )
    # links in the template's order: /a first although /b has more clicks
    assert [(link.url, link.clicks, link.unique) for link in r.links] == [
        ("https://acme.example/a", 1, 1),
        ("https://acme.example/b", 4, 3),
    ]
    segs = {s.group: s for s in r.segments}
    assert (segs["DE"].messages, segs["DE"].delivered, segs["FR"].messages) == (10, 10, 10)


def test_timeline_buckets(store: protocols.Store) -> None:
    fill(store)
    r = campaign_report(store, "nov")
    tl = r.timeline
    assert tl.unit == "minute" and tl.start == r.first_send
    assert sum(row["sent"] for row in tl.sends) == 16
    # events span from the first send to the complaint ~67 minutes later: minutes
    assert tl.events_unit == "minute"
    assert sum(row["delivered"] for row in tl.events) == 14
    assert sum(row["clicked"] for row in tl.events) == 5


def test_all_campaigns_and_since(store: protocols.Store) -> None:
    fill(store, "oct")
    fill(store, "nov")
    store.campaigns.ensure("never-sent")
    report = campaigns_report(store)
    names = [line.campaign for line in report.campaigns]
    assert set(names) == {"oct", "nov", "never-sent"}
    nov = next(line for line in report.campaigns if line.campaign == "nov")
    assert nov.counts["sent"] == 16 and nov.rates["delivered"]["of_sent"] == pytest.approx(
        14 / 16, abs=1e-6
    )
    assert campaigns_report(store, since=4_000_000_000.0).campaigns == []


def test_missing_campaign_and_no_sends(store: protocols.Store) -> None:
    with pytest.raises(InputError, match="no campaign called 'nope'"):
        campaign_report(store, "nope")
    cid = store.campaigns.ensure("planned-only").id
    store.ledger.insert(cid, [NewRow("x@a.example", "x@a.example", "{}")])
    with pytest.raises(InputError, match="no sends yet"):
        campaign_report(store, "planned-only")


def test_without_events_says_so(store: protocols.Store) -> None:
    cid = store.campaigns.ensure("quiet").id
    store.ledger.insert(cid, [NewRow("x@a.example", "x@a.example", "{}")])
    [row] = store.ledger.read_pending(cid, after_id=0, limit=10)
    store.ledger.claim([Claim(row.id, "<x>")])
    store.ledger.record([Outcome(row.id, "sent", "sg", "m")])
    r = campaign_report(store, "quiet")
    assert not r.has_events and r.counts["sent"] == 1 and r.counts["delivered"] == 0
    assert any("no delivery events" in n for n in r.notes)
    assert r.rates["delivered"]["of_delivered"] is None


def test_link_order_keeps_unknown_links_last() -> None:
    from stampcli.records_report import LinkFigures

    links = [
        LinkFigures("https://x/c", 9, 9),
        LinkFigures("https://x/b", 5, 5),
        LinkFigures("https://x/a", 1, 1),
    ]
    ordered = link_order(links, "https://x/a then https://x/b")
    assert [link.url for link in ordered] == ["https://x/a", "https://x/b", "https://x/c"]


def test_sqlite_store_before_events_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE campaigns (id INTEGER PRIMARY KEY, name TEXT, content_hash TEXT, "
            "created_at REAL, updated_at REAL, paused_reason TEXT, paused_at REAL, "
            "audience_mark TEXT)"
        )
        conn.execute("INSERT INTO campaigns VALUES (1, 'nov', NULL, 0, 0, NULL, NULL, NULL)")
        conn.execute("PRAGMA user_version = 2")
    with open_store(path, readonly=True) as s, pytest.raises(StoreError, match="older stamp"):
        s.reports.funnel(1, "nov")


def test_postgres_schema_1_is_upgraded(pg_url: str) -> None:
    with open_store(pg_url) as s, s.transaction() as conn:  # type: ignore[attr-defined]
        conn.execute("DROP TABLE provider_answer_times")
        conn.execute("DROP TABLE provider_tallies")
        conn.execute("DROP TABLE fleet_queue")  # schema 3's
        conn.execute("DROP TABLE fleet_workers")
        conn.execute("DROP TABLE api_messages, api_idempotency")  # schema 4's
        conn.execute("DROP TABLE schedules")  # schema 5's
        # schema 6's lease tables
        conn.execute("DROP TABLE campaign_workers, ledger_leases, campaign_plans, rate_buckets")
        conn.execute("DROP INDEX events_for_report")  # schema 7's
        conn.execute("DROP TABLE provider_breakers")  # schema 8's shared breakers
        conn.execute("UPDATE stamp_schema SET version = 1")
    with pytest.raises(StoreError, match="older stamp"):
        open_store(pg_url, readonly=True)
    with open_store(pg_url) as s:
        fill(s)
        assert campaign_report(s, "nov").providers[0]["calls_timed"] == 6
        with s.connection() as conn:  # type: ignore[attr-defined]
            found = conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_for_report'"
            ).fetchone()
        assert found is not None and found[0] == 1
