"""Postmark webhooks: one JSON object per request, ``RecordType`` says which event.

Postmark does not sign: HTTP Basic credentials in the webhook URL. stamp's
adapter sends the tags as ``Metadata`` (values cut to 80 characters) and the
campaign as ``Tag``. The ``X-PM-Webhook-Trace-Id`` header is the event id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stampcli.inbound.base import BasicAuthParser, Headers, json_body, obj, text_field
from stampcli.inbound.errors import EventRejected, WebhookPayloadError
from stampcli.inbound.model import (
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    DeliveryEvent,
    EventType,
    make_event,
    timestamp,
)

# Bounce ``Type`` -> (event type, bounce kind); types not listed are treated as soft bounces.
BOUNCE_TYPES: dict[str, tuple[EventType, BounceKind | None]] = {
    "HardBounce": (EventType.BOUNCED, BounceKind.HARD),
    "SoftBounce": (EventType.BOUNCED, BounceKind.SOFT),
    "Transient": (EventType.DEFERRED, BounceKind.SOFT),
    "DnsError": (EventType.DEFERRED, BounceKind.SOFT),
    "OpenRelayTest": (EventType.DEFERRED, BounceKind.SOFT),
    "Blocked": (EventType.REJECTED, None),
    "DMARCPolicy": (EventType.REJECTED, None),
    "ManuallyDeactivated": (EventType.DROPPED, None),
    "BadEmailAddress": (EventType.REJECTED, None),
    "Unconfirmed": (EventType.REJECTED, None),
    "AutoResponder": (EventType.AUTO_REPLIED, None),
    "AddressChange": (EventType.AUTO_REPLIED, None),
    "ChallengeVerification": (EventType.AUTO_REPLIED, None),
    "VirusNotification": (EventType.BOUNCED, BounceKind.SOFT),
    "SMTPApiError": (EventType.FAILED, None),
    "TemplateRenderingFailed": (EventType.FAILED, None),
    "SpamNotification": (EventType.COMPLAINED, None),
    "SpamComplaint": (EventType.COMPLAINED, None),
}
RECORD_TYPES = {
    "Delivery": EventType.DELIVERED,
    "Bounce": EventType.BOUNCED,
    "SpamComplaint": EventType.COMPLAINED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
    "SubscriptionChange": EventType.UNSUBSCRIBED,
}
_TIME_FIELDS = ("DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt")


class PostmarkParser(BasicAuthParser):
    provider = "postmark"

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        data = json_body(self.provider, headers, body)
        if not isinstance(data, dict):
            raise WebhookPayloadError("postmark webhook: the body is not a JSON object")
        return [data]

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        record = item.get("RecordType")
        kind = RECORD_TYPES.get(record) if isinstance(record, str) else None
        if kind is None:
            raise EventRejected(f"unknown RecordType {str(record)[:40]!r}")
        bounce_kind = None
        if record in ("Bounce", "SpamComplaint"):
            bounce_type = str(item.get("Type") or "")
            kind, bounce_kind = BOUNCE_TYPES.get(bounce_type, (EventType.BOUNCED, BounceKind.SOFT))
        elif record == "SubscriptionChange" and item.get("SuppressSending") is False:
            kind = EventType.SUBSCRIBED
        when = next((item[f] for f in _TIME_FIELDS if item.get(f)), None)
        metadata = obj(item.get("Metadata"))
        trace = headers.get("x-pm-webhook-trace-id")
        event_id = trace or (
            f"bounce-{item['ID']}" if record == "Bounce" and item.get("ID") else None
        )
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=item.get("Recipient") or item.get("Email"),
                occurred_at=timestamp(when, "event time"),
                event_id=event_id,
                campaign=metadata.get(TAG_CAMPAIGN) or item.get("Tag"),
                recipient_key=metadata.get(TAG_RECIPIENT),
                message_id=item.get("MessageID"),
                bounce_kind=bounce_kind,
                reason=text_field(item, "Description")
                or text_field(item, "Details")
                or text_field(item, "SuppressionReason"),
                url_=item.get("OriginalLink"),
                user_agent=item.get("UserAgent"),
            )
        ]
