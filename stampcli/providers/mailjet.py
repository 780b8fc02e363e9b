"""Mailjet Send API v3.1: ``mailjet://PUBLIC_KEY:PRIVATE_KEY``.

Up to 50 complete messages go in one ``POST /v3.1/send`` (HTTP Basic
public:private). The answer has one entry per message with its own
``Status``; a batch with a bad message answers 400 while the good ones are
still sent, so the per-message entries are read whatever the HTTP status.
A bad ``To`` is the recipient's (mj-0013: invalid address); any other
per-message error names our request. The campaign goes out as
``CustomCampaign`` (Mailjet groups statistics by it) and the tags as
``EventPayload``, which comes back in every event.

Webhook ``POST /webhooks/mailjet`` (``MailjetParser``). Mailjet event callbacks: one JSON
object, or an array with "group events" (Version 2).

Mailjet does not sign: HTTP Basic credentials in the callback URL. stamp's
adapter sends the recipient's ledger key as ``CustomID`` and the tags as JSON
in ``EventPayload`` (returned as ``Payload``). Events have no id: the id is
derived from (MessageID, recipient, type), which the message API gives too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import httpx
import orjson

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
from stampcli.providers.events_pull import EventPage, parse_items, shared_event_id, since
from stampcli.providers.http import (
    BadAnswer,
    Call,
    HTTPAdapter,
    ProviderSetupError,
    b64,
    body_json,
    has_html,
    json_html,
    json_text,
    short,
    status_result,
)
from stampcli.providers.pull import Pulled, Session, iter_offset_pages, offset_pages
from stampcli.providers.webhook import BasicAuthParser, Headers, as_list, json_body, obj, text_field
from stampcli.render.message import Message
from stampcli.times import parse_time


def _tracking(flag: bool | None) -> str:
    return "account_default" if flag is None else ("enabled" if flag else "disabled")


class MailjetAdapter(HTTPAdapter):
    scheme = "mailjet"
    needs_raw = False
    max_batch = 50
    base_url: ClassVar[str] = "https://api.mailjet.com"
    check_name = "GET /v3/REST/apikey"

    @classmethod
    def auth_for(cls, url: ProviderURL) -> httpx.Auth:
        return httpx.BasicAuth(url.user or "", url.password or "")

    def entry(self, message: Message) -> dict[str, Any]:
        to: dict[str, str] = {"Email": message.recipient}
        if message.to_name:
            to["Name"] = message.to_name
        sender: dict[str, str] = {"Email": message.sender}
        if message.from_name:
            sender["Name"] = message.from_name
        entry: dict[str, Any] = {
            "From": sender,
            "To": [to],
            **{
                key: [{"Email": a, **({"Name": n} if n else {})} for n, a in copies]
                for key, copies in (("Cc", message.cc_addresses), ("Bcc", message.bcc_addresses))
                if copies
            },
            "Subject": message.subject,
            "TextPart": json_text(message),
            "HTMLPart": json_html(message),
            "CustomID": message.key,
            "EventPayload": json.dumps(message.tags, ensure_ascii=False),
            "TrackOpens": _tracking(self.tracking.opens),
            "TrackClicks": _tracking(self.tracking.clicks),
        }
        if not has_html(message):  # a text template's message: text only
            del entry["HTMLPart"]
        if message.tags.get("campaign"):
            entry["CustomCampaign"] = message.tags["campaign"]
        if message.headers:
            entry["Headers"] = dict(message.headers)
        if message.reply_to_address:
            reply: dict[str, str] = {"Email": message.reply_to_address}
            if message.reply_to_name:
                reply["Name"] = message.reply_to_name
            entry["ReplyTo"] = reply
        files = [a for a in message.attachments if not a.inline]
        inline = [a for a in message.attachments if a.inline]
        if files:
            entry["Attachments"] = [
                {
                    "ContentType": a.content_type,
                    "Filename": a.filename,
                    "Base64Content": b64(a.data),
                }
                for a in files
            ]
        if inline:
            entry["InlinedAttachments"] = [
                {
                    "ContentType": a.content_type,
                    "Filename": a.filename,
                    "ContentID": a.content_id,
                    "Base64Content": b64(a.data),
                }
                for a in inline
            ]
        return entry

    def build_send(self, batch: Sequence[Message]) -> Call:
        return Call("POST", "/v3.1/send", json={"Messages": [self.entry(m) for m in batch]})

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if response.status_code >= 500 or response.status_code in (401, 403, 429):
            return [status_result(response)] * len(batch)
        body = body_json(response)
        entries = body.get("Messages") if isinstance(body, dict) else None
        if entries is None:
            if response.is_success:
                raise BadAnswer("no Messages in the answer")
            # A global error (malformed request, too many messages): none was sent.
            return [status_result(response)] * len(batch)
        if not isinstance(entries, list):
            raise BadAnswer("Messages is not a list")
        return [self.entry_result(e) for e in entries]

    @staticmethod
    def entry_result(entry: dict[str, Any]) -> Result:
        if entry["Status"] == "success":
            return Result(Outcome.ACCEPTED, message_id=str(entry["To"][0]["MessageID"]))
        errors = entry.get("Errors") or []
        detail = short(
            "; ".join(f"{e.get('ErrorCode')}: {e.get('ErrorMessage')}" for e in errors)
            or str(entry)
        )
        related = " ".join(" ".join(e.get("ErrorRelatedTo") or []) for e in errors)
        if related.startswith("To") or " To" in related:
            invalid = any(e.get("ErrorCode") == "mj-0013" for e in errors)
            return Result(
                Outcome.RECIPIENT_REJECTED,
                detail=detail,
                suppress=Reason.INVALID if invalid else None,
            )
        return Result(Outcome.PROVIDER_REFUSED, detail=detail)

    def check_call(self) -> Call:
        return Call("GET", "/v3/REST/apikey")

    def check_detail(self, response: httpx.Response) -> str:
        return f"key pair works ({body_json(response).get('Count', '?')} API keys visible)"


# --------------------------------------------------------------------------- suppressions
# GET /v3/REST/contact?IsExcludedFromCampaigns=true (the exclusion list). Mailjet keeps
# no separate bounce or complaint list in its API; contacts it will not mail are
# flagged IsExcludedFromCampaigns. Offset paging with Limit (up to 1000) and Offset;
# answers {"Count", "Data": [{Email, CreatedAt, ...}], "Total"}.

SUPPRESSION_PAGE = 1000


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    if not session.url.user or not session.url.password:
        raise ProviderSetupError("mailjet:// needs PUBLIC:PRIVATE API keys")
    for item in iter_offset_pages(
        session,
        "/v3/REST/contact",
        {"IsExcludedFromCampaigns": "true"},
        limit_name="Limit",
        offset_name="Offset",
        page_size=SUPPRESSION_PAGE,
        keys=("Data",),
    ):
        yield Pulled(
            str(item.get("Email") or ""),
            Reason.UNSUBSCRIBED,
            "Mailjet exclusion list",
            parse_time(item.get("CreatedAt")) or 0.0,
        )


# -- webhook -----------------------------------------------------------------------------

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
        # Mailjet events have no id. What a webhook event and GET /v3/REST/message
        # share: the MessageID (a number in both), the address and the status. The
        # message API keeps one status per message, dated when the message arrived,
        # not when the event happened, so no time is shared: (message, recipient,
        # type) is the key, and a message's repeated opens or clicks are kept once
        # (the first to arrive, with its time and link).
        event_id = shared_event_id(
            self.provider,
            message_id=item.get("MessageID"),
            recipient=item.get("email"),
            kind=kind,
            bounce_kind=bounce_kind,
            when=None,
        )
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=item.get("email"),
                occurred_at=timestamp(item.get("time")),
                event_id=event_id,
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


# --------------------------------------------------------------------------- events
EVENTS_PAGE = 1000  # Mailjet's largest Limit
EVENTS_MARGIN = 3600.0
# /message Status -> the webhook's event (and whether a bounce is hard)
MESSAGE_STATUS = {
    "sent": ("sent", None),
    "opened": ("open", None),
    "clicked": ("click", None),
    "bounce": ("bounce", False),
    "softbounced": ("bounce", False),
    "hardbounced": ("bounce", True),
    "spam": ("spam", None),
    "unsub": ("unsub", None),
    "blocked": ("blocked", None),
}


def fetch_events(session: Session, cursor: str | None, *, now: float) -> Iterator[EventPage]:
    """``GET /v3/REST/message`` (FromTS, Limit/Offset): each message's current status as
    the webhook event it stands for (queued and deferred ones are not news yet). The
    event is (message, status): a message that moves on from sent to opened is stored
    again as its open. The cursor is the newest ArrivedAt seen."""
    from stampcli.events.model import timestamp

    parser = MailjetParser("pulled", "events carry no credentials")
    newest = since(cursor, now, 0.0)
    params = {
        "FromTS": int(since(cursor, now, EVENTS_MARGIN)),
        "ToTS": int(now),
        "ShowContactAlt": "true",
        "Sort": "ArrivedAt",
    }
    for page, last in offset_pages(
        session, "/v3/REST/message", params, limit_name="Limit", offset_name="Offset",
        page_size=EVENTS_PAGE, keys=("Data",),
    ):  # fmt: skip
        items = []
        for message in page:
            status = MESSAGE_STATUS.get(str(message.get("Status") or "").lower())
            if status is None:
                continue
            name, hard = status
            try:
                when: Any = int(timestamp(message.get("ArrivedAt"), "ArrivedAt").timestamp())
            except ValueError:
                when = message.get("ArrivedAt")  # rejected by the parser, and counted
            item: dict[str, Any] = {
                "event": name,
                "time": when,
                "MessageID": message.get("ID"),
                "email": message.get("ContactAlt"),
                "CustomID": message.get("CustomID") or None,
                "Payload": message.get("EventPayload") or message.get("Payload"),
            }
            if hard is not None:
                item["hard_bounce"] = hard
            items.append(item)
        events, rejected = parse_items(items, lambda item: parser.events(item, {}))
        newest = max([newest, *(e.occurred_at.timestamp() for e in events)])
        yield EventPage(events, rejected, f"{newest:.3f}" if last else None)
