"""Mandrill (Mailchimp Transactional) webhooks: a form field ``mandrill_events`` holding a
JSON array of up to 1,000 events, signed with ``X-Mandrill-Signature``.

The signature covers the URL configured in Mandrill, so the parser needs the
public URL the server is reached at (``STAMP_PUBLIC_URL`` + ``/webhooks/mandrill``),
not the one a proxy forwards to. stamp's adapter sends the tags as
``X-MC-Metadata`` (echoed in ``msg.metadata``) and the campaign as ``X-MC-Tags``.
Events have no id: the event's content hash is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from stampcli.inbound.base import (
    Headers,
    WebhookParser,
    as_list,
    form_body,
    load_json,
    obj,
    require,
    text_field,
)
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
from stampcli.inbound.verify import check_mandrill

ROUTE = "/webhooks/mandrill"
EVENT_TYPES = {
    "send": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "deferral": EventType.DEFERRED,
    "hard_bounce": EventType.BOUNCED,
    "soft_bounce": EventType.BOUNCED,
    "reject": EventType.DROPPED,  # Mandrill's rejection (deny) list
    "spam": EventType.COMPLAINED,
    "unsub": EventType.UNSUBSCRIBED,
    "open": EventType.OPENED,
    "click": EventType.CLICKED,
}


class MandrillParser(WebhookParser):
    provider = "mandrill"
    env = ("MANDRILL_WEBHOOK_KEY", "STAMP_PUBLIC_URL")

    def __init__(self, key: str, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._key, self.url = key, url

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        key, public = require(env, cls.env)
        return cls(key, public.rstrip("/") + ROUTE, **options)

    def verify(self, headers: Headers, body: bytes) -> None:
        check_mandrill(self._key, self.url, headers, form_body(self.provider, headers, body))

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        fields = dict(form_body(self.provider, headers, body))
        if "mandrill_events" not in fields:
            raise WebhookPayloadError("mandrill webhook: the form has no mandrill_events field")
        data = load_json(self.provider, fields["mandrill_events"], "mandrill_events")
        return as_list(self.provider, data, single_ok=False)

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        name = item.get("event")
        if name is None and item.get("type") in ("whitelist", "blacklist", "allowlist", "denylist"):
            return []  # a sync event (rejection list changed), not about a message
        if name == "inbound":
            return []
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        msg = obj(item.get("msg"))
        bounce_kind = None
        if name == "hard_bounce":
            bounce_kind = BounceKind.HARD
        elif name in ("soft_bounce", "deferral"):
            bounce_kind = BounceKind.SOFT
        reason = text_field(msg, "bounce_description") or text_field(msg, "diag")
        metadata = obj(msg.get("metadata"))
        tags = msg.get("tags")
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=msg.get("email"),
                occurred_at=timestamp(item.get("ts"), "ts"),
                campaign=metadata.get(TAG_CAMPAIGN)
                or (tags[0] if isinstance(tags, list) and tags else None),
                recipient_key=metadata.get(TAG_RECIPIENT),
                message_id=msg.get("_id") or item.get("_id"),
                bounce_kind=bounce_kind,
                reason=reason,
                url_=item.get("url"),
                user_agent=item.get("user_agent"),
                auto_reply=kind in (EventType.BOUNCED, EventType.DEFERRED)
                and looks_auto_reply(reason, msg.get("diag")),
            )
        ]
