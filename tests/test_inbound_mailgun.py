"""Mailgun's JSON webhooks, signed in the body (events.md section 2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import pytest
from inbound_helpers import echo
from provider_fakes import sample_message

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.mailgun import MailgunParser
from stampcli.providers.webhook import WebhookAuthError, WebhookPayloadError

KEY = "key-0123456789abcdef0123456789abcdef"
NOW = 1_764_000_000.0
JSON = {"Content-Type": "application/json"}


def body(
    name: str, *, key: str = KEY, stamp: float = NOW, token: str | None = None, **extra: object
) -> bytes:
    token = token or secrets.token_hex(25)
    stamp_text = str(int(stamp))
    data = {
        "signature": {
            "timestamp": stamp_text,
            "token": token,
            "signature": hmac.new(
                key.encode(), (stamp_text + token).encode(), hashlib.sha256
            ).hexdigest(),
        },
        "event-data": {
            "event": name,
            "timestamp": 1764000000.123456,
            "id": "CPgfbmQMTCKtHW6uIWtuVe",
            "recipient": "Ann@Example.com",
            "message": {
                "headers": {"message-id": "20260203192638.000be97f99f8cea1@mg.example.com"}
            },
            **echo("mailgun", sample_message()),
            # keyword names cannot hold "-": delivery_status is Mailgun's delivery-status
            **{k.replace("_", "-"): v for k, v in extra.items()},
        },
    }
    return json.dumps(data).encode()


@pytest.fixture
def parser() -> MailgunParser:
    return MailgunParser.from_env({"MAILGUN_WEBHOOK_SIGNING_KEY": KEY}, clock=lambda: NOW)


def test_signed_event_parsed_with_metadata(parser: MailgunParser) -> None:
    raw = body("delivered", token="t" * 50, delivery_status={"message": "250 OK"})
    parser.verify(JSON, raw)
    [got] = parser.parse(JSON, raw).events
    assert got.type is EventType.DELIVERED
    # event-data.id with its time, as the events API lists it (not the token)
    assert got.event_id == "CPgfbmQMTCKtHW6uIWtuVe@1764000000.123456"
    assert got.recipient == "ann@example.com"
    assert got.campaign == "november-news" and got.recipient_key == "ann@example.com"
    # the send answer's id is "<...>"; events drop the brackets
    assert got.provider_message_id == "20260203192638.000be97f99f8cea1@mg.example.com"
    assert got.message_id == got.provider_message_id
    assert got.message_id_header == "<20260203192638.000be97f99f8cea1@mg.example.com>"
    assert got.reason == "250 OK"
    assert "t" * 50 not in got.raw  # the signature object is not in the stored copy


def test_forged_stale_replayed_and_unsigned_refused(parser: MailgunParser) -> None:
    with pytest.raises(WebhookAuthError, match="does not match"):
        parser.verify(JSON, body("delivered", key="key-wrong"))
    with pytest.raises(WebhookAuthError, match="from now"):
        parser.verify(JSON, body("delivered", stamp=NOW - 3600))
    once = body("delivered")
    parser.verify(JSON, once)
    with pytest.raises(WebhookAuthError, match="replay"):
        parser.verify(JSON, once)
    unsigned = json.loads(body("delivered"))
    del unsigned["signature"]
    with pytest.raises(WebhookAuthError, match="no signature"):
        parser.verify(JSON, json.dumps(unsigned).encode())


@pytest.mark.parametrize(
    ("name", "extra", "kind", "bounce"),
    [
        ("accepted", {}, EventType.QUEUED, None),
        ("rejected", {"reject": {"reason": "virus"}}, EventType.REJECTED, None),
        ("delivered", {}, EventType.DELIVERED, None),
        ("failed", {"severity": "permanent", "reason": "bounce"}, EventType.BOUNCED, "hard"),
        ("failed", {"severity": "temporary", "reason": "generic"}, EventType.DEFERRED, "soft"),
        ("failed", {"severity": "permanent", "reason": "suppress-bounce"}, EventType.DROPPED, None),
        ("opened", {"client-info": {"user-agent": "UA/1"}}, EventType.OPENED, None),
        ("clicked", {"url": "https://acme.example/a"}, EventType.CLICKED, None),
        ("unsubscribed", {}, EventType.UNSUBSCRIBED, None),
        ("complained", {}, EventType.COMPLAINED, None),
    ],
)
def test_each_event_type(
    parser: MailgunParser, name: str, extra: dict[str, Any], kind: EventType, bounce: str | None
) -> None:
    [got] = parser.parse(JSON, body(name, **extra)).events
    assert got.type is kind
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)
    if name == "opened":
        assert got.user_agent == "UA/1"


def test_out_of_office_failure_is_an_auto_reply(parser: MailgunParser) -> None:
    status = {"description": "Out of Office: back on Monday", "code": 550}
    raw = body("failed", severity="permanent", delivery_status=status)
    [got] = parser.parse(JSON, raw).events
    assert got.type is EventType.AUTO_REPLIED and got.auto_reply


def test_unknown_event_is_rejected_not_fatal(parser: MailgunParser) -> None:
    result = parser.parse(JSON, body("teleported"))
    assert result.events == () and "unknown event type" in result.rejected[0].reason


@pytest.mark.parametrize(
    ("raw", "headers", "message"),
    [
        (
            b"event=delivered&token=x",
            {"Content-Type": "application/x-www-form-urlencoded"},
            "Content-Type",
        ),
        (b'{"event-data": []}', JSON, "legacy form webhooks"),
        (b"[1, 2]", JSON, "not {signature, event-data}"),
        (b"{nope", JSON, "not valid JSON"),
    ],
)
def test_bad_requests(
    parser: MailgunParser, raw: bytes, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        parser.parse(headers, raw)
