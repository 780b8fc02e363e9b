"""Schedules, send windows, pace, recipient time zones and A/B tests, over real sends.

Time goes through a ``FakeClock`` (``send_campaign(..., clock=)``), so a run
"at 09:00 in Berlin" is a run whose clock says so; nothing sleeps for real.
Messages go to the outbox provider (one .eml each) or to aiosmtpd on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from smtp_server import SMTPTestServer
from test_store_contract import BACKENDS, Backend

import stampcli
from stampcli.clock import FakeClock
from stampcli.config import Campaign
from stampcli.errors import ConfigError
from stampcli.records import EventRow, ScheduleRow
from stampcli.schedule import ab as ab_rules
from stampcli.schedule.calendar import due_in_zone
from stampcli.schedule.state import choose_winner
from stampcli.schedule.zones import UnknownZone, parse_zone, zone_name
from stampcli.service.send import RunSummary, SendOptions, send_campaign
from stampcli.store import protocols

BASE = """name: {name}
from: "ACME News <news@acme.example>"
subject: "Hello {{{{ first_name }}}}"
template: t.html
transactional: true
audience: {{file: list.csv}}
providers:
  - url: {url}
"""


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def write(
    tmp_path: Path,
    extra: str,
    rows: list[str],
    *,
    header: str = "email,first_name,TIMEZONE",
    name: str = "sched",
    url: str = "outbox://out",
) -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    (tmp_path / "b.html").write_text("<p>Variant B for {{ first_name }}</p>")
    (tmp_path / "list.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    path = tmp_path / "campaign.yml"
    path.write_text(BASE.format(name=name, url=url) + extra)
    return path


def at(clock: FakeClock, when: float) -> None:
    """Set the fake wall clock to ``when`` (it only moves forward)."""
    assert when >= clock.time()
    clock.advance(when - clock.time())


def send(campaign: Campaign, store: protocols.Store, clock: FakeClock) -> RunSummary:
    # one run that locks the campaign, on either backend: a shared run (PostgreSQL's
    # default) draws its rate from buckets kept on the database server's clock, which
    # the fake clock cannot move
    options = SendOptions(shared=False)
    return asyncio.run(send_campaign(campaign, store, options, clock=clock))


def sent_to(tmp_path: Path, name: str = "sched") -> set[str]:
    folder = tmp_path / "out" / name
    return {p.stem for p in folder.glob("*.eml")} if folder.exists() else set()


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[protocols.Store]:
    backend: Backend = BACKENDS[request.param](request, tmp_path)
    with backend.open() as s:
        yield s


# --------------------------------------------------------------------------- zones, calendar


def test_zone_names_and_offsets() -> None:
    assert zone_name(parse_zone("Europe/Berlin")) == "Europe/Berlin"
    assert zone_name(parse_zone("-5")) == "UTC-05:00"  # Mailchimp's GMTOFF
    assert zone_name(parse_zone("5.5")) == "UTC+05:30"
    assert zone_name(parse_zone("UTC+1")) == "UTC+01:00"
    assert zone_name(parse_zone("+0530")) == "UTC+05:30"
    for bad in ("Mars/Olympus", "+15", "", "530"):
        with pytest.raises(UnknownZone):
            parse_zone(bad)


def test_a_window_closes_on_friday_and_opens_on_monday_across_dst() -> None:
    path_zone = parse_zone("Europe/Berlin")
    from stampcli.config.schedule import WindowConfig

    window = WindowConfig.model_validate({"days": ["mon-fri"], "hours": "09:00-17:00"})
    # Friday 2026-10-23 16:00 Berlin (14:00 UTC, summer time): due until 17:00 local
    friday = due_in_zone(None, window, path_zone, utc(2026, 10, 23, 14, 0))
    assert friday.due and friday.until == utc(2026, 10, 23, 15, 0)
    # Saturday: next open Monday 09:00, after the clocks went back (winter: UTC+1)
    saturday = due_in_zone(None, window, path_zone, utc(2026, 10, 24, 10, 0))
    assert not saturday.due and saturday.next_at == utc(2026, 10, 26, 8, 0)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("schedule: {timezone: Mars/Olympus}\n", "schedule.timezone: 'Mars/Olympus' is not a time"),
        ("schedule: {at: tomorrow}\n", "schedule.at: 'tomorrow' is not a date and time"),
        ("window: {hours: '18:00-08:00'}\n", "window.hours: '18:00-08:00' ends before it starts"),
        ("window: {hours: '25:00-26:00'}\n", "window.hours: '25:00-26:00' has a time that does"),
        ("window: {days: [fri-mon]}\n", "window.days: 'fri-mon' runs backwards"),
        ("window: {days: [someday]}\n", "window.days: 'someday' is not a day"),
        ("pace: 10/fortnight\n", "pace: '10/fortnight' is not a rate"),
        (
            "ab: {variants: [{subject: a}, {subject: b}], test_share: 100%}\n",
            "ab.test_share: test_share 100% leaves no one",
        ),
        ("ab: {variants: [{subject: a}]}\n", "ab.variants: "),
        ("ab: {variants: [{subject: a}, {}]}\n", "a variant changes subject, template and/or"),
        ("ab: {variants: [{subject: a}, {template: nope.html}]}\n", "ab.variants[1].template:"),
        ("ab: {variants: [{subject: a}, {from: nobody}]}\n", "has no plain email address"),
        (
            "schedule: {at: '2026-12-10T09:00+01:00', timezone_field: TZ}\n",
            "one moment for everyone",
        ),
    ],
)
def test_bad_schedule_keys_are_refused_with_the_key(tmp_path: Path, extra: str, says: str) -> None:
    path = write(tmp_path, extra, ["a@x.test,A,UTC"])
    with pytest.raises(ConfigError) as err:
        stampcli.load_campaign(path)
    assert says in str(err.value)
    assert "campaign.yml" in str(err.value)


# --------------------------------------------------------------------------- the run


def test_each_recipient_gets_it_at_nine_local_time_across_cron_runs(
    tmp_path: Path, store: protocols.Store
) -> None:
    rows = [
        "tokyo@x.test,T,Asia/Tokyo",  # 09:00 JST = 00:00 UTC
        "berlin@x.test,B,Europe/Berlin",  # 09:00 CET = 08:00 UTC
        "ny@x.test,N,America/New_York",  # 09:00 EST = 14:00 UTC
        "mars@x.test,M,Mars/Base",  # unknown: the campaign's zone (London, 09:00 UTC)
        "none@x.test,E,",  # missing: the same
    ]
    extra = (
        "schedule: {at: '2026-12-10T09:00', timezone: Europe/London, timezone_field: TIMEZONE}\n"
    )
    campaign = stampcli.load_campaign(write(tmp_path, extra, rows))
    clock = FakeClock(utc(2026, 12, 9, 12, 0))
    first = send(campaign, store, clock)
    assert first.reason == "not_due" and first.next_due_at == utc(2026, 12, 10, 0, 0)
    assert first.schedule is not None and first.schedule["fallback"] == 2
    assert sent_to(tmp_path) == set()

    seen: list[tuple[float, set[str]]] = []
    cron = utc(2026, 12, 9, 23, 55)
    while cron <= utc(2026, 12, 10, 15, 0):  # a cron line every five minutes
        at(clock, cron)
        summary = send(campaign, store, clock)
        seen.append((cron, sent_to(tmp_path)))
        cron += 300
    first_seen = {}
    for when, who in seen:
        for address in who:
            first_seen.setdefault(address, when)
    assert first_seen == {
        "tokyo@x.test": utc(2026, 12, 10, 0, 0),
        "berlin@x.test": utc(2026, 12, 10, 8, 0),
        "mars@x.test": utc(2026, 12, 10, 9, 0),
        "none@x.test": utc(2026, 12, 10, 9, 0),
        "ny@x.test": utc(2026, 12, 10, 14, 0),
    }
    assert summary.reason == "complete"
    row = store.campaigns.get("sched")
    assert row is not None
    assert {r.state for r in store.ledger.rows(row.id)} == {"sent"}
    listed = store.schedules.all()
    assert [(r.campaign, r.state, r.next_due_at) for r in listed] == [("sched", "done", None)]


def test_a_window_stops_the_run_when_it_closes_and_resumes_in_the_next(
    tmp_path: Path, store: protocols.Store
) -> None:
    rows = [f"p{i}@x.test,P{i},UTC" for i in range(10)]
    extra = "window: {days: [mon-fri], hours: '09:00-17:00'}\npace: 60/min\n"
    campaign = stampcli.load_campaign(write(tmp_path, extra, rows))
    # Saturday: nothing is due; next due Monday 09:00
    clock = FakeClock(utc(2026, 12, 5, 10, 0))
    saturday = send(campaign, store, clock)
    assert saturday.reason == "not_due" and saturday.next_due_at == utc(2026, 12, 7, 9, 0)
    # Monday 16:59:56: at one a second, about four go out before the window closes
    at(clock, utc(2026, 12, 7, 16, 59, 56))
    monday = send(campaign, store, clock)
    assert monday.reason == "not_due" and monday.next_due_at == utc(2026, 12, 8, 9, 0)
    sent_monday = monday.run_counts.get("sent", 0)
    assert 3 <= sent_monday <= 8, sent_monday  # four seconds, plus two claimed ahead
    assert clock.time() < utc(2026, 12, 7, 17, 0, 6)  # stopped near the close, not later
    # Tuesday 09:00: the rest
    at(clock, utc(2026, 12, 8, 9, 0))
    tuesday = send(campaign, store, clock)
    assert tuesday.reason == "complete"
    assert tuesday.run_counts["sent"] == 10 - sent_monday
    assert len(sent_to(tmp_path)) == 10


def test_pace_spreads_messages_evenly(tmp_path: Path, store: protocols.Store) -> None:
    rows = [f"p{i}@x.test,P{i},UTC" for i in range(30)]
    campaign = stampcli.load_campaign(write(tmp_path, "pace: 600/h\n", rows))
    clock = FakeClock(utc(2026, 12, 7, 9, 0))
    summary = send(campaign, store, clock)
    assert summary.reason == "complete" and summary.run_counts["sent"] == 30
    # 600/h is one every 6 s: 30 messages take about three minutes (the bucket's burst aside)
    assert 150 <= clock.slept <= 200, clock.slept


# --------------------------------------------------------------------------- A/B


AB = """ab:
  variants:
    - {name: plain, subject: "Plain {{ first_name }}"}
    - name: bold
      subject: "BOLD {{ first_name }}"
      template: b.html
      from: "Bold News <bold@acme.example>"
  test_share: 40%
  metric: clicks
  wait: 4h
