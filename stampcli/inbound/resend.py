"""Resend webhooks: one ``{"type", "created_at", "data"}`` object per request, signed by Svix.

stamp's adapter sends the tags as Resend tags, their values encoded with
``tag_value`` (only ``[A-Za-z0-9_-]`` allowed); they come back as the
``data.tags`` object and are decoded with ``untag_value``. ``svix-id`` (the same
on every retry) is the event id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from stampcli.inbound.base import Headers, WebhookParser, json_body, obj, require, text_field
from stampcli.inbound.errors import EventRejected, WebhookPayloadError
from stampcli.inbound.model import (
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    DeliveryEvent,
    EventType,
    looks_auto_reply,
    make_event,
    timestamp,
)
from stampcli.inbound.verify import SvixSignature
from stampcli.providers.http import untag_value

EVENT_TYPES = {
    "email.scheduled": EventType.QUEUED,
    "email.sent": EventType.SENT,
    "email.delivered": EventType.DELIVERED,
    "email.delivery_delayed": EventType.DEFERRED,
    "email.bounced": EventType.BOUNCED,
    "email.suppressed": EventType.DROPPED,
    "email.failed": EventType.FAILED,
    "email.complained": EventType.COMPLAINED,
    "email.opened": EventType.OPENED,
    "email.clicked": EventType.CLICKED,
}
IGNORED_PREFIXES = ("contact.", "domain.", "email.received")


def untag(value: Any) -> str | None:
    """A tag value as stamp sent it (None when it is not one stamp encoded)."""
    if not isinstance(value, str):
        return None
    try:
        return untag_value(value)
    except (ValueError, UnicodeDecodeError):
        return None


class ResendParser(WebhookParser):
    provider = "resend"
    env = ("RESEND_WEBHOOK_SECRET",)

    def __init__(self, secret: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signature = SvixSignature(secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        [secret] = require(env, cls.env)
        return cls(secret, **options)

    def verify(self, headers: Headers, body: bytes) -> None:
        self.signature.check(headers, body)

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        data = json_body(self.provider, headers, body)
        if not isinstance(data, dict):
            raise WebhookPayloadError("resend webhook: the body is not a JSON object")
        return [data]

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        name = item.get("type")
        if isinstance(name, str) and name.startswith(IGNORED_PREFIXES):
            return []
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        data = obj(item.get("data"))
        bounce = obj(data.get("bounce"))
        reason = text_field(bounce, "message") or text_field(obj(data.get("failed")), "reason")
        bounce_kind = None
        if kind is EventType.BOUNCED:
            if "suppress" in (reason or "").lower() or "Suppress" in str(bounce.get("subType")):
                kind = EventType.DROPPED  # Resend's suppression list, not a new bounce
            elif bounce.get("type") in (None, "Permanent"):
                bounce_kind = BounceKind.HARD  # Resend documents email.bounced as permanent
            else:
                bounce_kind = BounceKind.SOFT
        elif kind is EventType.DEFERRED:
            bounce_kind = BounceKind.SOFT
        tags = obj(data.get("tags"))
        click = obj(data.get("click"))
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=data.get("to"),
                occurred_at=timestamp(item.get("created_at"), "created_at"),
                event_id=headers.get("svix-id"),
                campaign=untag(tags.get(TAG_CAMPAIGN)),
                recipient_key=untag(tags.get(TAG_RECIPIENT)),
                message_id=data.get("email_id"),
                bounce_kind=bounce_kind,
                reason=reason,
                url_=click.get("link"),
                user_agent=click.get("userAgent") or obj(data.get("open")).get("userAgent"),
                auto_reply=kind is EventType.BOUNCED and looks_auto_reply(reason),
            )
        ]
