"""Mailjet event callbacks: one JSON object, or an array with "group events" (Version 2).

Mailjet does not sign: HTTP Basic credentials in the callback URL. stamp's
adapter sends the recipient's ledger key as ``CustomID`` and the tags as JSON
in ``EventPayload`` (returned as ``Payload``). Events have no id: the event's
content hash is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from stampcli.inbound.base import BasicAuthParser, Headers, as_list, json_body, obj, text_field
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

EVENT_TYPES = {
    "sent": EventType.DELIVERED,  # Mailjet's "sent": the receiving server accepted it
    "bounce": EventType.BOUNCED,
    "blocked": EventType.REJECTED,
    "spam": EventType.COMPLAINED,
    "unsub": EventType.UNSUBSCRIBED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
}


def payload_tags(value: Any) -> Mapping[str, Any]:
    """The JSON object stamp put in EventPayload, or {} when it is something else."""
    if not isinstance(value, str) or not value.startswith("{") or len(value) > 10_000:
        return {}
    try:
        return obj(orjson.loads(value))
    except orjson.JSONDecodeError:
        return {}


class MailjetParser(BasicAuthParser):
    provider = "mailjet"

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        return as_list(self.provider, json_body(self.provider, headers, body), single_ok=True)

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        name = item.get("event")
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        error = text_field(item, "error") or ""
        bounce_kind = None
        if kind is EventType.BOUNCED:
            if item.get("hard_bounce") is True:
                bounce_kind = BounceKind.HARD
            elif error == "greylisted":  # temporary: Mailjet tries again
                kind, bounce_kind = EventType.DEFERRED, BounceKind.SOFT
            else:
                bounce_kind = BounceKind.SOFT
        elif kind is EventType.REJECTED and error == "preblocked":
            kind = EventType.DROPPED  # on Mailjet's own block list
        tags = payload_tags(item.get("Payload"))
        reason = " ".join(filter(None, (text_field(item, "error_related_to"), error))) or (
            text_field(item, "smtp_reply") or text_field(item, "source")
        )
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=item.get("email"),
                occurred_at=timestamp(item.get("time")),
                campaign=tags.get(TAG_CAMPAIGN) or item.get("customcampaign"),
                recipient_key=item.get("CustomID") or tags.get(TAG_RECIPIENT),
                message_id=item.get("MessageID"),
                bounce_kind=bounce_kind,
                reason=reason,
                url_=item.get("url"),
                user_agent=item.get("agent"),
                auto_reply=kind is EventType.BOUNCED and looks_auto_reply(reason),
            )
        ]
