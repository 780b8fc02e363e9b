"""record_events end to end: a real send through the SendGrid fake, then its events.

The events are built the way SendGrid's webhook delivers them (the shapes
tests/test_inbound_sendgrid.py checks) and parsed by the real parser, so the
matching is proven on what stamp actually sent: custom args first, the
``sg_message_id`` (the send's X-Message-Id plus a suffix) second, the address
last (SendGrid's asynchronous bounces carry neither).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from inbound_helpers import ecdsa_key
from provider_fakes import SendGridFake
from test_store_contract import BACKENDS
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.errors import StoreError
from stampcli.events.model import BounceKind, DeliveryEvent, EventType
from stampcli.events.policy import BouncePolicy, SoftBouncePolicy
from stampcli.providers.sendgrid import SendGridParser
from stampcli.records import Claim, NewRow, Outcome
from stampcli.service.events import record_events
from stampcli.store import open_store, protocols
from stampcli.store.testing import set_ledger

runner = CliRunner()
T0 = 1_764_000_000  # event times (2025-11-24)
PEOPLE = [f"u{i}@example.com" for i in range(8)]


@dataclass
class Sent:
    """A campaign sent through the SendGrid fake, and what the fake accepted."""

    campaign: Path
    db: Path
    fake: SendGridFake

    def open(self) -> protocols.Store:
        return open_store(self.db)

    def accepted(self, address: str) -> dict[str, Any]:
        """What SendGrid holds of the message to ``address``: its id and custom args."""
        entry = self.fake.accepted[address][0]
        return {"id": entry.message_id, "args": entry.fields["personalization"]["custom_args"]}


def write_campaign(
    tmp: Path, fake: SendGridFake, extra: str = "", people: list[str] = PEOPLE
) -> Path:
    (tmp / "t.html").write_text("<p>Hi {{ first_name }}</p>")
    (tmp / "list.csv").write_text("email,first_name\n" + "".join(f"{a},U\n" for a in people))
    path = tmp / "campaign.yml"
    path.write_text(
        "name: news\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi"\n'
        "template: t.html\n"
        "transactional: true\n"
        "audience:\n  file: list.csv\n"
        "providers:\n"
        f'  - url: "{fake.provider_url()}"\n'
        f'    endpoint: "{fake.url}"\n'
        "    name: sg\n" + extra
    )
    return path


def send(campaign: Path, db: Path) -> Any:
    return runner.invoke(
        app, ["send", str(campaign), "--yes", "--log-format", "json", "--db", str(db)]
    )


@pytest.fixture
def sent(tmp_path: Path) -> Iterator[Sent]:
    with SendGridFake() as fake:
        assert isinstance(fake, SendGridFake)
        campaign = write_campaign(
            tmp_path, fake, "auto_stop: {min_answers: 4, hard_bounce_rate: 0.25}\n"
        )
        db = tmp_path / "stamp.db"
        result = send(campaign, db)
        assert result.exit_code == 0, result.output
        yield Sent(campaign, db, fake)


def sg(kind: str, address: str, n: int, *, sent: Sent | None = None, meta: bool = True,
       mid: bool = True, at: int = 0, **extra: Any) -> DeliveryEvent:  # fmt: skip
    """One SendGrid webhook event about the message to ``address``, parsed by the real parser."""
    item: dict[str, Any] = {
        "email": address,
        "timestamp": T0 + at,
        "event": kind,
        "sg_event_id": f"ev-{kind}-{address}-{n}",
        **extra,
    }
    if sent is not None:
        got = sent.accepted(address)
        if mid:
            item["sg_message_id"] = f"{got['id']}.filterdrecv-5645d9c87f-mwh5k-1-{n}"
        if meta:
            item.update(got["args"])
    return _parser().events(item, {})[0]  # the request's signature is the server's part


@functools.cache
def _parser() -> SendGridParser:
    return SendGridParser(ecdsa_key()[1])


def campaign_id(store: protocols.Store) -> int:
    row = store.campaigns.get("news")
    assert row is not None
    return row.id


# ------------------------------------------------------------------------------ matching


def test_events_find_their_rows_by_metadata_then_message_id_then_address(sent: Sent) -> None:
    events = [
        sg("delivered", "u0@example.com", 1, sent=sent),  # custom args and id
        sg("delivered", "u1@example.com", 1, sent=sent, meta=False),  # the id only
        sg("bounce", "u2@example.com", 1, sent=sent, meta=False, mid=False, type="bounce"),
        sg("delivered", "nobody@example.com", 1),  # never sent to
        # a campaign stamp has no ledger for, and an address it never mailed
        sg("open", "stranger@example.com", 1, campaign="other", recipient="stranger@example.com"),
    ]
    with sent.open() as store:
        result = record_events(store, events)
        assert (result.stored, result.unmatched, result.duplicates) == (5, 2, 0)
        assert result.matched == {"metadata": 1, "message_id": 1, "address": 1}
        rows = {r.recipient: r for r in store.events.rows(campaign_id(store))}
        assert {k: r.matched_by for k, r in rows.items()} == {
            "u0@example.com": "metadata",
            "u1@example.com": "message_id",
            "u2@example.com": "address",
        }
        ledger = {r.key: r.id for r in store.ledger.rows(campaign_id(store))}
        assert all(rows[k].ledger_id == ledger[k] for k in rows)
        # kept, not dropped, with the campaign they named
        lost = {r.recipient: r for r in store.events.rows(None)}
        assert set(lost) == {"nobody@example.com", "stranger@example.com"}
        assert lost["stranger@example.com"].campaign == "other"
        assert lost["stranger@example.com"].ledger_id is None
        assert store.events.unmatched() == 2
        # the raw copy is stored as the provider sent it
        assert (
            json.loads(rows["u0@example.com"].raw)["sg_event_id"] == "ev-delivered-u0@example.com-1"
        )


def test_sendgrid_ids_are_one_per_batch_so_the_recipient_decides(sent: Sent) -> None:
    # the fake (like SendGrid) answers one X-Message-Id for a request of many recipients
    ids = {sent.accepted(a)["id"] for a in PEOPLE[:3]}
    with sent.open() as store:
        record_events(store, [sg("delivered", a, 1, sent=sent, meta=False) for a in PEOPLE[:3]])
        rows = store.events.rows(campaign_id(store))
        ledger = {r.id: r.key for r in store.ledger.rows(campaign_id(store))}
    assert len(ids) >= 1
    assert {r.recipient: ledger[r.ledger_id or 0] for r in rows} == {a: a for a in PEOPLE[:3]}


def test_address_fallback_takes_the_most_recent_send(sent: Sent, tmp_path: Path) -> None:
    # a second campaign to the same people, sent later
    later = tmp_path / "later.yml"
    later.write_text(sent.campaign.read_text().replace("name: news", "name: later"))
    assert send(later, sent.db).exit_code == 0
    with sent.open() as store:
        record_events(store, [sg("bounce", "u4@example.com", 9, type="bounce")])
        row = store.campaigns.get("later")
        assert row is not None
        (event,) = store.events.rows(row.id)
    assert event.matched_by == "address" and event.recipient == "u4@example.com"


# ------------------------------------------------------------------------------ dedupe


def test_redelivered_events_are_stored_and_applied_once(sent: Sent) -> None:
    batch = [sg("bounce", "u1@example.com", 1, sent=sent, type="bounce")]
    with sent.open() as store:
        first = record_events(store, batch + batch)  # twice in one request
        assert (first.stored, first.duplicates, first.suppressed) == (1, 1, 1)
        store.suppressions.remove(["u1@example.com"])  # lifted by hand afterwards
        again = record_events(store, batch)  # the provider retries
        assert (again.stored, again.duplicates, again.suppressed) == (0, 1, 0)
        assert store.suppressions.get("u1@example.com") is None  # the lift holds
        assert store.events.counts(campaign_id(store))["bounced_hard"] == 1


def test_a_store_failure_loses_nothing_and_the_redelivery_applies_it(
    sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [sg("spamreport", "u3@example.com", 1, sent=sent)]
    with sent.open() as store:
        broken = store.suppressions

        def fail(*args: Any) -> int:
            raise StoreError(f"store {store.location}: the disk is full")

        monkeypatch.setattr(broken, "add_many", fail)
        with pytest.raises(StoreError, match="disk is full"):
            record_events(store, batch)
        monkeypatch.undo()
        assert store.suppressions.get("u3@example.com") is None
        # the provider got no 2xx and sends it again: stored once, applied now
        result = record_events(store, batch)
        assert (result.stored, result.duplicates, result.suppressed) == (0, 1, 1)
        got = store.suppressions.get("u3@example.com")
        assert got is not None and got.reason == "complaint"
        assert len(store.events.rows(campaign_id(store))) == 1


def test_a_read_only_store_raises_store_error(sent: Sent) -> None:
    with open_store(sent.db, readonly=True) as store, pytest.raises(StoreError):
        record_events(store, [sg("delivered", "u0@example.com", 1, sent=sent)])


# ------------------------------------------------------------------------------ effects


def test_suppressions_name_their_reason_and_provider_for_every_list(sent: Sent) -> None:
    events = [
        sg("bounce", "u0@example.com", 1, sent=sent, type="bounce", reason="550 5.1.1 no user"),
        sg("spamreport", "u1@example.com", 1, sent=sent),
        sg("unsubscribe", "u2@example.com", 1, sent=sent),
        sg("group_unsubscribe", "u3@example.com", 1, sent=sent),
        sg("delivered", "u4@example.com", 1, sent=sent),
        sg("open", "u5@example.com", 1, sent=sent),
    ]
    with sent.open() as store:
        assert record_events(store, events).suppressed == 4
        got = {s.key: s for s in store.suppressions.iter_suppressions()}
    assert {k: s.reason for k, s in got.items()} == {
        "u0@example.com": "hard_bounce",
        "u1@example.com": "complaint",
        "u2@example.com": "unsubscribed",
        "u3@example.com": "unsubscribed",
    }
    assert {s.source for s in got.values()} == {"sendgrid"}
    assert {s.scope for s in got.values()} == {""}  # every list
    assert "550 5.1.1 no user" in (got["u0@example.com"].detail or "")


def soft(address: str, n: int, day: int, sent: Sent) -> DeliveryEvent:
    # SendGrid "blocked" is its temporary (soft) bounce
    return sg("bounce", address, n, sent=sent, type="blocked", at=day * 86400)


def test_soft_bounces_suppress_at_the_policy_count_within_its_window(sent: Sent) -> None:
    with sent.open() as store:
        assert record_events(store, [soft("u0@example.com", 1, 0, sent)]).suppressed == 0
        assert record_events(store, [soft("u0@example.com", 2, 1, sent)]).suppressed == 0
        third = record_events(store, [soft("u0@example.com", 3, 2, sent)])
        assert third.suppressed == 1
        got = store.suppressions.get("u0@example.com")
        assert got is not None and got.reason == "hard_bounce" and got.source == "sendgrid"
        assert "3 soft bounces within 30 days" in (got.detail or "")
        # spread over more than the window: never three within 30 days
        for n, day in enumerate((0, 20, 40, 60)):
            record_events(store, [soft("u1@example.com", n, day, sent)])
        assert store.suppressions.get("u1@example.com") is None


def test_a_delivery_resets_the_soft_bounce_count(sent: Sent) -> None:
    with sent.open() as store:
        record_events(
            store, [soft("u2@example.com", 1, 0, sent), soft("u2@example.com", 2, 1, sent)]
        )
        record_events(store, [sg("delivered", "u2@example.com", 1, sent=sent, at=2 * 86400)])
        record_events(
            store, [soft("u2@example.com", 3, 3, sent), soft("u2@example.com", 4, 4, sent)]
        )
        assert store.suppressions.get("u2@example.com") is None
        record_events(store, [soft("u2@example.com", 5, 5, sent)])
        assert store.suppressions.get("u2@example.com") is not None


def test_a_policy_can_count_soft_bounces_differently_or_ignore_hard_ones(sent: Sent) -> None:
    policy = BouncePolicy(soft=SoftBouncePolicy(count=1, within="1d"), hard="ignore")
    with sent.open() as store:
        events = [soft("u3@example.com", 1, 0, sent), sg("bounce", "u4@example.com", 1, sent=sent)]
        assert record_events(store, events, policy=policy).suppressed == 1
        assert store.suppressions.get("u3@example.com") is not None
        assert store.suppressions.get("u4@example.com") is None


def test_a_campaign_files_bounce_policy_is_stored_by_the_send_and_used(tmp_path: Path) -> None:
    with SendGridFake() as fake:
        assert isinstance(fake, SendGridFake)
        campaign = write_campaign(
            tmp_path, fake, "bounce_policy: {soft: {count: 2, within: 7d}, complaint: ignore}\n"
        )
        db = tmp_path / "s.db"
        assert send(campaign, db).exit_code == 0
        run = Sent(campaign, db, fake)
        with run.open() as store:
            stored = store.campaigns.settings(campaign_id(store))
            assert stored["bounce_policy"]["soft"] == {"count": 2, "within": 7 * 86400.0}
            assert stored["auto_stop"]["min_answers"] == 200
            record_events(
                store, [soft("u0@example.com", 1, 0, run), soft("u0@example.com", 2, 1, run)]
            )
            record_events(store, [sg("spamreport", "u1@example.com", 1, sent=run)])
            assert store.suppressions.get("u0@example.com") is not None
            assert store.suppressions.get("u1@example.com") is None


def test_an_auto_reply_is_recorded_as_such_and_never_a_bounce(sent: Sent) -> None:
    with sent.open() as store:
        events = [
            sg(
                "bounce",
                "u5@example.com",
                n,
                sent=sent,
                type="blocked",
                at=n,
                reason="Auto-Reply: I am out of the office until Monday",
            )
            for n in range(4)
        ]
        result = record_events(store, events)
        assert result.by_type == {"auto_replied": 4}
        assert result.suppressed == 0
        counts = store.events.counts(campaign_id(store))
        assert counts["auto_replied"] == 4 and counts["bounced_soft"] == 0
        assert store.suppressions.get("u5@example.com") is None


def test_unknown_rows_become_sent_when_the_provider_reports_on_them(sent: Sent) -> None:
    with sent.open() as store:
        cid = campaign_id(store)
        for key in ("u0@example.com", "u1@example.com", "u2@example.com", "u3@example.com"):
            set_ledger(store, cid, key=key, state="unknown")
        result = record_events(
            store,
            [
                sg("delivered", "u0@example.com", 1, sent=sent),
                sg("bounce", "u1@example.com", 1, sent=sent, type="bounce"),
                sg("open", "u2@example.com", 1, sent=sent),
            ],
        )
        assert result.resolved_unknown == 3
        states = {r.key: r.state for r in store.ledger.rows(cid)}
        assert [states[f"u{i}@example.com"] for i in range(4)] == ["sent"] * 3 + ["unknown"]
        # so retry --unknown re-sends only the row nobody has heard of
        assert store.ledger.retry(cid, ["unknown"]) == 1


def test_an_unknown_row_the_provider_dropped_fails_instead(sent: Sent) -> None:
    with sent.open() as store:
        cid = campaign_id(store)
        set_ledger(store, cid, key="u6@example.com", state="unknown")
        event = sg("dropped", "u6@example.com", 1, sent=sent, reason="Bounced Address")
        assert record_events(store, [event]).resolved_unknown == 1
        row = store.ledger.row(cid, "u6@example.com")
        assert row is not None and row.state == "failed"
        assert "dropped" in (row.last_error or "")


# ------------------------------------------------------------------------------ auto-stop


def test_bounce_events_pause_the_campaign_and_the_next_send_refuses(sent: Sent) -> None:
    with sent.open() as store:
        first = record_events(store, [sg("bounce", "u0@example.com", 1, sent=sent, type="bounce")])
        assert first.paused == []  # 1 of 8: under the 25% of this campaign's auto_stop
        second = record_events(store, [sg("bounce", "u1@example.com", 1, sent=sent, type="bounce")])
        assert second.paused == ["news"]
        row = store.campaigns.get("news")
        assert row is not None and row.paused_reason is not None
        assert "hard bounces reached 25.00% (2 of 8 answers)" in row.paused_reason
    result = send(sent.campaign, sent.db)
    assert result.exit_code == 6, result.output
    assert "paused" in result.output


def test_complaint_events_count_against_the_stored_thresholds(sent: Sent) -> None:
    with sent.open() as store:
        # default complaint_rate 0.1%: one complaint in 8 answers (min_answers 4) pauses
        result = record_events(store, [sg("spamreport", "u2@example.com", 1, sent=sent)])
        assert result.paused == ["news"]
        row = store.campaigns.get("news")
        assert row is not None and "spam complaints" in (row.paused_reason or "")


# ------------------------------------------------------------------------------ status


def test_status_counts_events_exactly(sent: Sent) -> None:
    events = [sg("delivered", a, 1, sent=sent) for a in PEOPLE[:6]] + [
        sg("bounce", "u6@example.com", 1, sent=sent, type="bounce"),
        soft("u7@example.com", 1, 0, sent),
        sg("open", "u0@example.com", 1, sent=sent),
        sg("open", "u0@example.com", 2, sent=sent),
        sg("open", "u1@example.com", 1, sent=sent),
        sg("click", "u0@example.com", 1, sent=sent, url="https://acme.example/a"),
        sg("unsubscribe", "u5@example.com", 1, sent=sent),
    ]
    with sent.open() as store:
        store.campaigns.unpause(campaign_id(store))
        record_events(store, events)
        record_events(store, events)  # redelivered: counted once
    result = runner.invoke(app, ["status", str(sent.campaign), "--json", "--db", str(sent.db)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["events"] == {
        "delivered": 6, "bounced_hard": 1, "bounced_soft": 1, "complained": 0,
        "unsubscribed": 1, "opened": 3, "opened_unique": 2, "clicked": 1, "clicked_unique": 1,
        "deferred": 0, "rejected": 0, "dropped": 0, "auto_replied": 0, "opened_machine": 0,
        "clicked_machine": 0,
    }  # fmt: skip
    assert data["event_rates"]["delivered"] == 0.75
    assert data["event_rates"]["opened"] == 0.25
    assert data["event_rates"]["bounced_hard"] == 0.125
    text = runner.invoke(app, ["status", str(sent.campaign), "--db", str(sent.db)])
    assert "6 delivered 75.0%" in text.output
    assert "3 opens (2 unique) 25.0%" in text.output


def test_after_unpause_auto_stop_counts_events_afresh(sent: Sent) -> None:
    with sent.open() as store:
        bounces = [sg("bounce", a, 1, sent=sent, type="bounce") for a in PEOPLE[:2]]
        assert record_events(store, bounces).paused == ["news"]
    result = runner.invoke(
        app, ["send", str(sent.campaign), "--yes", "--unpause", "--db", str(sent.db)]
    )
    assert result.exit_code == 0, result.output
    with sent.open() as store:
        # the two bounces from before the unpause no longer count: one more does not pause
        late = record_events(store, [sg("bounce", "u2@example.com", 1, sent=sent, type="bounce")])
        assert late.paused == []
        # but a new run of them does (2 of 8 answers again)
        again = record_events(store, [sg("bounce", "u3@example.com", 1, sent=sent, type="bounce")])
        assert again.paused == ["news"]


# ------------------------------------------------------------------------------ every backend


@pytest.fixture(params=sorted(BACKENDS))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[protocols.Store]:
    with BACKENDS[request.param](request, tmp_path).open() as store:
        yield store


def _event(kind: EventType, address: str, n: int, **values: Any) -> DeliveryEvent:
    when = datetime.fromtimestamp(T0 + n, UTC)
    return DeliveryEvent(kind, "sendgrid", f"ev-{n}", when, address, **values)


def test_record_events_over_every_backend(any_store: protocols.Store) -> None:
    """The core of record_events over the protocol alone: matching, dedupe, effects."""
    store = any_store
    cid = store.campaigns.ensure("news").id
    keys = ["a@x.test", "b@x.test", "c@x.test", "d@x.test"]
    store.ledger.insert(cid, [NewRow(k, k, "{}") for k in keys])
    rows = store.ledger.read_pending(cid, after_id=0, limit=10)
    assert store.ledger.claim([Claim(r.id, f"<{r.key}>") for r in rows]) == 4
    ids = {r.key: r.id for r in rows}
    store.ledger.record(
        [Outcome(ids[k], "sent", "sendgrid", "batch-1") for k in keys[:3]]
        + [Outcome(ids["d@x.test"], "unknown")]
    )
    events = [
        _event(EventType.DELIVERED, "a@x.test", 1, campaign="news", recipient_key="a@x.test"),
        _event(EventType.DELIVERED, "b@x.test", 2, message_id="batch-1"),  # shared by a, b, c
        _event(EventType.BOUNCED, "c@x.test", 3, bounce_kind=BounceKind.HARD, reason="550"),
        _event(EventType.DELIVERED, "d@x.test", 4, campaign="news", recipient_key="d@x.test"),
        _event(EventType.OPENED, "nobody@x.test", 5),
    ]
    result = record_events(store, events + events[2:3])  # the bounce redelivered in the request
    assert (result.stored, result.duplicates, result.unmatched) == (5, 1, 1)
    assert result.matched == {"metadata": 2, "message_id": 1, "address": 1}
    assert (result.suppressed, result.resolved_unknown) == (1, 1)
    got = store.suppressions.get("c@x.test")
    assert got is not None and (got.reason, got.source) == ("hard_bounce", "sendgrid")
    assert store.ledger.row(cid, "d@x.test").state == "sent"  # type: ignore[union-attr]
    stored = {r.recipient: r for r in store.events.rows(cid)}
    assert {k: (r.matched_by, r.ledger_id) for k, r in stored.items()} == {
        "a@x.test": ("metadata", ids["a@x.test"]),
        "b@x.test": ("message_id", ids["b@x.test"]),
        "c@x.test": ("address", ids["c@x.test"]),
        "d@x.test": ("metadata", ids["d@x.test"]),
    }
    counts = store.events.counts(cid)
    assert (counts["delivered"], counts["bounced_hard"]) == (3, 1)
    # the provider retries the whole request: nothing new, nothing applied twice
    store.suppressions.remove(["c@x.test"])
    again = record_events(store, events)
    assert (again.stored, again.duplicates, again.suppressed) == (0, 5, 0)
    assert store.suppressions.get("c@x.test") is None
