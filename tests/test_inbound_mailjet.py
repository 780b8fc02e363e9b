"""Mailjet event callbacks: single or grouped (Version 2) events (events.md section 7)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from inbound_helpers import basic, echo
from provider_fakes import sample_message

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.mailjet import MailjetParser
from stampcli.providers.webhook import WebhookAuthError, WebhookPayloadError

ENV = {"STAMP_WEBHOOK_USER": "hooks", "STAMP_WEBHOOK_PASSWORD": "pw-0123456789"}
HEADERS = {"Content-Type": "application/json", **basic("hooks", "pw-0123456789")}


def event(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": name,
        "time": 1764000000,
        "MessageID": 19421777835146490,
        "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0gh1i2j",
        "email": "Ann@Example.com",
        "mj_campaign_id": 7257,
        "mj_contact_id": 4,
        **echo("mailjet", sample_message()),
        **extra,
    }


@pytest.fixture
def parser() -> MailjetParser:
    return MailjetParser.from_env(ENV)


def test_single_event_with_custom_id_and_payload(parser: MailjetParser) -> None:
    body = json.dumps(event("sent", smtp_reply="250 OK")).encode()
    parser.verify(HEADERS, body)
    [got] = parser.parse(HEADERS, body).events
    assert got.type is EventType.DELIVERED  # Mailjet's "sent" = accepted by the receiver
    assert got.campaign == "november-news" and got.recipient_key == "ann@example.com"
    assert got.message_id == "19421777835146490"  # the int, as text
    assert got.event_id.startswith("key:") and got.reason == "250 OK"


def test_one_id_per_message_and_status(parser: MailjetParser) -> None:
    # the message API knows a message's status, not when each open was: a message's
    # opens share one id, another status or another message has its own
    body = json.dumps(
        [
            event("open"),
            event("open", time=1764000001),
            event("click", url="https://acme.example/"),
            event("open", MessageID=19421777835146491),
        ]
    ).encode()
    a, b, c, d = parser.parse(HEADERS, body).events
    assert a.event_id == b.event_id
    assert len({a.event_id, c.event_id, d.event_id}) == 3


def test_unauthenticated_refused(parser: MailjetParser) -> None:
    with pytest.raises(WebhookAuthError):
        parser.verify({"Content-Type": "application/json"}, b"{}")


@pytest.mark.parametrize(
    ("name", "extra", "kind", "bounce"),
    [
        ("sent", {}, EventType.DELIVERED, None),
        (
            "bounce",
            {"hard_bounce": True, "error_related_to": "recipient", "error": "user unknown"},
            EventType.BOUNCED,
            "hard",
        ),
        (
            "bounce",
            {"hard_bounce": False, "error_related_to": "recipient", "error": "quota exceeded"},
            EventType.BOUNCED,
            "soft",
        ),
        (
            "bounce",
            {"hard_bounce": False, "error_related_to": "domain", "error": "greylisted"},
            EventType.DEFERRED,
            "soft",
        ),
        (
            "blocked",
            {"error_related_to": "content", "error": "content blocked"},
            EventType.REJECTED,
            None,
        ),
        (
            "blocked",
            {"error_related_to": "mailjet", "error": "preblocked"},
            EventType.DROPPED,
            None,
        ),
        ("spam", {"source": "JMRPP"}, EventType.COMPLAINED, None),
        ("unsub", {"mj_list_id": 1}, EventType.UNSUBSCRIBED, None),
        ("open", {"agent": "UA"}, EventType.OPENED, None),
        ("click", {"url": "https://acme.example/x"}, EventType.CLICKED, None),
    ],
)
def test_each_event_type(
    parser: MailjetParser, name: str, extra: dict[str, Any], kind: EventType, bounce: str | None
) -> None:
    [got] = parser.parse(HEADERS, json.dumps(event(name, **extra)).encode()).events
    assert got.type is kind
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)


def test_grouped_batch_mixed(parser: MailjetParser) -> None:
    body = json.dumps(
        [event("open"), event("bogus"), event("click", email="not-an-address"), event("unsub")]
    ).encode()
    result = parser.parse(HEADERS, body)
    assert [e.type for e in result.events] == [EventType.OPENED, EventType.UNSUBSCRIBED]
    assert [r.index for r in result.rejected] == [1, 2]


def test_payload_that_is_not_stamps_json_is_ignored(parser: MailjetParser) -> None:
    [got] = parser.parse(
        HEADERS, json.dumps(event("open", Payload="{not json", CustomID="")).encode()
    ).events
    assert got.recipient_key is None and got.campaign == "november-news"  # from customcampaign


def test_not_json(parser: MailjetParser) -> None:
    with pytest.raises(WebhookPayloadError, match="not valid JSON"):
        parser.parse(HEADERS, b"\x00\x01binary")
    with pytest.raises(WebhookPayloadError, match="not a JSON array or object"):
        parser.parse(HEADERS, b'"text"')
