"""Brevo transactional webhooks: one JSON object per request (or an array when batched).

Brevo does not sign: HTTP Basic credentials in the webhook URL. stamp's
adapter sends the tags as JSON in the ``X-Mailin-custom`` header (echoed under
that name) and the campaign as a tag. ``message-id`` is the RFC Message-ID the
send answer returned. Events have no id: the event's content hash is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stampcli.inbound.base import BasicAuthParser, Headers, as_list, json_body, text_field
from stampcli.inbound.errors import EventRejected
from stampcli.inbound.mailjet import payload_tags
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

EVENT_TYPES = {
    "request": EventType.QUEUED,
    "delivered": EventType.DELIVERED,
    "hard_bounce": EventType.BOUNCED,
    "soft_bounce": EventType.BOUNCED,
    "deferred": EventType.DEFERRED,
    "blocked": EventType.DROPPED,
    "invalid_email": EventType.REJECTED,
    "invalid": EventType.REJECTED,
    "error": EventType.FAILED,
    "spam": EventType.COMPLAINED,
    "complaint": EventType.COMPLAINED,
    "opened": EventType.OPENED,
    "unique_opened": EventType.OPENED,
    "proxy_open": EventType.OPENED,
    "unique_proxy_open": EventType.OPENED,
    "click": EventType.CLICKED,
    "unsubscribe": EventType.UNSUBSCRIBED,
    "unsubscribed": EventType.UNSUBSCRIBED,
}


class BrevoParser(BasicAuthParser):
    provider = "brevo"

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        return as_list(self.provider, json_body(self.provider, headers, body), single_ok=True)

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        name = item.get("event")
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        bounce_kind = None
        if name == "hard_bounce":
            bounce_kind = BounceKind.HARD
        elif name in ("soft_bounce", "deferred"):
            bounce_kind = BounceKind.SOFT
        # ts_epoch (UTC milliseconds) is the reliable one; ts_event and ts are seconds
        if item.get("ts_epoch") is not None:
            when = timestamp(item.get("ts_epoch"), "ts_epoch", millis=True)
        else:
            when = timestamp(item.get("ts_event", item.get("ts")), "ts_event")
        tags = payload_tags(item.get("X-Mailin-custom"))
        first_tag = item.get("tags")
        first_tag = first_tag[0] if isinstance(first_tag, list) and first_tag else item.get("tag")
        reason = text_field(item, "reason")
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=item.get("email"),
                occurred_at=when,
                campaign=tags.get(TAG_CAMPAIGN) or first_tag,
                recipient_key=tags.get(TAG_RECIPIENT),
                message_id=item.get("message-id"),
                message_id_header=item.get("message-id"),
                bounce_kind=bounce_kind,
                reason=reason,
                url_=item.get("link"),
                user_agent=item.get("user_agent"),
                auto_reply=kind is EventType.BOUNCED and looks_auto_reply(reason),
            )
        ]
