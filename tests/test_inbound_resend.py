"""Resend webhooks signed by Svix, signed here with svix's own signer (events.md section 5)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from inbound_helpers import echo
from provider_fakes import sample_message
from svix.webhooks import Webhook

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.resend import ResendParser
from stampcli.providers.webhook import WebhookAuthError

SECRET = "whsec_" + base64.b64encode(b"resend-test-secret-32-bytes-long").decode()
EMAIL_ID = "4ef9a417-02e9-4d39-ad75-9611e0fcc33c"


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "created_at": "2026-11-30T10:00:00.000Z",
        "data": {
            "email_id": EMAIL_ID,
            "created_at": "2026-11-30T09:59:59.000Z",
            "from": "ACME News <news@acme.example>",
            "to": ["Ann@Example.com"],
            "subject": "November news",
            **echo("resend", sample_message()),
            **data,
        },
    }


def signed(
    item: dict[str, Any], msg_id: str = "msg_2W2D3qXLS5fOaPja1GDg7rF2CwB"
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(item).encode()
    now = datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": Webhook(SECRET).sign(msg_id, now, body.decode()),
    }, body


@pytest.fixture
def parser() -> ResendParser:
    return ResendParser.from_env({"RESEND_WEBHOOK_SECRET": SECRET})


def test_signed_event_with_decoded_tags(parser: ResendParser) -> None:
    headers, body = signed(event("email.delivered"))
    parser.verify(headers, body)
    [got] = parser.parse(headers, body).events
    assert got.type is EventType.DELIVERED
    assert got.event_id == "msg_2W2D3qXLS5fOaPja1GDg7rF2CwB"
    assert got.recipient == "ann@example.com"
    # the adapter sent "ann_40example_2Ecom" (tag_value); it is read back as the key
    assert got.campaign == "november-news" and got.recipient_key == "ann@example.com"
    assert got.message_id == EMAIL_ID


def test_tampered_and_unsigned_refused(parser: ResendParser) -> None:
    headers, body = signed(event("email.delivered"))
    with pytest.raises(WebhookAuthError):
        parser.verify(headers, body.replace(b"delivered", b"bounced"))
    with pytest.raises(WebhookAuthError, match="unsigned"):
        parser.verify({"Content-Type": "application/json"}, body)


@pytest.mark.parametrize(
    ("kind", "data", "expected", "bounce"),
    [
        ("email.sent", {}, EventType.SENT, None),
        ("email.delivered", {}, EventType.DELIVERED, None),
        ("email.delivery_delayed", {}, EventType.DEFERRED, "soft"),
        (
            "email.bounced",
            {"bounce": {"type": "Permanent", "subType": "General", "message": "550 unknown user"}},
            EventType.BOUNCED,
            "hard",
        ),
        (
            "email.bounced",
            {"bounce": {"type": "Transient", "subType": "MailboxFull", "message": "full"}},
            EventType.BOUNCED,
            "soft",
        ),
        (
            "email.bounced",
            {
                "bounce": {
                    "type": "Permanent",
                    "subType": "Suppressed",
                    "message": "Resend has suppressed sending to this address because it "
                    "is on the account-level suppression list.",
                }
            },
            EventType.DROPPED,
            None,
        ),
        ("email.suppressed", {}, EventType.DROPPED, None),
        ("email.failed", {"failed": {"reason": "quota exceeded"}}, EventType.FAILED, None),
        ("email.complained", {}, EventType.COMPLAINED, None),
        ("email.opened", {}, EventType.OPENED, None),
        (
            "email.clicked",
            {
                "click": {
                    "link": "https://acme.example/x",
                    "userAgent": "UA",
                    "timestamp": "2026-11-30T10:00:00Z",
                }
            },
            EventType.CLICKED,
            None,
        ),
    ],
)
def test_each_event_type(
    parser: ResendParser, kind: str, data: dict[str, Any], expected: EventType, bounce: str | None
) -> None:
    headers, body = signed(event(kind, **data))
    [got] = parser.parse(headers, body).events
    assert got.type is expected
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)
    if kind == "email.clicked":
        assert got.url == "https://acme.example/x" and got.user_agent == "UA"


def test_contact_and_domain_events_ignored_unknown_rejected(parser: ResendParser) -> None:
    for kind in ("contact.created", "domain.updated", "email.received"):
        result = parser.parse(
            *signed({"type": kind, "created_at": "2026-11-30T10:00:00Z", "data": {}})
        )
        assert result.events == () and result.ignored == 1 and result.rejected == ()
    result = parser.parse(*signed(event("email.teleported")))
    assert "unknown event type" in result.rejected[0].reason


def test_tags_stamp_did_not_encode_are_left_out(parser: ResendParser) -> None:
    headers, body = signed(event("email.delivered", tags={"campaign": "x_ZZ", "recipient": 5}))
    [got] = parser.parse(headers, body).events
    assert got.campaign is None and got.recipient_key is None


def test_rotated_secret_any_listed_signature_matches(parser: ResendParser) -> None:
    # during a secret rotation Svix sends one v1 signature per secret, space-separated
    headers, body = signed(event("email.delivered"))
    old = "whsec_" + base64.b64encode(b"the previous secret, 32 bytes ok").decode()
    when = datetime.fromtimestamp(int(headers["svix-timestamp"]), UTC)
    other = Webhook(old).sign(headers["svix-id"], when, body.decode())
    headers["svix-signature"] = f"{other} {headers['svix-signature']}"
    parser.verify(headers, body)
    headers["svix-signature"] = other
    with pytest.raises(WebhookAuthError, match="no matching signature"):
        parser.verify(headers, body)
