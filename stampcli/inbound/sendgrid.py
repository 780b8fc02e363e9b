"""SendGrid Event Webhook: a JSON array of events, signed with ECDSA P-256.

stamp's adapter sends ``Message.tags`` as ``custom_args``, which come back as
top-level keys of every event (``campaign``, ``recipient``). ``sg_message_id``
is the send answer's ``X-Message-Id`` plus a ``.suffix``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from stampcli.inbound.base import Headers, WebhookParser, as_list, json_body, require, text_field
from stampcli.inbound.errors import EventRejected
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
from stampcli.inbound.verify import SendGridSignature

EVENT_TYPES = {
    "processed": EventType.QUEUED,
    "deferred": EventType.DEFERRED,
    "delivered": EventType.DELIVERED,
    "bounce": EventType.BOUNCED,
    "blocked": EventType.BOUNCED,
    "dropped": EventType.DROPPED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
    "spamreport": EventType.COMPLAINED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "group_unsubscribe": EventType.UNSUBSCRIBED,
    "group_resubscribe": EventType.SUBSCRIBED,
}
# A dropped event for one of these reasons is SendGrid's suppression list; others are refusals.
_SUPPRESSED = ("bounced address", "unsubscribed address", "spam reporting address")


class SendGridParser(WebhookParser):
    provider = "sendgrid"
    env = ("SENDGRID_WEBHOOK_PUBLIC_KEY",)

    def __init__(self, public_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signature = SendGridSignature(public_key, clock=self.clock)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        [key] = require(env, cls.env)
        return cls(key, **options)

    def verify(self, headers: Headers, body: bytes) -> None:
        self.signature.check(headers, body)

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        return as_list(self.provider, json_body(self.provider, headers, body), single_ok=False)

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        name = item.get("event")
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        reason = text_field(item, "reason") or text_field(item, "response")
        bounce_kind = None
        if kind is EventType.BOUNCED:
            # type "bounce": permanent; "blocked": a block, usually temporary
            blocked = name == "blocked" or item.get("type") == "blocked"
            bounce_kind = BounceKind.SOFT if blocked else BounceKind.HARD
        elif kind is EventType.DEFERRED:
            bounce_kind = BounceKind.SOFT
        elif kind is EventType.DROPPED and not (reason or "").lower().startswith(_SUPPRESSED):
            kind = EventType.REJECTED
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=item.get("email"),
                occurred_at=timestamp(item.get("timestamp")),
                event_id=item.get("sg_event_id"),
                campaign=item.get(TAG_CAMPAIGN),
                recipient_key=item.get(TAG_RECIPIENT),
                message_id=item.get("sg_message_id"),
                message_id_header=item.get("smtp-id"),
                bounce_kind=bounce_kind,
                reason=reason,
                url_=item.get("url"),
                user_agent=item.get("useragent"),
                auto_reply=kind is EventType.BOUNCED and looks_auto_reply(reason),
            )
        ]
