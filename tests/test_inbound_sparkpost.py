"""SparkPost webhook batches of msys events (events.md section 8)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from inbound_helpers import basic, echo
from provider_fakes import sample_message

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.sparkpost import SparkPostParser
from stampcli.providers.webhook import WebhookAuthError, WebhookPayloadError

ENV = {"STAMP_WEBHOOK_USER": "hooks", "STAMP_WEBHOOK_PASSWORD": "pw-0123456789"}
HEADERS = {"Content-Type": "application/json", **basic("hooks", "pw-0123456789")}


def wrap(kind: str, cls: str = "message_event", **extra: Any) -> dict[str, Any]:
    return {
        "msys": {
            cls: {
                "type": kind,
                "event_id": f"92356927693813{len(kind)}{len(extra)}",
                "timestamp": "1764000000",
                "transmission_id": "65832150921904138",
                "message_id": "000443ee14578172be22",
                "raw_rcpt_to": "Ann@Example.com",
                "rcpt_to": "ann@example.com",
                "rcpt_tags": [],
                **echo("sparkpost", sample_message()),
                **extra,
            }
        }
    }


@pytest.fixture
def parser() -> SparkPostParser:
    return SparkPostParser.from_env(ENV)


def test_batch_with_ping_and_metadata(parser: SparkPostParser) -> None:
    body = json.dumps([{"msys": {}}, wrap("delivery")]).encode()
    parser.verify(HEADERS, body)
    result = parser.parse(HEADERS, body)
    [got] = result.events
    assert result.ignored == 1
    assert got.type is EventType.DELIVERED and got.recipient == "ann@example.com"
    assert got.campaign == "november-news" and got.recipient_key == "ann@example.com"
    assert got.message_id == "65832150921904138"  # transmission id = the send answer's id
    assert got.event_id.startswith("92356927693813")


def test_unauthenticated_refused(parser: SparkPostParser) -> None:
    with pytest.raises(WebhookAuthError):
        parser.verify({**basic("hooks", "nope")}, b"[]")


@pytest.mark.parametrize(
    ("kind", "cls", "extra", "expected", "bounce"),
    [
        ("injection", "message_event", {}, EventType.QUEUED, None),
        ("delay", "message_event", {"reason": "451 later"}, EventType.DEFERRED, "soft"),
        (
            "bounce",
            "message_event",
            {"bounce_class": "10", "raw_reason": "550 5.1.1 unknown"},
            EventType.BOUNCED,
            "hard",
        ),
        ("bounce", "message_event", {"bounce_class": "22"}, EventType.BOUNCED, "soft"),
        ("bounce", "message_event", {"bounce_class": "26"}, EventType.DROPPED, None),
        ("bounce", "message_event", {"bounce_class": "60"}, EventType.AUTO_REPLIED, None),
        ("bounce", "message_event", {"bounce_class": "100"}, EventType.AUTO_REPLIED, None),
        ("out_of_band", "message_event", {"bounce_class": "30"}, EventType.BOUNCED, "hard"),
        ("policy_rejection", "message_event", {}, EventType.DROPPED, None),
        ("generation_failure", "gen_event", {}, EventType.FAILED, None),
        ("spam_complaint", "message_event", {}, EventType.COMPLAINED, None),
        ("open", "track_event", {"user_agent": "UA"}, EventType.OPENED, None),
        (
            "click",
            "track_event",
            {"target_link_url": "https://acme.example/x"},
            EventType.CLICKED,
            None,
        ),
        ("list_unsubscribe", "unsubscribe_event", {}, EventType.UNSUBSCRIBED, None),
    ],
)
def test_each_event_type(
    parser: SparkPostParser,
    kind: str,
    cls: str,
    extra: dict[str, Any],
    expected: EventType,
    bounce: str | None,
) -> None:
    [got] = parser.parse(HEADERS, json.dumps([wrap(kind, cls, **extra)]).encode()).events
    assert got.type is expected
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)
    assert got.auto_reply is (expected is EventType.AUTO_REPLIED)


def test_mixed_batch(parser: SparkPostParser) -> None:
    body = json.dumps(
        [
            wrap("delivery"),
            {"msys": {"weird_event": {}}},
            {"nope": 1},
            wrap("open", "track_event", timestamp="-5"),
            wrap("click", "track_event"),
        ]
    ).encode()
    result = parser.parse(HEADERS, body)
    assert [e.type for e in result.events] == [EventType.DELIVERED, EventType.CLICKED]
    assert [r.index for r in result.rejected] == [1, 2, 3]


def test_not_an_array(parser: SparkPostParser) -> None:
    with pytest.raises(WebhookPayloadError, match="not a JSON array"):
        parser.parse(HEADERS, json.dumps(wrap("delivery")).encode())
