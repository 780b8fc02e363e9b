"""One provider event received by webhook and also pulled is stored once.

For Mailgun, Postmark, Mandrill, Brevo and Mailjet the same event is given in
both of the provider's shapes: a webhook request through the real parser (its
credentials checked) and the events API's answer through the local fakes of
``events_fakes``, in either order, into a real SQLite store. The webhook parser
and the pull must derive the same event id, so the second one is a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from events_fakes import DOMAIN, KEY, SECRET, EventsAPI, events_api
from inbound_helpers import basic
from test_events_pull import (
    NOW,
    PEOPLE,
    brevo_row,
    mailgun_event,
    mailjet_message,
    mandrill_message,
    postmark_bounce,
    sent_ledger,
    write_campaign,
)
from test_inbound_mandrill import request as mandrill_request

from stampcli.config import load_campaign
from stampcli.providers.brevo import BrevoParser
from stampcli.providers.events_pull import pull_events
from stampcli.providers.mailgun import MailgunParser
from stampcli.providers.mailjet import MailjetParser
from stampcli.providers.mandrill import MandrillParser
from stampcli.providers.postmark import PostmarkParser
from stampcli.providers.webhook import WebhookParser
from stampcli.service.events import record_events
from stampcli.store import open_store

BASIC_ENV = {"STAMP_WEBHOOK_USER": "hooks", "STAMP_WEBHOOK_PASSWORD": "pw-0123456789"}
JSON_BASIC = {"Content-Type": "application/json", **basic("hooks", "pw-0123456789")}
MAILGUN_SIGNING_KEY = "key-0123456789abcdef0123456789abcdef"


@dataclass
class Case:
    """One provider's events in both shapes."""

    url: str  # the campaign's provider URL (endpoint: the fake)
    api: EventsAPI  # the events API's answer
    parser: WebhookParser
    requests: list[tuple[dict[str, str], bytes]]  # the webhook's requests
    events: int  # how many distinct events they are
    ledger_ids: dict[str, str] = field(default_factory=dict)


def mailgun() -> Case:
    # the webhook's event-data is the API's item; only the signature is added
    items = [
        mailgun_event(1, PEOPLE[0]),
        mailgun_event(2, PEOPLE[1], "opened"),
        mailgun_event(
            3,
            PEOPLE[2],
            "failed",
            severity="permanent",
            **{"delivery-status": {"description": "550 no such mailbox"}},
        ),
    ]
    requests = []
    for n, item in enumerate(items):
        token, stamp = f"{n:02d}" + "t" * 48, str(int(NOW))
        signature = hmac.new(
            MAILGUN_SIGNING_KEY.encode(), (stamp + token).encode(), hashlib.sha256
        ).hexdigest()
        body = {
            "signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": item,
        }
        requests.append(({"Content-Type": "application/json"}, json.dumps(body).encode()))
    parser = MailgunParser.from_env(
        {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}, clock=lambda: NOW
    )
    return Case(f"mailgun://{KEY}@{DOMAIN}", EventsAPI("mailgun", items), parser, requests, 3)


def postmark() -> Case:
    bounce = postmark_bounce(1, PEOPLE[0])
    complaint = postmark_bounce(2, PEOPLE[1], "SpamComplaint")
    hooks = [
        # the Bounce webhook: the bounces API's record plus RecordType, Tag and Metadata
        {**bounce, "RecordType": "Bounce", "Tag": "pulled", "Metadata": {"campaign": "pulled"}},
        {**complaint, "RecordType": "SpamComplaint", "Tag": "pulled"},
    ]
    requests = [
        ({**JSON_BASIC, "X-PM-Webhook-Trace-Id": f"trace-{n}"}, json.dumps(h).encode())
        for n, h in enumerate(hooks)
    ]
    return Case(
        f"postmark://{KEY}",
        EventsAPI("postmark", [bounce, complaint]),
        PostmarkParser.from_env(BASIC_ENV),
        requests,
        2,
        {p: f"pm-{p}" for p in PEOPLE},
    )


def mandrill() -> Case:
    opened, clicked = int(NOW - 100), int(NOW - 40)
    link = "https://acme.example/x"
    sent = mandrill_message(
        1,
        PEOPLE[0],
        opens_detail=[{"ts": opened, "ua": "Mail"}],
        clicks_detail=[{"ts": clicked, "url": link}],
    )
    bounced = mandrill_message(2, PEOPLE[1], "bounced", bounce_description="bad_mailbox")

    def envelope(message: dict[str, Any], name: str, ts: int, **extra: Any) -> dict[str, Any]:
        msg = {k: v for k, v in message.items() if not k.endswith("_detail")}
        # the event's _id may carry an "N." prefix; msg._id is the message's
        return {"event": name, "ts": ts, "_id": f"1773449.{message['_id']}", "msg": msg, **extra}

    hooks = [
        # the send and the bounce happen after the message's ts, which the search gives
        envelope(sent, "send", sent["ts"] + 2),
        envelope(sent, "open", opened, user_agent="Mail"),
        envelope(sent, "click", clicked, url=link),
        envelope(bounced, "hard_bounce", bounced["ts"] + 300),
    ]
    url = "https://hooks.acme.example/webhooks/mandrill"
    parser = MandrillParser("mandrill-hook-key", url)
    return Case(
        f"mandrill://{KEY}",
        EventsAPI("mandrill", [sent, bounced]),
        parser,
        [mandrill_request(hooks, key="mandrill-hook-key", url=url)],
        4,
    )


