"""Resend: ``resend://KEY``.

Up to 100 complete messages go in one ``POST /emails/batch`` in permissive
validation mode (``x-batch-validation: permissive``): an invalid entry comes
back in ``errors`` by index while the others are sent. The batch endpoint
drops attachments, so a batch with any attachment goes message by message to
``POST /emails`` instead.

Every call carries an ``Idempotency-Key`` derived from the campaign and the
recipients of the call (sha256), so repeating the same call within Resend's
24 hours returns the first answer instead of mailing again. The engine may
regroup an UNKNOWN message into a different batch on retry, which gives a
different key, so the adapter does not claim ``idempotent``; with
``batch_size: 1`` the key is the message's own and a retry is safe.

Resend has no per-message tracking switch (open and click tracking are
settings of the sending domain), so ``tracking:`` is only warned about.

Errors ``{statusCode, name, message}``: 429 ``rate_limit_exceeded`` is
throttling (``retry-after``), 429 ``daily_quota_exceeded`` is the provider
refusing us until tomorrow; 422/400 ``validation_error`` on ``to`` is the
recipient's.

Webhook ``POST /webhooks/resend`` (``ResendParser``). Resend webhooks: one ``{"type",
"created_at", "data"}`` object per request, signed by Svix.

stamp's adapter sends the tags as Resend tags, their values encoded with
``tag_value`` (only ``[A-Za-z0-9_-]`` allowed); they come back as the
``data.tags`` object and are decoded with ``untag_value``. ``svix-id`` (the same
on every retry) is the event id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import httpx

from stampcli.config import ProviderConfig, ProviderURL
from stampcli.events.model import (
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    DeliveryEvent,
    EventRejected,
    EventType,
    Reason,
    looks_auto_reply,
    make_event,
    timestamp,
)
from stampcli.providers.base import NO_TRACKING_SWITCH, CheckStep, Outcome, Result
from stampcli.providers.http import (
    BadAnswer,
    Call,
    CheckProblem,
    HTTPAdapter,
    b64,
    body_json,
    has_html,
    json_html,
    json_text,
    mailbox,
    short,
    status_result,
    tag_value,
    untag_value,
)
from stampcli.providers.webhook import (
    Headers,
    SvixSignature,
    WebhookParser,
    WebhookPayloadError,
    json_body,
    obj,
    require,
    text_field,
)
from stampcli.render.message import Message


def idempotency_key(batch: Sequence[Message]) -> str:
    """The same key for the same campaign and recipients (Resend allows 256 characters)."""
    digest = hashlib.sha256()
    for message in batch:
        digest.update(f"{message.campaign}\0{message.key}\n".encode())
    return f"stamp-{digest.hexdigest()}"


class ResendAdapter(HTTPAdapter):
    scheme = "resend"
    needs_raw = False
    tracking_switch = False  # open/click tracking is a setting of the sending domain

    @classmethod
    def tracking_note(cls, config: ProviderConfig) -> str:
        return f"{NO_TRACKING_SWITCH}; the domain's settings apply"

    max_batch = 100
    base_url: ClassVar[str] = "https://api.resend.com"
    check_name = "GET /domains"

    @classmethod
    def headers_for(cls, url: ProviderURL) -> dict[str, str]:
        return {"Authorization": f"Bearer {url.user or ''}", "Accept": "application/json"}

    def entry(self, message: Message, *, attachments: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "from": mailbox(message.from_name, message.sender),
            "to": [mailbox(message.to_name, message.recipient)],
            **({"cc": [mailbox(n, a) for n, a in message.cc_addresses]} if message.cc else {}),
            **({"bcc": [mailbox(n, a) for n, a in message.bcc_addresses]} if message.bcc else {}),
            "subject": message.subject,
            "html": json_html(message),
            "text": json_text(message),
            # Tag values allow only [A-Za-z0-9_-]: encoded reversibly (tag_value).
            "tags": [{"name": k, "value": tag_value(v)} for k, v in message.tags.items()],
        }
        if not has_html(message):  # a text template's message: text only
            del entry["html"]
        if message.headers:
            entry["headers"] = dict(message.headers)
        if message.reply_to:
            entry["reply_to"] = [message.reply_to]
        if attachments and message.attachments:
            entry["attachments"] = [
                {
                    "filename": a.filename,
                    "content": b64(a.data),
                    "content_type": a.content_type,
                    **({"content_id": a.content_id} if a.content_id else {}),
                }
                for a in message.attachments
            ]
        return entry

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        if any(m.attachments for m in messages):
            results: list[Result] = []
            for message in messages:  # /emails/batch would drop the attachments
                results.extend(await self._send_batch([message]))
            return results
        return await super().send(messages)

    def build_send(self, batch: Sequence[Message]) -> Call:
        headers = {"Idempotency-Key": idempotency_key(batch)}
        if len(batch) == 1 and batch[0].attachments:
            return Call(
                "POST", "/emails", json=self.entry(batch[0], attachments=True), headers=headers
            )
        headers["x-batch-validation"] = "permissive"
        entries = [self.entry(m, attachments=False) for m in batch]
        return Call("POST", "/emails/batch", json=entries, headers=headers)

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if not response.is_success:
            result = self.error_result(response)
            if len(batch) > 1 and result.outcome is Outcome.RECIPIENT_REJECTED:
                # A whole-call error cannot say which recipient is bad: blame the call.
                result = Result(Outcome.PROVIDER_REFUSED, detail=result.detail)
            return [result] * len(batch)
        body = body_json(response)
        if "id" in body and len(batch) == 1 and "data" not in body:
            return [self.accepted(str(body["id"]))]
        data = body["data"]
        errors = {
            int(e["index"]): short(str(e.get("message", ""))) for e in body.get("errors") or []
        }
        ids = iter(data)
        results = []
        for index in range(len(batch)):
            if index in errors:
                results.append(self.validation_result(errors[index]))
            else:
                results.append(self.accepted(str(next(ids)["id"])))
        if next(ids, None) is not None:
            raise BadAnswer("more ids than accepted messages")
        return results

    @staticmethod
    def validation_result(message: str) -> Result:
        detail = f"validation_error: {message}"
        if "`to`" in message or "to field" in message.lower():
            return Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)
        return Result(Outcome.PROVIDER_REFUSED, detail=detail)

    def error_result(self, response: httpx.Response) -> Result:
        try:
            body = body_json(response)
            name, message = str(body.get("name", "")), short(str(body.get("message", "")))
        except (BadAnswer, AttributeError):
            return status_result(response)
        if name == "daily_quota_exceeded":
            return Result(Outcome.PROVIDER_REFUSED, detail=f"HTTP 429 {name}: {message}")
        if name == "validation_error" and response.status_code in (400, 422):
            return self.validation_result(message)
        return status_result(response, f"{name}: {message}" if name else message)

    def check_call(self) -> Call:
        return Call("GET", "/domains")

    def check_detail(self, response: httpx.Response) -> str:
        domains = body_json(response).get("data", [])
        verified = [d.get("name") for d in domains if d.get("status") == "verified"]
        if not verified:
            raise CheckProblem("the key works but no domain is verified")
        return f"verified domains: {', '.join(map(str, verified[:5]))}"

    def check_failure(self, response: httpx.Response) -> CheckStep | None:
        # A sending-only key cannot list domains (401 restricted_api_key) but can send.
        if response.status_code == 401 and b"restricted_api_key" in response.content:
            return CheckStep(self.check_name, True, "sending-only key (cannot list domains)")
        return None


# -- webhook -----------------------------------------------------------------------------

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
