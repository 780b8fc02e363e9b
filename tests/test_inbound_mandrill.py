"""Mandrill webhooks: a signed form field holding a JSON array (events.md section 9)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from inbound_helpers import echo
from provider_fakes import sample_message

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.mandrill import MandrillParser
from stampcli.providers.webhook import WebhookAuthError, WebhookPayloadError, mandrill_signature

ENV = {
    "MANDRILL_WEBHOOK_KEY": "mandrill-hook-key",
    "STAMP_PUBLIC_URL": "https://hooks.acme.example/",
}
URL = "https://hooks.acme.example/webhooks/mandrill"
FORM = "application/x-www-form-urlencoded"


def event(name: str, **msg: Any) -> dict[str, Any]:
    return {
        "event": name,
        "ts": 1764000000,
        "_id": "1773449.19b42ef87018492abb41986e33a21a90",
        "msg": {
            "_id": "19b42ef87018492abb41986e33a21a90",
            "ts": 1763999000,
            "email": "Ann@Example.com",
            "sender": "news@acme.example",
            "subject": "November news",
            "state": "sent",
            **echo("mandrill", sample_message()),
            **msg,
        },
    }


def request(
    events: Any, *, key: str = "mandrill-hook-key", url: str = URL
) -> tuple[dict[str, str], bytes]:
    value = json.dumps(events)
    signature = mandrill_signature(key, url, [("mandrill_events", value)])
    return {"Content-Type": FORM, "X-Mandrill-Signature": signature}, urlencode(
        {"mandrill_events": value}
    ).encode()


@pytest.fixture
def parser() -> MandrillParser:
    return MandrillParser.from_env(ENV)


def test_signed_batch(parser: MandrillParser) -> None:
    headers, body = request([event("delivered"), event("open")])
    parser.verify(headers, body)
    delivered, opened = parser.parse(headers, body).events
    assert delivered.type is EventType.DELIVERED and opened.type is EventType.OPENED
    assert delivered.campaign == "november-news" and delivered.recipient_key == "ann@example.com"
    assert delivered.message_id == "19b42ef87018492abb41986e33a21a90"
    assert delivered.event_id != opened.event_id


def test_signature_over_another_url_or_key_refused(parser: MandrillParser) -> None:
    with pytest.raises(WebhookAuthError, match="STAMP_PUBLIC_URL"):
        parser.verify(*request([event("open")], url="http://internal:8000/webhooks/mandrill"))
    with pytest.raises(WebhookAuthError):
        parser.verify(*request([event("open")], key="other"))
    headers, body = request([event("open")])
    with pytest.raises(WebhookAuthError, match="unsigned"):
        parser.verify({"Content-Type": FORM}, body)
    tampered = body.replace(b"open", b"spam")
    with pytest.raises(WebhookAuthError):
        parser.verify(headers, tampered)


@pytest.mark.parametrize(
    ("name", "msg", "kind", "bounce"),
    [
        ("send", {}, EventType.SENT, None),
        ("delivered", {}, EventType.DELIVERED, None),
        ("deferral", {}, EventType.DEFERRED, "soft"),
        (
            "hard_bounce",
            {"bounce_description": "bad_mailbox", "diag": "smtp;550 5.1.1"},
            EventType.BOUNCED,
            "hard",
        ),
        ("soft_bounce", {"bounce_description": "mailbox_full"}, EventType.BOUNCED, "soft"),
        (
            "soft_bounce",
            {"diag": "smtp;554 Auto-reply: I am on vacation"},
            EventType.AUTO_REPLIED,
            None,
        ),
        ("reject", {}, EventType.DROPPED, None),
        ("spam", {}, EventType.COMPLAINED, None),
        ("unsub", {}, EventType.UNSUBSCRIBED, None),
        ("click", {}, EventType.CLICKED, None),
    ],
)
def test_each_event_type(
    parser: MandrillParser, name: str, msg: dict[str, Any], kind: EventType, bounce: str | None
) -> None:
    [got] = parser.parse(*request([event(name, **msg)])).events
    assert got.type is kind
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)


def test_sync_events_ignored_and_bad_events_rejected(parser: MandrillParser) -> None:
    sync = {"type": "blacklist", "action": "add", "reject": {"email": "x@y.example"}}
    result = parser.parse(*request([sync, event("open"), event("bogus"), "text"]))
    assert result.ignored == 1 and len(result.events) == 1 and len(result.rejected) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"other=1", FORM, "no mandrill_events"),
        (b"mandrill_events=%5Bnot", FORM, "mandrill_events is not valid JSON"),
        (b"mandrill_events=%7B%7D", FORM, "not a JSON array"),
        (b'{"mandrill_events": []}', "application/json", "Content-Type"),
        (b"mandrill_events=\xff", FORM, "not ASCII"),
        (b"a=1&&&b", FORM, "not a valid form"),
    ],
)
def test_bad_requests(parser: MandrillParser, body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        parser.parse({"Content-Type": content_type}, body)
