"""Brevo (formerly Sendinblue): ``brevo://KEY``.

Brevo builds the MIME itself from fields (``POST /v3/smtp/email``, header
``api-key``), one message per call: its ``messageVersions`` batching cannot
vary headers per version, and List-Unsubscribe differs for every recipient.
The campaign goes out as a tag and the tags as the ``X-Mailin-custom``
header, which Brevo returns in every webhook. Brevo has no per-message
tracking switches (the account settings apply; ``tracking:`` is only warned
about) and no content ids for inline images, so inline images go as
ordinary attachments.

Errors ``{code, message}``: 400 ``invalid_parameter`` about ``to`` is the
recipient's; 401/402 (no credits)/403 refuse us; 429 carries
``x-sib-ratelimit-reset`` (seconds).

Webhook ``POST /webhooks/brevo`` (``BrevoParser``). Brevo transactional webhooks: one JSON
object per request (or an array when batched).

Brevo does not sign: HTTP Basic credentials in the webhook URL. stamp's
adapter sends the tags as JSON in the ``X-Mailin-custom`` header (echoed under
that name) and the campaign as a tag. ``message-id`` is the RFC Message-ID the
send answer returned. Events have no id: the event's content hash is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

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
from stampcli.providers.base import NO_TRACKING_SWITCH, Outcome, Result
from stampcli.providers.events_pull import EventPage, parse_items, shared_event_id, since
from stampcli.providers.http import (
    Call,
    HTTPAdapter,
    b64,
    body_json,
    error_text,
    has_html,
    json_html,
    json_text,
    status_result,
)
from stampcli.providers.mailjet import payload_tags
from stampcli.providers.pull import Pulled, Session, iter_offset_pages, offset_pages
from stampcli.providers.webhook import BasicAuthParser, Headers, as_list, json_body, text_field
from stampcli.render.message import Message
from stampcli.times import parse_time


class BrevoAdapter(HTTPAdapter):
    scheme = "brevo"
    needs_raw = False
    tracking_switch = False  # open/click tracking is a setting of the account

    @classmethod
    def tracking_note(cls, config: ProviderConfig) -> str:
        return f"{NO_TRACKING_SWITCH}; the account's settings apply"

    max_batch = 1
    base_url: ClassVar[str] = "https://api.brevo.com"
    check_name = "GET /v3/account"

    @classmethod
    def headers_for(cls, url: ProviderURL) -> dict[str, str]:
        return {"api-key": url.user or "", "Accept": "application/json"}

    def payload(self, message: Message) -> dict[str, Any]:
        to: dict[str, str] = {"email": message.recipient}
        if message.to_name:
            to["name"] = message.to_name
        sender: dict[str, str] = {"email": message.sender}
        if message.from_name:
            sender["name"] = message.from_name
        headers = dict(message.headers)
        headers["X-Mailin-custom"] = json.dumps(message.tags, ensure_ascii=True)
        body: dict[str, Any] = {
            "sender": sender,
            "to": [to],
            **{
                key: [{"email": a, **({"name": n} if n else {})} for n, a in copies]
                for key, copies in (("cc", message.cc_addresses), ("bcc", message.bcc_addresses))
                if copies
            },
            "subject": message.subject,
            "htmlContent": json_html(message),
            "textContent": json_text(message),
            "headers": headers,
        }
        if not has_html(message):  # a text template's message: text only
            del body["htmlContent"]
        if message.tags.get("campaign"):
            body["tags"] = [message.tags["campaign"]]
        if message.reply_to_address:
            reply: dict[str, str] = {"email": message.reply_to_address}
            if message.reply_to_name:
                reply["name"] = message.reply_to_name
            body["replyTo"] = reply
        if message.attachments:
            body["attachment"] = [
                {"name": a.filename, "content": b64(a.data)} for a in message.attachments
            ]
        return body

    def build_send(self, batch: Sequence[Message]) -> Call:
        return Call("POST", "/v3/smtp/email", json=self.payload(batch[0]))

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if response.is_success:
            return [self.accepted(str(body_json(response)["messageId"]))]
        text = error_text(response)
        if response.status_code == 400 and " in to" in text.lower():
            detail = f"HTTP 400: {text}"
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)]
        return [status_result(response, text)]

    def check_call(self) -> Call:
        return Call("GET", "/v3/account")

    def check_detail(self, response: httpx.Response) -> str:
        account = body_json(response)
        return f"account {account.get('companyName') or account.get('email', '?')!r}"


# --------------------------------------------------------------------------- suppressions
# GET /v3/smtp/blockedContacts (blocked or unsubscribed transactional contacts): offset
# paging with limit (up to 100) and offset; answers {"contacts": [{email, senderEmail,
# reason: {code, message}, blockedAt}], "count"}. Reason codes: hardBounce,
# contactFlaggedAsSpam, unsubscribedViaEmail, unsubscribedViaApi, unsubscribedViaMA,
# adminBlocked.

SUPPRESSION_PAGE = 100
_BLOCK_REASONS = {
    "hardBounce": Reason.HARD_BOUNCE,
    "contactFlaggedAsSpam": Reason.COMPLAINT,
    "adminBlocked": Reason.MANUAL,
}


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    for item in iter_offset_pages(
        session,
        "/v3/smtp/blockedContacts",
        {},
        limit_name="limit",
        offset_name="offset",
        page_size=SUPPRESSION_PAGE,
        keys=("contacts",),
    ):
        why = item.get("reason")
        code = str(why.get("code") or "") if isinstance(why, dict) else ""
        message = str(why.get("message") or "") if isinstance(why, dict) else ""
        unsubscribed = code.startswith("unsubscribed")
        reason = _BLOCK_REASONS.get(code, Reason.UNSUBSCRIBED if unsubscribed else Reason.MANUAL)
        yield Pulled(
            str(item.get("email") or ""),
            reason,
            f"{code}: {message}" if message else code or None,
            parse_time(item.get("blockedAt")) or 0.0,
        )


# -- webhook -----------------------------------------------------------------------------

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
        # Brevo events have no id (the webhook's "id" is the webhook's). What a webhook
        # event and a row of the email events report share: the message id (with angle
        # brackets in both; normalisation drops them), the address, the event (each
        # side's own name, mapped to one type here), the time (ts_epoch or ts_event by
        # webhook, the report's date) to the second, and a click's link.
        event_id = shared_event_id(
            self.provider,
            message_id=item.get("message-id"),
            recipient=item.get("email"),
            kind=kind,
            bounce_kind=bounce_kind,
            when=when,
            url=item.get("link") if kind is EventType.CLICKED else None,
        )
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=item.get("email"),
                occurred_at=when,
                event_id=event_id,
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


# --------------------------------------------------------------------------- events
EVENTS_PAGE = 2500  # the email events report's default (and largest) page
EVENTS_MARGIN = 86400.0  # startDate is a day: read the cursor's day again
# the report's names -> the webhook's (the parser's vocabulary)
REPORT_EVENTS = {
    "requests": "request",
    "delivered": "delivered",
    "hardBounces": "hard_bounce",
    "softBounces": "soft_bounce",
    "bounces": "soft_bounce",
    "deferred": "deferred",
    "blocked": "blocked",
    "invalid": "invalid_email",
    "error": "error",
    "spam": "spam",
    "opened": "opened",
    "loadedByProxy": "proxy_open",
    "clicks": "click",
    "unsubscribed": "unsubscribe",
}


def _day(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def _as_webhook(item: dict[str, Any]) -> dict[str, Any]:
    """A report row in the webhook's shape (its names; ``date`` as the event time)."""
    from stampcli.events.model import timestamp

    name = item.get("event")
    out: dict[str, Any] = {
        "event": REPORT_EVENTS.get(name, name) if isinstance(name, str) else name,
        "email": item.get("email"),
        "message-id": item.get("messageId"),
        "reason": item.get("reason"),
        "tag": item.get("tag"),
        "link": item.get("link"),
    }
    try:
        out["ts_event"] = int(timestamp(item.get("date"), "date").timestamp())
    except ValueError:
        out["ts_event"] = item.get("date")  # the parser rejects it and it is counted
    return out


def fetch_events(session: Session, cursor: str | None, *, now: float) -> Iterator[EventPage]:
    """``GET /v3/smtp/statistics/events`` (the unaggregated email events report) from the
    cursor's day, oldest first, page by page (limit/offset). The report has no event ids:
    a row's id is derived from what the webhook carries too (see ``BrevoParser.events``),
    so a rerun over the same days, or an event the webhook brought, is stored once.
    Report rows carry no custom headers: they match by message id."""

    parser = BrevoParser("pulled", "events carry no credentials")
    newest = since(cursor, now, 0.0)
    params = {
        "startDate": _day(since(cursor, now, EVENTS_MARGIN)),
        "endDate": _day(now),
        "sort": "asc",
    }
    for page, last in offset_pages(
        session, "/v3/smtp/statistics/events", params, limit_name="limit",
        offset_name="offset", page_size=EVENTS_PAGE, keys=("events",),
    ):  # fmt: skip
        events, rejected = parse_items(
            (_as_webhook(item) for item in page), lambda item: parser.events(item, {})
        )
        newest = max([newest, *(e.occurred_at.timestamp() for e in events)])
        yield EventPage(events, rejected, f"{newest:.3f}" if last else None)
