"""SendGrid v3 Mail Send: ``sendgrid://KEY`` (EU accounts: ``sendgrid://KEY?region=eu``).

SendGrid builds the MIME itself and shares ``content`` between all
personalizations, so every rendered message is its own call (one
personalization). A 202 means accepted; the id is the ``X-Message-Id`` header.
Suppressed recipients are accepted and silently dropped by SendGrid, so they
show up later as events, never here.

Webhook ``POST /webhooks/sendgrid`` (``SendGridParser``). SendGrid Event Webhook: a JSON
array of events, signed with ECDSA P-256.

stamp's adapter sends ``Message.tags`` as ``custom_args``, which come back as
top-level keys of every event (``campaign``, ``recipient``). ``sg_message_id``
is the send answer's ``X-Message-Id`` plus a ``.suffix``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self

import httpx

from stampcli.config import ProviderURL
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
from stampcli.providers.base import Outcome, Result
from stampcli.providers.http import (
    Call,
    CheckProblem,
    HTTPAdapter,
    body_json,
    display_name,
    error_text,
    json_html,
    json_text,
    status_result,
)
from stampcli.providers.pull import Pulled, Session, iter_offset_pages
from stampcli.providers.suppression_files import Cells, ExportFormat
from stampcli.providers.webhook import (
    Headers,
    SendGridSignature,
    WebhookParser,
    as_list,
    json_body,
    require,
    text_field,
)
from stampcli.render.message import Message
from stampcli.times import parse_time


def _person(name: str, addr: str) -> dict[str, str]:
    return {"email": addr, "name": name} if name else {"email": addr}


class SendGridAdapter(HTTPAdapter):
    scheme = "sendgrid"
    needs_raw = False
    max_batch = 1
    base_url: ClassVar[str] = "https://api.sendgrid.com"
    regional_urls: ClassVar[dict[str, str]] = {"eu": "https://api.eu.sendgrid.com"}

    @classmethod
    def headers_for(cls, url: ProviderURL) -> dict[str, str]:
        return {"Authorization": f"Bearer {url.user or ''}", "Accept": "application/json"}

    def payload(self, message: Message) -> dict[str, Any]:
        """The Mail Send JSON for one message."""
        to: dict[str, str] = {"email": message.recipient}
        if display_name(message.to_header):
            to["name"] = display_name(message.to_header)
        sender: dict[str, str] = {"email": message.sender}
        if display_name(message.from_header):
            sender["name"] = display_name(message.from_header)
        content = []
        if message.text:  # text/plain must come first when present
            content.append({"type": "text/plain", "value": json_text(message)})
        if message.html:
            content.append({"type": "text/html", "value": json_html(message)})
        personalization: dict[str, Any] = {"to": [to], "custom_args": dict(message.tags)}
        for key, copies in (("cc", message.cc_addresses), ("bcc", message.bcc_addresses)):
            if copies:
                personalization[key] = [_person(name, addr) for name, addr in copies]
        body: dict[str, Any] = {
            # custom_args come back in every event webhook: how events find the ledger row.
            "personalizations": [personalization],
            "from": sender,
            "subject": message.subject,
            "content": content,
        }
        if message.reply_to_address:
            # an object, never the display form: "Name <addr>" is not a valid email
            reply: dict[str, str] = {"email": message.reply_to_address}
            if message.reply_to_name:
                reply["name"] = message.reply_to_name
            body["reply_to"] = reply
        if message.headers:
            body["headers"] = dict(message.headers)
        if message.tags.get("campaign"):
            body["categories"] = [message.tags["campaign"][:255]]
        if message.attachments:
            body["attachments"] = [
                {
                    "content": base64.b64encode(a.data).decode("ascii"),
                    "type": a.content_type,
                    "filename": a.filename,
                    "disposition": "inline" if a.inline else "attachment",
                    **({"content_id": a.content_id} if a.content_id else {}),
                }
                for a in message.attachments
            ]
        tracking: dict[str, Any] = {}
        if self.tracking.clicks is not None:
            tracking["click_tracking"] = {
                "enable": self.tracking.clicks,
                "enable_text": self.tracking.clicks,
            }
        if self.tracking.opens is not None:
            tracking["open_tracking"] = {"enable": self.tracking.opens}
        if tracking:
            body["tracking_settings"] = tracking
        return body

    def build_send(self, batch: Sequence[Message]) -> Call:
        return Call("POST", "/v3/mail/send", json=self.payload(batch[0]))

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if response.is_success:
            return [self.accepted(response.headers.get("x-message-id"), "HTTP 202")]
        if response.status_code == 400:
            errors = body_json(response).get("errors", [])
            fields = " ".join(str(e.get("field") or "") for e in errors)
            if "personalizations" in fields and ".to" in fields:
                # "Does not contain a valid address." for the recipient: permanent, suppress.
                detail = f"HTTP 400: {error_text(response)}"
                return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)]
        return [status_result(response)]

    def check_call(self) -> Call:
        return Call("GET", "/v3/scopes")

    def check_detail(self, response: httpx.Response) -> str:
        scopes = body_json(response).get("scopes", [])
        if "mail.send" not in scopes:
            raise CheckProblem(
                f"the key works but lacks the mail.send scope ({len(scopes)} scopes)"
            )
        return f"key has mail.send ({len(scopes)} scopes)"


# --------------------------------------------------------------------------- suppressions
# GET /v3/suppression/{bounces,blocks,spam_reports,invalid_emails,unsubscribes}: offset
# paging (limit up to 500, offset); each answer is a JSON array of {created, email,
# reason, status} (spam reports carry ip, unsubscribes only created and email). Blocks
# are included: SendGrid drops mail to them, so another provider must not deliver it.

SUPPRESSION_PAGE = 500
# list -> (our reason, detail prefix)
SUPPRESSION_LISTS = {
    "bounces": (Reason.HARD_BOUNCE, "bounce"),
    "blocks": (Reason.HARD_BOUNCE, "block"),
    "spam_reports": (Reason.COMPLAINT, "spam report"),
    "invalid_emails": (Reason.INVALID, "invalid email"),
    "unsubscribes": (Reason.UNSUBSCRIBED, "global unsubscribe"),
}


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    for name, (reason, prefix) in SUPPRESSION_LISTS.items():
        for item in iter_offset_pages(
            session,
            f"/v3/suppression/{name}",
            {},
            limit_name="limit",
            offset_name="offset",
            page_size=SUPPRESSION_PAGE,
        ):
            why = " ".join(str(item.get(k) or "") for k in ("status", "reason")).strip()
            yield Pulled(
                str(item.get("email") or ""),
                reason,
                f"{prefix}: {why}" if why else prefix,
                parse_time(item.get("created")) or 0.0,
            )


# --------------------------------------------------------------------------- exports
# The CSV files SendGrid's UI exports per list: email, created, and reason and
# status (bounces, blocks; which one only the file name says), ip (spam reports),
# reason alone (invalid emails), or nothing more (global unsubscribes).


def _export_reason(row: Cells, filename: str) -> tuple[Reason | None, str | None]:
    get = row.get
    if "ip" in row:
        ip = get("ip")
        return SUPPRESSION_LISTS["spam_reports"][0], "spam report" + (f" from {ip}" if ip else "")
    if "status" in row:
        kind = "blocks" if "block" in filename else "bounces"
        prefix = "blocked" if kind == "blocks" else "bounced"
        detail = " ".join(x for x in (get("status", ""), get("reason", "")) if x)
        return SUPPRESSION_LISTS[kind][0], f"{prefix}: {detail}" if detail else prefix
    if "reason" in row:
        return SUPPRESSION_LISTS["invalid_emails"][0], get("reason") or None
    return SUPPRESSION_LISTS["unsubscribes"][0], "global unsubscribe"


EXPORT_FORMATS = (
    ExportFormat("sendgrid", "email", lambda cols: {"email", "created"} <= cols, _export_reason),
)


# -- webhook -----------------------------------------------------------------------------

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