def brevo() -> Case:
    rows = [
        brevo_row(1, PEOPLE[0]),
        brevo_row(2, PEOPLE[1], "hardBounces"),
        {**brevo_row(3, PEOPLE[2], "clicks"), "link": "https://acme.example/x"},
    ]
    names = {"delivered": "delivered", "hardBounces": "hard_bounce", "clicks": "click"}
    hooks = []
    for n, row in enumerate(rows, start=1):
        seconds = int(NOW - 4000 + n)
        hook: dict[str, Any] = {
            "event": names[row["event"]],
            "email": row["email"],
            "id": 4711,  # the webhook's id, the same for every event
            "date": "2025-11-24 15:00:00",  # the account's time zone
            "ts": seconds,
            "ts_event": seconds,
            "ts_epoch": seconds * 1000 + 456,  # milliseconds: the report has seconds
            "message-id": row["messageId"],
            "subject": "hi",
            "tag": "pulled",
            "reason": row["reason"],
        }
        if "link" in row:
            hook["link"] = row["link"]
        hooks.append(hook)
    return Case(
        f"brevo://{KEY}",
        EventsAPI("brevo", rows),
        BrevoParser.from_env(BASIC_ENV),
        [(JSON_BASIC, json.dumps(hooks).encode())],  # a batched webhook
        3,
        {p: f"<{p}.brevo@smtp-relay.mailin.fr>" for p in PEOPLE},
    )


def mailjet() -> Case:
    bounced = mailjet_message(1, PEOPLE[0], "hardbounced")
    opened = mailjet_message(2, PEOPLE[1], "opened")

    def hook(message: dict[str, Any], name: str, at: float, **extra: Any) -> dict[str, Any]:
        return {
            "event": name,
            "time": int(at),
            "MessageID": message["ID"],
            "email": message["ContactAlt"],
            "mj_campaign_id": 7257,
            "mj_contact_id": 4,
            "customcampaign": "pulled",
            "CustomID": message["CustomID"],
            "Payload": message["EventPayload"],
            **extra,
        }

    arrived = NOW - 3000
    hooks = [
        hook(bounced, "bounce", arrived + 60, hard_bounce=True, error="user unknown"),
        # two opens of one message: the message API knows only that it was opened
        hook(opened, "open", arrived + 600, agent="Mail"),
        hook(opened, "open", arrived + 7200, agent="Mail"),
    ]
    return Case(
        f"mailjet://{KEY}:{SECRET}",
        EventsAPI("mailjet", [bounced, opened]),
        MailjetParser.from_env(BASIC_ENV),
        [(JSON_BASIC, json.dumps(hooks).encode())],
        2,
    )


CASES: dict[str, Callable[[], Case]] = {
    "mailgun": mailgun,
    "postmark": postmark,
    "mandrill": mandrill,
    "brevo": brevo,
    "mailjet": mailjet,
}


@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-then-pull", "pull-first"])
@pytest.mark.parametrize("provider", list(CASES))
def test_an_event_by_webhook_and_by_pull_is_stored_once(
    provider: str, webhook_first: bool, tmp_path: Path
) -> None:
    case = CASES[provider]()
    with events_api(case.api) as endpoint:
        campaign = load_campaign(write_campaign(tmp_path, [(case.url, endpoint)]))
        with open_store(tmp_path / "stamp.db") as store:
            cid = sent_ledger(store, provider, case.ledger_ids)

            def webhooks() -> tuple[int, int]:
                stored = duplicates = 0
                for headers, body in case.requests:
                    case.parser.verify(headers, body)
                    parsed = case.parser.parse(headers, body)
                    assert not parsed.rejected, parsed.rejected
                    got = record_events(store, parsed.events, now=NOW)
                    stored, duplicates = stored + got.stored, duplicates + got.duplicates
                return stored, duplicates

            def pull() -> tuple[int, int]:
                (got,) = pull_events(campaign, store, now=NOW).providers
                assert got.error is None and got.rejected == 0, got
                return got.stored, got.duplicates

            first, second = (webhooks, pull) if webhook_first else (pull, webhooks)
            stored, _ = first()
            assert stored == case.events
            again, duplicates = second()
            assert again == 0, f"{again} of the {case.events} events were stored twice"
            assert duplicates >= case.events
            rows = store.events.rows(cid, limit=100)
            assert len(rows) == case.events and store.events.unmatched() == 0
