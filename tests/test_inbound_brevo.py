"""Brevo transactional webhooks (events.md section 10)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from inbound_helpers import basic, echo
from provider_fakes import sample_message

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.brevo import BrevoParser
from stampcli.providers.webhook import WebhookAuthError

ENV = {"STAMP_WEBHOOK_USER": "hooks", "STAMP_WEBHOOK_PASSWORD": "pw-0123456789"}
HEADERS = {"Content-Type": "application/json", **basic("hooks", "pw-0123456789")}
MESSAGE_ID = "<201798300811.5787683@relay.domain.com>"


def event(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "event": name,
        "email": "Ann@Example.com",
        "id": 1234,
        "date": "2026-11-30 11:00:00",
        "ts": 1764000000,
        "ts_event": 1764000000,
        "ts_epoch": 1764000000123,
        "message-id": MESSAGE_ID,
        "subject": "November news",
        **echo("brevo", sample_message()),
        **extra,
    }


@pytest.fixture
def parser() -> BrevoParser:
    return BrevoParser.from_env(ENV)


def test_event_with_custom_header_and_message_id(parser: BrevoParser) -> None:
    body = json.dumps(event("delivered")).encode()
    parser.verify(HEADERS, body)
    [got] = parser.parse(HEADERS, body).events
    assert got.type is EventType.DELIVERED
    assert got.campaign == "november-news" and got.recipient_key == "ann@example.com"
    assert got.provider_message_id == MESSAGE_ID
    assert got.message_id == MESSAGE_ID.strip("<>") and got.message_id_header == MESSAGE_ID
    assert got.occurred_at == datetime.fromtimestamp(1764000000.123, UTC)


def test_unauthenticated_refused(parser: BrevoParser) -> None:
    with pytest.raises(WebhookAuthError):
        parser.verify({"Authorization": "Bearer x"}, b"{}")


@pytest.mark.parametrize(
    ("name", "extra", "kind", "bounce"),
    [
        ("request", {}, EventType.QUEUED, None),
        ("delivered", {}, EventType.DELIVERED, None),
        (
            "hard_bounce",
            {"reason": " RecipientError: 550 5.5.0 mailbox unavailable."},
            EventType.BOUNCED,
            "hard",
        ),
        ("soft_bounce", {"reason": "452 mailbox full"}, EventType.BOUNCED, "soft"),
        ("soft_bounce", {"reason": "Out of office until Monday"}, EventType.AUTO_REPLIED, None),
        ("deferred", {}, EventType.DEFERRED, "soft"),
        ("blocked", {}, EventType.DROPPED, None),
        ("invalid_email", {}, EventType.REJECTED, None),
        ("error", {}, EventType.FAILED, None),
        ("spam", {}, EventType.COMPLAINED, None),
        ("opened", {}, EventType.OPENED, None),
        ("unique_opened", {}, EventType.OPENED, None),
        ("proxy_open", {}, EventType.OPENED, None),
        ("click", {"link": "https://acme.example/x"}, EventType.CLICKED, None),
        ("unsubscribe", {}, EventType.UNSUBSCRIBED, None),
        ("unsubscribed", {}, EventType.UNSUBSCRIBED, None),
    ],
)
def test_each_event_type(
    parser: BrevoParser, name: str, extra: dict[str, Any], kind: EventType, bounce: str | None
) -> None:
    [got] = parser.parse(HEADERS, json.dumps(event(name, **extra)).encode()).events
    assert got.type is kind
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)
    if name == "click":
        assert got.url == "https://acme.example/x"


def test_batched_list_and_seconds_fallback(parser: BrevoParser) -> None:
    no_epoch = {k: v for k, v in event("opened").items() if k != "ts_epoch"}
    body = json.dumps([event("delivered"), no_epoch, event("delivered", ts_epoch="soon")]).encode()
    result = parser.parse(HEADERS, body)
    assert len(result.events) == 2 and result.events[1].occurred_at.timestamp() == 1764000000
    assert "ts_epoch" in result.rejected[0].reason
