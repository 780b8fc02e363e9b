"""``stamp events pull``: Mailgun, Postmark and SparkPost events APIs against local fakes.

Incremental from the cursor in the store, idempotent on rerun, paging followed,
items normalised by the webhook parsers and matched to the ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from events_fakes import DOMAIN, KEY, EventsAPI, events_api
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.config import load_campaign
from stampcli.providers.events_pull import account_key, pull_events
from stampcli.records import Claim, NewRow, Outcome
from stampcli.store import open_store, protocols

runner = CliRunner()
NOW = 1_764_000_000.0
PEOPLE = [f"p{i}@example.com" for i in range(40)]


def write_campaign(tmp: Path, providers: list[tuple[str, str]]) -> Path:
    (tmp / "t.html").write_text("<p>hi</p>")
    (tmp / "list.csv").write_text("email\n" + "".join(f"{p}\n" for p in PEOPLE))
    entries = "".join(
        f'  - url: "{url}"\n' + (f'    endpoint: "{endpoint}"\n' if endpoint else "")
        for url, endpoint in providers
    )
    path = tmp / "campaign.yml"
    path.write_text(
        "name: pulled\n"
        'from: "ACME <news@acme.example>"\n'
        "subject: hi\n"
        "template: t.html\n"
        "audience:\n  file: list.csv\n"
        f"providers:\n{entries}"
    )
    return path


def sent_ledger(store: protocols.Store, provider: str, ids: dict[str, str]) -> int:
    """A campaign whose rows went out through ``provider`` with these message ids."""
    cid = store.campaigns.ensure("pulled").id
    store.ledger.insert(cid, [NewRow(p, p, "{}") for p in PEOPLE])
    rows = store.ledger.read_pending(cid, after_id=0, limit=1000)
    store.ledger.claim([Claim(r.id, f"<{r.key}>") for r in rows])
    store.ledger.record([Outcome(r.id, "sent", provider, ids.get(r.key)) for r in rows])
    return cid


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "stamp.db"


# ------------------------------------------------------------------------------ Mailgun


def mailgun_event(n: int, person: str, kind: str = "delivered", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"mg-ev-{n}",
        "event": kind,
        "timestamp": NOW - 3600 + n,
        "recipient": person,
        "message": {"headers": {"message-id": f"{person}.msg@{DOMAIN}"}},
        "user-variables": {"campaign": "pulled", "recipient": person},
        **extra,
    }


def test_mailgun_pull_pages_and_goes_on_from_its_cursor(tmp_path: Path, db: Path) -> None:
    api = EventsAPI("mailgun", [mailgun_event(n, PEOPLE[n % 40]) for n in range(650)])
    api.events.append(
        mailgun_event(
            650,
            PEOPLE[1],
            "failed",
            severity="permanent",
            **{"delivery-status": {"description": "550 no such mailbox"}},
        )
    )
    with events_api(api) as url:
        campaign = load_campaign(write_campaign(tmp_path, [(f"mailgun://{KEY}@{DOMAIN}", url)]))
        with open_store(db) as store:
            cid = sent_ledger(store, "mailgun", {})
            report = pull_events(campaign, store, now=NOW)
            (got,) = report.providers
            assert got.error is None, got.error
            assert (got.fetched, got.stored, got.duplicates, got.unmatched) == (651, 651, 0, 0)
            assert got.suppressed == 1
            assert store.events.counts(cid)["delivered"] == 650
            cursor = store.events.cursor("mailgun", account_key(campaign.providers[0]))
            assert cursor is not None and float(cursor) == NOW - 3600 + 650
            pages = [r for r in api.requests if r["path"].endswith("/events")]
            assert len(pages) == 4  # 300 + 300 + 51, then the empty page
            assert float(pages[0]["begin"]) == pytest.approx(NOW - 3 * 86400)

            # later: two new events; the rerun reads 30 minutes back and stores only them
            api.events += [
                mailgun_event(700, PEOPLE[2], "opened"),
                mailgun_event(701, PEOPLE[3], "clicked", url="https://acme.example/x"),
            ]
            api.requests.clear()
            again = pull_events(campaign, store, now=NOW + 600).providers[0]
            assert again.stored == 2
            assert float(api.requests[0]["begin"]) == pytest.approx(float(cursor) - 1800)
            assert (
                again.duplicates
                == sum(1 for e in api.events if e["timestamp"] >= float(cursor) - 1800) - 2
            )
            assert store.events.counts(cid)["clicked"] == 1
            # and once more: nothing new at all
            assert pull_events(campaign, store, now=NOW + 700).providers[0].stored == 0
            rows = store.events.rows(cid, limit=10_000)
            assert {r.matched_by for r in rows} == {"metadata"}


# ------------------------------------------------------------------------------ Postmark


def postmark_bounce(n: int, person: str, kind: str = "HardBounce") -> dict[str, Any]:
    when = datetime_iso(NOW - 7200 + n * 2)
    return {
        "ID": 9000 + n,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": f"pm-{person}",
        "MessageStream": "broadcast",
        "Description": "The server was unable to deliver your message",
        "Details": "smtp;550 5.1.1 The email account does not exist",
        "Email": person,
        "From": "news@acme.example",
        "BouncedAt": when,
        "Inactive": True,
        "Subject": "hi",
    }


def datetime_iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def test_postmark_bounces_match_by_message_id_and_suppress(tmp_path: Path, db: Path) -> None:
    bounces = [postmark_bounce(n, PEOPLE[n % 40]) for n in range(1200)]
    bounces.append(postmark_bounce(1200, PEOPLE[5], "SpamComplaint"))
    bounces.append(postmark_bounce(1201, PEOPLE[6], "AutoResponder"))
    bounces.append(postmark_bounce(1202, "stranger@example.com"))
    api = EventsAPI("postmark", bounces)
    with events_api(api) as url:
        campaign = load_campaign(write_campaign(tmp_path, [(f"postmark://{KEY}", url)]))
        with open_store(db) as store:
            cid = sent_ledger(store, "postmark", {p: f"pm-{p}" for p in PEOPLE})
            (got,) = pull_events(campaign, store, now=NOW).providers
            assert got.error is None, got.error
            assert (got.stored, got.unmatched) == (1203, 1)
            counts = store.events.counts(cid)
            assert counts["bounced_hard"] == 1200 and counts["bounced_hard_unique"] == 40
            assert counts["complained"] == 1 and counts["auto_replied"] == 1
            assert {r.matched_by for r in store.events.rows(cid, limit=5000)} == {"message_id"}
            reasons = {s.key: s.reason for s in store.suppressions.iter_suppressions()}
            assert reasons[PEOPLE[0]] == "hard_bounce" and "stranger@example.com" in reasons
            offsets = [int(r["offset"]) for r in api.requests]
            assert offsets == [0, 500, 1000]
            # the rerun stores nothing twice
            assert pull_events(campaign, store, now=NOW + 60).providers[0].stored == 0
            assert store.events.counts(cid)["bounced_hard"] == 1200


# ------------------------------------------------------------------------------ SparkPost


def sparkpost_event(n: int, person: str, kind: str = "delivery", **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": f"sp-{n}",
        "timestamp": datetime_iso(NOW - 5000 + n),
        "rcpt_to": person,
        "raw_rcpt_to": person,
        "transmission_id": f"tx-{n}",
        "rcpt_meta": {"campaign": "pulled", "recipient": person},
        **extra,
    }


def test_sparkpost_events_search_follows_links_and_is_idempotent(tmp_path: Path, db: Path) -> None:
    events = [sparkpost_event(n, PEOPLE[n % 40]) for n in range(2500)]
    events.append(sparkpost_event(2500, PEOPLE[7], "bounce", bounce_class="10"))
    events.append(sparkpost_event(2501, PEOPLE[8], "open"))
    api = EventsAPI("sparkpost", events)
    with events_api(api) as url:
        campaign = load_campaign(write_campaign(tmp_path, [(f"sparkpost://{KEY}", url)]))
        with open_store(db) as store:
            cid = sent_ledger(store, "sparkpost", {})
            (got,) = pull_events(campaign, store, now=NOW).providers
            assert got.error is None, got.error
            assert got.stored == 2502 and got.suppressed == 1
            assert len(api.requests) == 3  # 1000 + 1000 + 502
            assert store.events.counts(cid)["opened"] == 1
            assert pull_events(campaign, store, now=NOW + 30).providers[0].stored == 0
            assert store.events.counts(cid)["delivered"] == 2500


# ------------------------------------------------------------------------------ the command


def test_the_command_names_providers_without_an_events_api(tmp_path: Path, db: Path) -> None:
    recent = time.time() - 60  # the command pulls up to now
    api = EventsAPI("mailgun", [mailgun_event(1, PEOPLE[0], timestamp=recent)])
    with events_api(api) as url:
        campaign = write_campaign(
            tmp_path,
            [(f"mailgun://{KEY}@{DOMAIN}", url), ("smtp://127.0.0.1:2525?tls=none", None)],
        )
        with open_store(db) as store:
            sent_ledger(store, "mailgun", {})
        result = runner.invoke(app, ["events", "pull", str(campaign), "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert "mailgun: 1 fetched, 1 new" in result.output
        assert "smtp: skipped (smtp has no events API to pull from)" in result.output
        result = runner.invoke(app, ["events", "pull", str(campaign), "--db", str(db), "--json"])
        assert result.exit_code == 0, result.output
        # the JSON document is stdout's; a notice on stderr may come before it
        data = json.loads(result.stdout)
        assert data["stored"] == 0 and data["duplicates"] == 1


def test_a_provider_failure_exits_4_and_keeps_the_cursor(tmp_path: Path, db: Path) -> None:
    api = EventsAPI("mailgun", [mailgun_event(1, PEOPLE[0])], fail_status=503)
    with events_api(api) as url:
        campaign = write_campaign(tmp_path, [(f"mailgun://{KEY}@{DOMAIN}", url)])
        result = runner.invoke(app, ["events", "pull", str(campaign), "--db", str(db)])
        assert result.exit_code == 4, result.output
        assert "503" in result.output and KEY not in result.output
        with open_store(db) as store:
            assert store.events.unmatched() == 0
            config = load_campaign(campaign).providers[0]
            assert store.events.cursor("mailgun", account_key(config)) is None


# ------------------------------------------------------------------------------ Brevo


def brevo_row(n: int, person: str, kind: str = "delivered") -> dict[str, Any]:
    return {
        "email": person,
        "date": datetime_iso(NOW - 4000 + n),
        "messageId": f"<{person}.brevo@smtp-relay.mailin.fr>",
        "event": kind,
        "reason": "550 unknown user" if "Bounce" in kind else None,
        "tag": "pulled",
        "from": "news@acme.example",
    }


def test_brevo_report_pages_matches_by_message_id_and_reruns_clean(
    tmp_path: Path, db: Path
) -> None:
    rows = [brevo_row(n, PEOPLE[n % 40]) for n in range(3000)]
    rows += [brevo_row(3000, PEOPLE[9], "hardBounces"), brevo_row(3001, PEOPLE[10], "clicks")]
    api = EventsAPI("brevo", rows)
    with events_api(api) as url:
        campaign = load_campaign(write_campaign(tmp_path, [(f"brevo://{KEY}", url)]))
        with open_store(db) as store:
            # Brevo's send answer keeps the brackets; events drop them
            ids = {p: f"<{p}.brevo@smtp-relay.mailin.fr>" for p in PEOPLE}
            cid = sent_ledger(store, "brevo", ids)
            (got,) = pull_events(campaign, store, now=NOW).providers
            assert got.error is None, got.error
            assert (got.stored, got.unmatched, got.suppressed) == (3002, 0, 1)
            assert [int(r["offset"]) for r in api.requests] == [0, 2500]
            assert {r.matched_by for r in store.events.rows(cid, limit=5000)} == {"message_id"}
            assert pull_events(campaign, store, now=NOW + 60).providers[0].stored == 0
            assert store.events.counts(cid)["delivered"] == 3000


# ------------------------------------------------------------------------------ Mailjet


def mailjet_message(n: int, person: str, status: str = "sent") -> dict[str, Any]:
    return {
        "ID": 500000 + n,
        "ArrivedAt": datetime_iso(NOW - 3000 + n),
        "Status": status,
        "ContactAlt": person,
        "CustomID": person,
        "EventPayload": json.dumps({"campaign": "pulled", "recipient": person}),
    }


def test_mailjet_messages_become_their_status_events(tmp_path: Path, db: Path) -> None:
    from events_fakes import SECRET

    messages = [mailjet_message(n, PEOPLE[n % 40]) for n in range(1500)]
    messages += [
        mailjet_message(1500, PEOPLE[11], "hardbounced"),
        mailjet_message(1501, PEOPLE[12], "spam"),
        mailjet_message(1502, PEOPLE[13], "queued"),  # no news yet
    ]
    api = EventsAPI("mailjet", messages)
    with events_api(api) as url:
        campaign = load_campaign(write_campaign(tmp_path, [(f"mailjet://{KEY}:{SECRET}", url)]))
        with open_store(db) as store:
            cid = sent_ledger(store, "mailjet", {})
            (got,) = pull_events(campaign, store, now=NOW).providers
            assert got.error is None, got.error
            assert (got.stored, got.suppressed) == (1502, 2)
            counts = store.events.counts(cid)
            assert counts["delivered"] == 1500 and counts["complained"] == 1
            assert counts["bounced_hard"] == 1
            assert [int(r["Offset"]) for r in api.requests] == [0, 1000]
            assert pull_events(campaign, store, now=NOW + 60).providers[0].stored == 0


# ------------------------------------------------------------------------------ Mandrill


def mandrill_message(n: int, person: str, state: str = "sent", **extra: Any) -> dict[str, Any]:
    return {
        "_id": f"md{n:06d}",
        "ts": int(NOW - 2000 + n),
        "email": person,
        "sender": "news@acme.example",
        "subject": "hi",
        "state": state,
        "tags": ["pulled"],
        "metadata": {"campaign": "pulled", "recipient": person},
        "opens": 0,
        "clicks": 0,
        **extra,
    }


def test_mandrill_search_gives_states_opens_and_clicks(tmp_path: Path, db: Path) -> None:
    messages = [mandrill_message(n, PEOPLE[n % 40]) for n in range(30)]
    messages.append(
        mandrill_message(
            30,
            PEOPLE[14],
            "sent",
            opens=2,
            opens_detail=[
                {"ts": int(NOW - 100), "ua": "Mail"},
                {"ts": int(NOW - 50), "ua": "Mail"},
            ],
            clicks_detail=[{"ts": int(NOW - 40), "url": "https://acme.example/x"}],
        )
    )
    messages.append(mandrill_message(31, PEOPLE[15], "bounced", bounce_description="bad_mailbox"))
    api = EventsAPI("mandrill", messages)
    with events_api(api) as url:
        campaign = load_campaign(write_campaign(tmp_path, [(f"mandrill://{KEY}", url)]))
        with open_store(db) as store:
            cid = sent_ledger(store, "mandrill", {})
            (got,) = pull_events(campaign, store, now=NOW).providers
            assert got.error is None, got.error
            assert (got.stored, got.suppressed) == (35, 1)
            counts = store.events.counts(cid)
            assert counts["opened"] == 2 and counts["clicked"] == 1
            assert counts["sent"] == 31 and counts["bounced_hard"] == 1
            assert api.requests[0]["key"] == KEY
            # the opens count changed since: the events found are the same ones
            messages[30]["opens"] = 3
            assert pull_events(campaign, store, now=NOW + 60).providers[0].stored == 0
