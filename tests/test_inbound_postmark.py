"""Postmark webhooks: one event per request, Basic credentials (events.md section 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from inbound_helpers import basic, echo
from provider_fakes import sample_message

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.postmark import PostmarkParser
from stampcli.providers.webhook import WebhookAuthError, WebhookPayloadError

ENV = {"STAMP_WEBHOOK_USER": "hooks", "STAMP_WEBHOOK_PASSWORD": "pw-0123456789"}
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


def record(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "RecordType": kind,
        "ServerID": 23,
        "MessageStream": "broadcast",
        "MessageID": MESSAGE_ID,
        "Recipient": "Ann@Example.com",
        **echo("postmark", sample_message()),
        **extra,
    }


@pytest.fixture
def parser() -> PostmarkParser:
    return PostmarkParser.from_env(ENV)


def headers(**extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **basic("hooks", "pw-0123456789"), **extra}


def test_delivery_with_metadata_and_trace_id(parser: PostmarkParser) -> None:
    body = json.dumps(
        record("Delivery", DeliveredAt="2026-11-30T10:00:00Z", Details="250 OK")
    ).encode()
    h = headers(**{"X-PM-Webhook-Trace-Id": "2fca4b0c-4aab-4a4e-96a0-7c3f8a7b6f4d"})
    parser.verify(h, body)
    [got] = parser.parse(h, body).events
    assert got.type is EventType.DELIVERED and got.recipient == "ann@example.com"
    # the trace id is only in this request's headers; the id is what the payload says
    assert got.event_id.startswith("key:")
    again = parser.parse(headers(**{"X-PM-Webhook-Trace-Id": "another"}), body).events[0]
    assert again.event_id == got.event_id
    assert got.campaign == "november-news" and got.recipient_key == "ann@example.com"
    assert got.message_id == MESSAGE_ID and got.reason == "250 OK"


def test_wrong_or_missing_credentials_refused(parser: PostmarkParser) -> None:
    body = json.dumps(record("Delivery", DeliveredAt="2026-11-30T10:00:00Z")).encode()
    with pytest.raises(WebhookAuthError):
        parser.verify({"Content-Type": "application/json"}, body)
    with pytest.raises(WebhookAuthError, match="wrong"):
        parser.verify({**basic("hooks", "guess")}, body)


@pytest.mark.parametrize(
    ("extra", "kind", "bounce"),
    [
        ({"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1}, EventType.BOUNCED, "hard"),
        (
            {"RecordType": "Bounce", "Type": "SoftBounce", "TypeCode": 4096},
            EventType.BOUNCED,
            "soft",
        ),
        ({"RecordType": "Bounce", "Type": "Transient", "TypeCode": 2}, EventType.DEFERRED, "soft"),
        ({"RecordType": "Bounce", "Type": "Blocked", "TypeCode": 16}, EventType.REJECTED, None),
        ({"RecordType": "Bounce", "Type": "ManuallyDeactivated"}, EventType.DROPPED, None),
        ({"RecordType": "Bounce", "Type": "AutoResponder"}, EventType.AUTO_REPLIED, None),
        ({"RecordType": "Bounce", "Type": "SpamNotification"}, EventType.COMPLAINED, None),
        ({"RecordType": "Bounce", "Type": "SMTPApiError"}, EventType.FAILED, None),
        ({"RecordType": "SpamComplaint", "Type": "SpamComplaint"}, EventType.COMPLAINED, None),
        ({"RecordType": "Open", "UserAgent": "UA"}, EventType.OPENED, None),
        (
            {"RecordType": "Click", "OriginalLink": "https://acme.example/a"},
            EventType.CLICKED,
            None,
        ),
        (
            {
                "RecordType": "SubscriptionChange",
                "SuppressSending": True,
                "ChangedAt": "2026-11-30T10:00:00Z",
            },
            EventType.UNSUBSCRIBED,
            None,
        ),
        (
            {
                "RecordType": "SubscriptionChange",
                "SuppressSending": False,
                "ChangedAt": "2026-11-30T10:00:00Z",
            },
            EventType.SUBSCRIBED,
            None,
        ),
    ],
)
def test_each_event_type(
    parser: PostmarkParser, extra: dict[str, Any], kind: EventType, bounce: str | None
) -> None:
    item = record(
        extra["RecordType"],
        BouncedAt="2026-11-30T10:00:00Z",
        ReceivedAt="2026-11-30T10:00:00Z",
        ID=42,
        Email="ann@example.com",
        **{k: v for k, v in extra.items() if k != "RecordType"},
    )
    [got] = parser.parse(headers(), json.dumps(item).encode()).events
    assert got.type is kind
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)
    assert got.auto_reply is (kind is EventType.AUTO_REPLIED)
    if kind is EventType.BOUNCED:
        assert got.event_id == "bounce-42"


def test_unknown_record_type_and_bad_bodies(parser: PostmarkParser) -> None:
    result = parser.parse(
        headers(), json.dumps(record("Inbound", ReceivedAt="2026-11-30T10:00:00Z")).encode()
    )
    assert "unknown RecordType 'Inbound'" in result.rejected[0].reason
    with pytest.raises(WebhookPayloadError, match="not a JSON object"):
        parser.parse(headers(), b"[]")
    with pytest.raises(WebhookPayloadError, match="Content-Type"):
        parser.parse({"Content-Type": "multipart/form-data"}, b"{}")


def test_from_env_names_the_missing_variable() -> None:
    with pytest.raises(KeyError, match="STAMP_WEBHOOK_PASSWORD"):
        PostmarkParser.from_env({"STAMP_WEBHOOK_USER": "hooks"})
