"""Mailgun webhooks (the JSON ones): ``{"signature": {...}, "event-data": {...}}``.

One event per request, signed in the body (HMAC-SHA256 of timestamp + token);
the token is the event id. stamp's adapter sends the tags as ``v:campaign`` and
``v:recipient``, returned in ``event-data.user-variables``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from stampcli.inbound.base import (
    Headers,
    WebhookParser,
    json_body,
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
from stampcli.inbound.verify import MailgunSignature

EVENT_TYPES = {
    "accepted": EventType.QUEUED,
    "rejected": EventType.REJECTED,
    "delivered": EventType.DELIVERED,
    "failed": EventType.BOUNCED,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "unsubscribed": EventType.UNSUBSCRIBED,
    "complained": EventType.COMPLAINED,
}


class MailgunParser(WebhookParser):
    provider = "mailgun"
    env = ("MAILGUN_WEBHOOK_SIGNING_KEY",)

    def __init__(self, signing_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signature = MailgunSignature(signing_key, clock=self.clock)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        [key] = require(env, cls.env)
        return cls(key, **options)

    def _body(self, headers: Headers, body: bytes) -> Mapping[str, Any]:
        data = json_body(self.provider, headers, body)
        if not isinstance(data, dict) or not isinstance(data.get("event-data"), dict):
            raise WebhookPayloadError(
                "mailgun webhook: the body is not {signature, event-data} (legacy form "
                "webhooks are not supported: configure Mailgun's JSON webhooks)"
            )
        return data

    def verify(self, headers: Headers, body: bytes) -> None:
        self.signature.check(self._body(headers, body).get("signature"))

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        data = self._body(headers, body)
        item = dict(data["event-data"])
        # the token is the event id (event-data.id is unique only within a day)
        item["_token"] = obj(data.get("signature")).get("token")
        return [item]

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        name = item.get("event")
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        status = obj(item.get("delivery-status"))
        reason_code = text_field(item, "reason") or ""
        reason = (
            text_field(status, "description")
            or text_field(status, "message")
            or text_field(obj(item.get("reject")), "reason")
            or reason_code
        )
        bounce_kind = None
        if kind is EventType.BOUNCED:
            if reason_code.startswith("suppress-"):
                kind = EventType.DROPPED  # suppress-bounce/-unsubscribe/-complaint: never sent
            elif item.get("severity") == "temporary":
                kind, bounce_kind = EventType.DEFERRED, BounceKind.SOFT
            else:
                bounce_kind = BounceKind.HARD
        variables = obj(item.get("user-variables"))
        message_id = obj(obj(item.get("message")).get("headers")).get("message-id")
        return [
            make_event(
                self.provider,
                kind,
                {k: v for k, v in item.items() if k != "_token"},
                recipient=item.get("recipient"),
                occurred_at=timestamp(item.get("timestamp")),
                event_id=item.get("_token"),
                campaign=variables.get(TAG_CAMPAIGN),
                recipient_key=variables.get(TAG_RECIPIENT),
                message_id=message_id,
                message_id_header=message_id,
                bounce_kind=bounce_kind,
                reason=reason,
                url_=item.get("url"),
                user_agent=obj(item.get("client-info")).get("user-agent"),
                auto_reply=kind in (EventType.BOUNCED, EventType.DEFERRED)
                and looks_auto_reply(reason),
            )
        ]
