"""SparkPost webhooks: a JSON array of ``{"msys": {"<class>": {...event...}}}``.

SparkPost does not sign: HTTP Basic credentials (``auth_type: basic``).
stamp's adapter sends the tags as transmission ``metadata`` (echoed in
``rcpt_meta``) and the campaign as ``campaign_id``. ``bounce_class`` tells hard
from soft; classes 60 (auto-reply) and 100 (challenge-response) are auto-replies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stampcli.inbound.base import BasicAuthParser, Headers, as_list, json_body, obj, text_field
from stampcli.inbound.errors import EventRejected
from stampcli.inbound.model import (
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    DeliveryEvent,
    EventType,
    make_event,
    timestamp,
)

EVENT_TYPES = {
    "injection": EventType.QUEUED,
    "delivery": EventType.DELIVERED,
    "delay": EventType.DEFERRED,
    "bounce": EventType.BOUNCED,
    "out_of_band": EventType.BOUNCED,
    "policy_rejection": EventType.DROPPED,
    "generation_failure": EventType.FAILED,
    "generation_rejection": EventType.REJECTED,
    "spam_complaint": EventType.COMPLAINED,
    "open": EventType.OPENED,
    "amp_open": EventType.OPENED,
    "initial_open": EventType.OPENED,
    "amp_initial_open": EventType.OPENED,
    "click": EventType.CLICKED,
    "amp_click": EventType.CLICKED,
    "list_unsubscribe": EventType.UNSUBSCRIBED,
    "link_unsubscribe": EventType.UNSUBSCRIBED,
}
EVENT_CLASSES = ("message_event", "track_event", "gen_event", "unsubscribe_event")
HARD_CLASSES = frozenset({10, 30})
ADMIN_CLASSES = frozenset({25, 26})  # SparkPost's own suppression / admin failure: not sent
AUTO_REPLY_CLASSES = frozenset({60, 100})


def bounce(kind: EventType, bounce_class: Any) -> tuple[EventType, BounceKind | None]:
    """The event type and bounce kind a bounce_class gives."""
    try:
        number = int(bounce_class)
    except (TypeError, ValueError):
        return kind, BounceKind.SOFT  # undetermined: usually temporary
    if number in HARD_CLASSES:
        return kind, BounceKind.HARD
    if number in ADMIN_CLASSES:
        return EventType.DROPPED, None
    if number in AUTO_REPLY_CLASSES:
        return EventType.AUTO_REPLIED, None
    if number == 90:
        return EventType.UNSUBSCRIBED, None
    if number == 80:
        return EventType.SUBSCRIBED, None
    return kind, BounceKind.SOFT


class SparkPostParser(BasicAuthParser):
    provider = "sparkpost"

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        return as_list(self.provider, json_body(self.provider, headers, body), single_ok=False)

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        msys = item.get("msys")
        if not isinstance(msys, Mapping):
            raise EventRejected("no msys object")
        if not msys:
            return []  # the empty ping SparkPost sends when a webhook is created
        if "relay_message" in msys:
            return []  # inbound mail, not a delivery event
        event = next((obj(msys[c]) for c in EVENT_CLASSES if c in msys), None)
        if not event:
            raise EventRejected(f"unknown event class {next(iter(msys))[:40]!r}")
        name = event.get("type")
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        bounce_kind = None
        if kind is EventType.BOUNCED:
            kind, bounce_kind = bounce(kind, event.get("bounce_class"))
        elif kind is EventType.DEFERRED:
            bounce_kind = BounceKind.SOFT
        meta = obj(event.get("rcpt_meta"))
        return [
            make_event(
                self.provider,
                kind,
                event,
                recipient=event.get("raw_rcpt_to") or event.get("rcpt_to"),
                occurred_at=timestamp(event.get("timestamp")),
                event_id=event.get("event_id"),
                campaign=meta.get(TAG_CAMPAIGN) or event.get("campaign_id"),
                recipient_key=meta.get(TAG_RECIPIENT),
                message_id=event.get("transmission_id"),
                bounce_kind=bounce_kind,
                reason=text_field(event, "raw_reason") or text_field(event, "reason"),
                url_=event.get("target_link_url"),
                user_agent=event.get("user_agent"),
            )
        ]