"""


def _subject(data: bytes) -> str:
    return str(make_header(decode_header(email.message_from_bytes(data)["Subject"])))


def test_ab_sends_the_test_share_waits_and_sends_the_rest_the_winner(
    tmp_path: Path, store: protocols.Store
) -> None:
    rows = [f"p{i}@x.test,P{i},UTC" for i in range(60)]
    with SMTPTestServer() as server:
        path = write(tmp_path, AB, rows, url=server.url("smtp", tls="none"), name="abtest")
        campaign = stampcli.load_campaign(path)
        ab = campaign.ab
        assert ab is not None
        test = {f"p{i}@x.test" for i in range(60)}
        variant = {k: ab_rules.variant_of(ab, "abtest", k) for k in test}
        test = {k for k, v in variant.items() if v is not None}
        assert 10 <= len(test) <= 40  # ~40% of 60
        clock = FakeClock(utc(2026, 12, 7, 9, 0))

        first = send(campaign, store, clock)
        assert first.reason == "not_due"
        got = {m.rcpt_tos[0]: _subject(m.data) for m in server.messages}
        assert set(got) == test  # the test share only
        for key, subject in got.items():
            want = "Plain" if variant[key] == 0 else "BOLD"
            assert subject.startswith(want), (key, subject)
        assert first.next_due_at == clock.time() + 4 * 3600  # the wait starts as the test ends

        # clicks come in for the "bold" variant's recipients
        cid = store.campaigns.ensure("abtest").id
        by_key = {r.key: r.id for r in store.ledger.rows(cid)}
        bold = sorted(k for k in test if variant[k] == 1)
        plain = sorted(k for k in test if variant[k] == 0)
        events = [
            EventRow("smtp", f"c{i}", "clicked", clock.time(), k, campaign="abtest",
                     campaign_id=cid, ledger_id=by_key[k], matched_by="metadata")
            for i, k in enumerate(bold[:3])
        ] + [  # an Apple proxy open is no person reading: not counted
            EventRow("smtp", "o1", "opened", clock.time(), plain[0], campaign="abtest",
                     campaign_id=cid, ledger_id=by_key[plain[0]], raw='{"type":"proxy_open"}')
        ]  # fmt: skip
        store.events.add(events, received_at=clock.time())

        # a rerun before the wait is over sends nothing more and says when
        clock.advance(3600)
        early = send(campaign, store, clock)
        assert early.reason == "not_due" and len(server.messages) == len(test)
        assert early.next_due_at is not None and early.next_due_at > clock.time()

        at(clock, early.next_due_at)
        final = send(campaign, store, clock)
        assert final.reason == "complete"
        rest = {m.rcpt_tos[0]: m for m in server.messages[len(test) :]}
        assert set(rest) == {f"p{i}@x.test" for i in range(60)} - test
        for m in rest.values():
            assert _subject(m.data).startswith("BOLD")
            assert b"Variant B for" in m.data.replace(b"=\r\n", b"")
            assert m.mail_from == "bold@acme.example"
        assert all(server.count(f"p{i}@x.test") == 1 for i in range(60))  # nobody twice
    saved = store.schedules.get(cid)
    assert saved is not None and saved.ab_winner == 1 and not saved.ab_manual
    figures = {v["variant"]: v for v in saved.detail["ab"]["variants"]}
    assert figures["bold"]["clicked"] == 3 and figures["plain"]["opened"] == 0


def test_ab_assignment_is_stable_and_a_manual_winner_goes_at_once(
    tmp_path: Path, store: protocols.Store
) -> None:
    rows = [f"p{i}@x.test,P{i},UTC" for i in range(40)]
    campaign = stampcli.load_campaign(write(tmp_path, AB, rows, name="abman"))
    ab = campaign.ab
    assert ab is not None
    once = [ab_rules.variant_of(ab, "abman", f"p{i}@x.test") for i in range(40)]
    assert once == [ab_rules.variant_of(ab, "abman", f"p{i}@x.test") for i in range(40)]
    clock = FakeClock(utc(2026, 12, 7, 9, 0))
    send(campaign, store, clock)
    tested = sent_to(tmp_path, "abman")
    assert tested == {f"p{i}@x.test" for i, v in enumerate(once) if v is not None}
    with pytest.raises(ConfigError, match="no variant 'fancy'"):
        choose_winner(campaign, store, "fancy", clock.time())
    chosen = choose_winner(campaign, store, "plain", clock.time())
    assert chosen["winner"] == "plain" and chosen["manual"] is True
    clock.advance(60)  # long before the 4 h wait
    rest = send(campaign, store, clock)
    assert rest.reason == "complete" and len(sent_to(tmp_path, "abman")) == 40
    body = (tmp_path / "out" / "abman" / "p0@x.test.eml").read_bytes()
    assert b"Plain" in body or once[0] == 1


# --------------------------------------------------------------------------- store contract


def test_schedules_table_contract(store: protocols.Store) -> None:
    a = store.campaigns.ensure("a").id
    b = store.campaigns.ensure("b").id
    store.campaigns.ensure("c")
    assert store.schedules.get(a) is None and store.schedules.all() == []
    store.schedules.save(ScheduleRow(a, "waiting", next_due_at=200.0, file="/x/a.yml",
                                     detail={"zones": {"UTC": 2}}, updated_at=1.0))  # fmt: skip
    store.schedules.save(ScheduleRow(b, "scheduled", next_due_at=100.0, updated_at=1.0))
    store.schedules.save(ScheduleRow(a, "waiting", next_due_at=150.0, file="/x/a.yml",
                                     ab_winner=1, ab_manual=True, updated_at=2.0))  # fmt: skip
    got = store.schedules.get(a)
    assert got is not None and got.campaign == "a" and got.ab_winner == 1 and got.ab_manual
    assert got.next_due_at == 150.0 and got.detail == {}
    assert [r.campaign for r in store.schedules.all()] == ["b", "a"]
    assert [r.campaign for r in store.schedules.due(120.0)] == ["b"]
    assert [r.campaign for r in store.schedules.due(1000.0)] == ["b", "a"]
    store.schedules.save(ScheduleRow(b, "done", updated_at=3.0))
    assert [r.campaign for r in store.schedules.due(1000.0)] == ["a"]
    assert store.campaigns.delete("a")
    assert [r.campaign for r in store.schedules.all()] == ["b"]
