"""Amazon SES events through an SNS topic's HTTPS subscription.

The body is an SNS message (JSON, sent as ``text/plain``) whose ``Message`` is
the SES event as a JSON string, in either of SES's formats: event publishing
(configuration sets, ``eventType``) or identity notifications
(``notificationType``). The SNS signature is checked against the signing
certificate and the topic against ``SES_SNS_TOPIC_ARNS``. A
``SubscriptionConfirmation`` yields its checked ``subscribe_url`` for the
server to confirm. One SES event can name several recipients: one
``DeliveryEvent`` each.

stamp's adapter sends the tags as SES ``EmailTags`` encoded with ``tag_value``;
they come back in ``mail.tags`` (event publishing only) as lists of values.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Self

from cryptography import x509

from stampcli.inbound.base import (
    Headers,
    WebhookParser,
    json_body,
    load_json,
    obj,
    require,
    text_field,
)
from stampcli.inbound.errors import EventRejected, WebhookAuthError, WebhookPayloadError
from stampcli.inbound.model import (
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    DeliveryEvent,
    EventType,
    ParseResult,
    looks_auto_reply,
    make_event,
    timestamp,
)
from stampcli.inbound.verify import SNSVerifier
from stampcli.providers.http import untag_value

EVENT_TYPES = {
    "Send": EventType.SENT,
    "Reject": EventType.REJECTED,
    "Bounce": EventType.BOUNCED,
    "Complaint": EventType.COMPLAINED,
    "Delivery": EventType.DELIVERED,
    "DeliveryDelay": EventType.DEFERRED,
    "Open": EventType.OPENED,
    "Click": EventType.CLICKED,
    "Rendering Failure": EventType.FAILED,
    "Subscription": EventType.UNSUBSCRIBED,
}
SUPPRESSED = frozenset({"Suppressed", "OnAccountSuppressionList"})
# The mailbox simulator's out-of-office address: SES delivers, then the simulator auto-replies.
OOTO_SIMULATOR = "ooto@simulator.amazonses.com"
SES_VALIDATED = "Successfully validated SNS topic for Amazon SES event publishing."
SNS_TYPES = ("text/plain", "application/json")


def _tag(tags: Mapping[str, Any], name: str) -> str | None:
    values = tags.get(name)
    value = values[0] if isinstance(values, list) and values else values
    if not isinstance(value, str):
        return None
    try:
        return untag_value(value)
    except (ValueError, UnicodeDecodeError):
        return None


class SESParser(WebhookParser):
    provider = "ses"
    env = ("SES_SNS_TOPIC_ARNS",)

    def __init__(
        self,
        topics: Collection[str],
        fetch_certificate: Callable[[str], bytes],
        *,
        trusted_certificates: Collection[x509.Certificate] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sns = SNSVerifier(
            topics, fetch_certificate, trusted_certificates=trusted_certificates, clock=self.clock
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        """``options`` must give ``fetch_certificate``; the topics are comma-separated ARNs."""
        [arns] = require(env, cls.env)
        topics = [a.strip() for a in arns.replace("\n", ",").split(",") if a.strip()]
        fetch = options.pop("fetch_certificate", None)
        if fetch is None:
            raise TypeError("SESParser.from_env needs fetch_certificate=")
        return cls(topics, fetch, **options)

    def envelope(self, headers: Headers, body: bytes) -> Mapping[str, Any]:
        data = json_body(self.provider, headers, body, SNS_TYPES)
        if not isinstance(data, dict) or not isinstance(data.get("Type"), str):
            raise WebhookPayloadError("ses webhook: the body is not an SNS message")
        return data

    def verify(self, headers: Headers, body: bytes) -> None:
        self.sns.check(headers, self.envelope(headers, body))

    def parse(self, headers: Headers, body: bytes) -> ParseResult:
        envelope = self.envelope(headers, body)
        kind = envelope["Type"]
        topic = envelope.get("TopicArn") if isinstance(envelope.get("TopicArn"), str) else None
        if kind == "SubscriptionConfirmation":
            try:
                url = self.sns.subscribe_url(envelope)
            except WebhookAuthError as exc:
                raise WebhookPayloadError(str(exc)) from None
            return ParseResult(ignored=1, subscribe_url=url, topic_arn=topic)
        if kind == "UnsubscribeConfirmation":
            return ParseResult(ignored=1, topic_arn=topic)
        if kind != "Notification":
            raise WebhookPayloadError(f"ses webhook: unknown SNS message Type {kind[:40]!r}")
        result = super().parse(headers, body)
        return ParseResult(result.events, result.rejected, result.ignored, topic_arn=topic)

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        envelope = self.envelope(headers, body)
        message = envelope.get("Message")
        if not isinstance(message, str):
            raise WebhookPayloadError("ses webhook: the SNS Message is not text")
        if message.strip() == SES_VALIDATED:
            return [{}]  # SES's note after subscribing: nothing to record
        event = load_json(self.provider, message, "the SNS Message")
        if isinstance(event, dict):
            event = {**event, "_sns_message_id": envelope.get("MessageId")}
        return [event]

    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        if not item:
            return []
        sns_id = item.get("_sns_message_id")
        item = {k: v for k, v in item.items() if k != "_sns_message_id"}
        name = item.get("eventType", item.get("notificationType"))
        if name == "AmazonSnsSubscriptionSucceeded":
            return []
        kind = EVENT_TYPES.get(name) if isinstance(name, str) else None
        if kind is None or not isinstance(name, str):
            raise EventRejected(f"unknown event type {str(name)[:40]!r}")
        mail = obj(item.get("mail"))
        detail = obj(item.get(name[0].lower() + name[1:].replace(" ", "")))  # "bounce", ...
        tags = obj(mail.get("tags"))
        common = obj(mail.get("commonHeaders"))
        bounce_kind = None
        reason: str | None = None
        when_field: Any = detail.get("timestamp") or mail.get("timestamp")
        # (recipient, per-recipient reason) pairs
        recipients: list[tuple[Any, str | None]]
        if kind is EventType.BOUNCED:
            bounce_type = detail.get("bounceType")
            sub_type = str(detail.get("bounceSubType") or "")
            if sub_type in SUPPRESSED:
                kind = EventType.DROPPED
            elif bounce_type == "Permanent":
                bounce_kind = BounceKind.HARD
            else:
                bounce_kind = BounceKind.SOFT  # Transient or Undetermined
            recipients = [
                (r.get("emailAddress"), text_field(r, "diagnosticCode"))
                for r in map(obj, detail.get("bouncedRecipients") or [])
            ]
            reason = f"{bounce_type} {sub_type}".strip()
        elif kind is EventType.COMPLAINED:
            if detail.get("complaintSubType") in SUPPRESSED:
                kind = EventType.DROPPED
            elif detail.get("complaintFeedbackType") == "not-spam":
                return []
            recipients = [
                (r.get("emailAddress"), None)
                for r in map(obj, detail.get("complainedRecipients") or [])
            ]
            reason = text_field(detail, "complaintFeedbackType")
        elif kind is EventType.DELIVERED:
            recipients = [(r, None) for r in detail.get("recipients") or []]
            reason = text_field(detail, "smtpResponse")
        elif kind is EventType.DEFERRED:
            bounce_kind = BounceKind.SOFT
            recipients = [
                (r.get("emailAddress"), text_field(r, "diagnosticCode"))
                for r in map(obj, detail.get("delayedRecipients") or [])
            ]
            reason = text_field(detail, "delayType")
        elif kind is EventType.UNSUBSCRIBED:
            prefs = obj(detail.get("newTopicPreferences"))
            if prefs.get("unsubscribeAll") is False:
                kind = EventType.SUBSCRIBED
            recipients = [(r, None) for r in mail.get("destination") or []]
        else:
            # Send, Reject, Open, Click, Rendering Failure: about the whole message
            recipients = [(r, None) for r in mail.get("destination") or []]
            reason = text_field(detail, "reason") or text_field(detail, "errorMessage")
        if not recipients:
            raise EventRejected(f"{name} event names no recipient")
        if len(recipients) > 1000:
            raise EventRejected(f"{name} event names {len(recipients)} recipients")
        events = []
        for address_, own_reason in recipients:
            text = own_reason or reason
            is_ooto = isinstance(address_, str) and address_.lower() == OOTO_SIMULATOR
            events.append(
                make_event(
                    self.provider,
                    kind,
                    item,
                    recipient=address_,
                    occurred_at=timestamp(when_field),
                    event_id=(
                        f"{sns_id}/{str(address_).lower()}"
                        if isinstance(sns_id, str) and len(recipients) > 1
                        else sns_id
                    ),
                    campaign=_tag(tags, TAG_CAMPAIGN),
                    recipient_key=_tag(tags, TAG_RECIPIENT),
                    message_id=mail.get("messageId"),
                    message_id_header=common.get("messageId"),
                    bounce_kind=bounce_kind,
                    reason=text,
                    url_=detail.get("link"),
                    user_agent=detail.get("userAgent"),
                    auto_reply=is_ooto
                    or (kind in (EventType.BOUNCED, EventType.DEFERRED) and looks_auto_reply(text)),
                )
            )
        return events
