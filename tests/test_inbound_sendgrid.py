"""SendGrid Event Webhook: signed batches as SendGrid documents them (events.md section 1)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from inbound_helpers import ecdsa_key, echo, sendgrid_headers
from provider_fakes import sample_message

from stampcli import redact
from stampcli.events.model import BounceKind, EventType
from stampcli.providers.sendgrid import SendGridParser
from stampcli.providers.webhook import WebhookAuthError, WebhookPayloadError, parser_class

TS = 1764000000
SG_ID = "XBg2anf2TqCy6WXKQFhieQ.filter0905p1mdw1-4434-59E0C6FF-3.0"


def event(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": "Ann@Example.com",
        "timestamp": TS,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": name,
        "category": ["november-news"],
        "sg_event_id": f"sg_event_id-{name}",
        "sg_message_id": SG_ID,
        **echo("sendgrid", sample_message()),
        **extra,
    }


@pytest.fixture
def parser() -> SendGridParser:
    _, public = ecdsa_key()
    return SendGridParser(public)


def parse(parser: SendGridParser, events: list[Any]) -> Any:
    return parser.parse({"Content-Type": "application/json"}, json.dumps(events).encode())


def test_registered() -> None:
    assert parser_class("sendgrid") is SendGridParser
    assert SendGridParser.env == ("SENDGRID_WEBHOOK_PUBLIC_KEY",)


def test_verify_and_parse_a_signed_batch() -> None:
    private, public = ecdsa_key()
    parser = SendGridParser.from_env({"SENDGRID_WEBHOOK_PUBLIC_KEY": public})
    body = json.dumps([event("delivered"), event("open", useragent="Mozilla/5.0")]).encode()
    headers = sendgrid_headers(private, body, str(int(time.time())))
    parser.verify(headers, body)
    result = parser.parse(headers, body)
    delivered, opened = result.events
    assert delivered.type is EventType.DELIVERED
    assert delivered.provider == "sendgrid"
    assert delivered.event_id == "sg_event_id-delivered"
    assert delivered.recipient == "ann@example.com"
    assert delivered.occurred_at == datetime.fromtimestamp(TS, UTC)
    assert delivered.campaign == "november-news"
    assert delivered.recipient_key == "ann@example.com"
    assert delivered.provider_message_id == SG_ID
    assert delivered.message_id == "XBg2anf2TqCy6WXKQFhieQ"  # the X-Message-Id of the send
    assert delivered.message_id_header == "<14c5d75ce93.dfd.64b469@ismtpd-555>"
    assert opened.user_agent == "Mozilla/5.0"
    assert result.rejected == ()


def test_forged_and_replayed_batches_refused() -> None:
    private, public = ecdsa_key()
    parser = SendGridParser(public)
    body = json.dumps([event("delivered")]).encode()
    with pytest.raises(WebhookAuthError):
        parser.verify(sendgrid_headers(private, body, str(int(time.time()))), body[:-1] + b" ]")
    with pytest.raises(WebhookAuthError, match="from now"):
        parser.verify(sendgrid_headers(private, body, str(int(time.time()) - 3600)), body)
    with pytest.raises(WebhookAuthError, match="unsigned"):
        parser.verify({"Content-Type": "application/json"}, body)


@pytest.mark.parametrize(
    ("name", "extra", "kind", "bounce"),
    [
        ("processed", {}, EventType.QUEUED, None),
        ("deferred", {"attempt": "2", "response": "450 try later"}, EventType.DEFERRED, "soft"),
        ("delivered", {"response": "250 OK"}, EventType.DELIVERED, None),
        ("bounce", {"type": "bounce", "reason": "550 5.1.1 unknown"}, EventType.BOUNCED, "hard"),
        ("bounce", {"type": "blocked", "reason": "blocked by RBL"}, EventType.BOUNCED, "soft"),
        ("dropped", {"reason": "Bounced Address"}, EventType.DROPPED, None),
        ("dropped", {"reason": "Unsubscribed Address"}, EventType.DROPPED, None),
        ("dropped", {"reason": "Invalid SMTPAPI header"}, EventType.REJECTED, None),
        ("open", {"useragent": "UA"}, EventType.OPENED, None),
        ("click", {"url": "https://acme.example/x"}, EventType.CLICKED, None),
        ("spamreport", {}, EventType.COMPLAINED, None),
        ("unsubscribe", {}, EventType.UNSUBSCRIBED, None),
        ("group_unsubscribe", {"asm_group_id": 1}, EventType.UNSUBSCRIBED, None),
        ("group_resubscribe", {"asm_group_id": 1}, EventType.SUBSCRIBED, None),
    ],
)
def test_each_event_type(
    parser: SendGridParser, name: str, extra: dict[str, Any], kind: EventType, bounce: str | None
) -> None:
    [got] = parse(parser, [event(name, **extra)]).events
    assert got.type is kind
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)
    if name == "click":
        assert got.url == "https://acme.example/x"


def test_mixed_batch_keeps_the_good_events(parser: SendGridParser) -> None:
    bad_time = event("delivered", timestamp="yesterday")
    no_email = {k: v for k, v in event("open").items() if k != "email"}
    result = parse(
        parser,
        [event("delivered"), event("teleported"), bad_time, 42, no_email, event("click")],
    )
    assert [e.type for e in result.events] == [EventType.DELIVERED, EventType.CLICKED]
    assert [r.index for r in result.rejected] == [1, 2, 3, 4]
    reasons = " | ".join(r.reason for r in result.rejected)
    assert "unknown event type 'teleported'" in reasons
    assert "timestamp is not a time" in reasons
    assert "not a JSON object" in reasons
    assert "no recipient address" in reasons


def test_async_bounce_without_message_id_still_parsed(parser: SendGridParser) -> None:
    item = event("bounce", type="bounce", reason="550 no such user")
    del item["sg_message_id"]
    [got] = parse(parser, [item]).events
    assert got.message_id is None and got.recipient == "ann@example.com"


def test_auto_reply_bounce_is_not_a_bounce(parser: SendGridParser) -> None:
    item = event("bounce", type="bounce", reason="Auto-Reply: I am out of the office")
    [got] = parse(parser, [item]).events
    assert got.type is EventType.AUTO_REPLIED and got.auto_reply and got.bounce_kind is None


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[{", "application/json", "not valid JSON"),
        (b'{"event": "delivered"}', "application/json", "not a JSON array"),
        (b"[]", "text/html", "Content-Type 'text/html'"),
        (b"[]", "", "Content-Type 'none'"),
        (b"", "application/json", "empty"),
        (b'["\xff\xfe"]', "application/json", "not valid JSON"),
    ],
)
def test_bad_requests(parser: SendGridParser, body: bytes, content_type: str, message: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with pytest.raises(WebhookPayloadError, match=message):
        parser.parse(headers, body)


def test_hostile_fields(parser: SendGridParser) -> None:
    item = event(
        "bounce",
        type="bounce",
        reason="550 bad\r\nX-Injected: yes\x00" + "x" * 5000,
        useragent="UA\r\nSet-Cookie: a",
        url="javascript:alert(1)",
    )
    injected = event("delivered", sg_event_id="id\r\nwith-newline")
    huge_id = event("delivered", sg_event_id="x" * 10_000)
    bad_address = event("delivered", email="ann@example.com\r\nBcc: eve@evil.example")
    result = parse(parser, [item, injected, huge_id, bad_address])
    [got] = result.events
    assert got.reason is not None and "\r" not in got.reason and "\n" not in got.reason
    assert "\x00" not in got.reason and len(got.reason) <= 500
    assert got.user_agent == "UA Set-Cookie: a"
    assert got.url is None
    assert len(result.rejected) == 3
    assert "control characters" in result.rejected[0].reason
    assert "longer than" in result.rejected[1].reason
    assert "not an email address" in result.rejected[2].reason


def test_raw_copy_is_json_with_secrets_redacted(parser: SendGridParser) -> None:
    redact.register("sk-live-SECRET-123")
    item = event("delivered", response="250 ok sk-live-SECRET-123", token="abc")
    [got] = parse(parser, [item]).events
    raw = json.loads(got.raw)
    assert raw["event"] == "delivered" and raw["token"] == "***"
    assert "sk-live-SECRET-123" not in got.raw
    assert got.reason == "250 ok ***"


def test_deeply_nested_and_huge_number_fields(parser: SendGridParser) -> None:
    nested: Any = []
    for _ in range(400):  # orjson reads 1024 levels but writes only 254
        nested = [nested]
    item = event("open", extra=nested, big=10**40)
    [got] = parse(parser, [item]).events
    assert got.type is EventType.OPENED and got.event_id == "sg_event_id-open"
    del item["sg_event_id"]
    [hashed] = parse(parser, [item]).events
    assert hashed.event_id.startswith("sha256:")
    assert "…" in hashed.raw
