"""Mailchimp Transactional (Mandrill): ``mandrill://KEY``.

Sends the rendered MIME as it is with ``POST /api/1.0/messages/send-raw``,
one message per call; the key travels inside the JSON body. Tags, metadata
and tracking cannot be given to send-raw as fields, so they go as Mandrill's
``X-MC-Tags``, ``X-MC-Metadata`` and ``X-MC-Track`` headers prepended to the
message (Mandrill reads and strips them).

The answer has a ``status`` per recipient: sent/queued/scheduled are
accepted; ``invalid`` and ``rejected`` are the recipient's, with
``reject_reason`` (hard-bounce, spam, unsub, ...) naming why; a reason about
our account (unsigned, invalid-sender, test-mode-limit) refuses us. Account
errors come as HTTP 500 ``{"status": "error", "name": ...}``: Invalid_Key and
PaymentRequired refuse us, the rest (GeneralError) is the provider down.

Webhook ``POST /webhooks/mandrill`` (``MandrillParser``). Mandrill (Mailchimp Transactional)
webhooks: a form field ``mandrill_events`` holding a
JSON array of up to 1,000 events, signed with ``X-Mandrill-Signature``.

The signature covers the URL configured in Mandrill, so the parser needs the
public URL the server is reached at (``STAMP_PUBLIC_URL`` + ``/webhooks/mandrill``),
not the one a proxy forwards to. stamp's adapter sends the tags as
``X-MC-Metadata`` (echoed in ``msg.metadata``) and the campaign as ``X-MC-Tags``.
Events have no id: the event's content hash is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, Self

import httpx

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
from stampcli.providers.base import CheckStep, Outcome, Result
from stampcli.providers.events_pull import EventPage, parse_items, shared_event_id, since
from stampcli.providers.http import BadAnswer, Call, HTTPAdapter, body_json, short, status_result
from stampcli.providers.pull import Pulled, PullError, PullIncomplete, Session, records
from stampcli.providers.suppression_files import Cells, ExportFormat
from stampcli.providers.webhook import (
    Headers,
    WebhookParser,
    WebhookPayloadError,
    as_list,
    check_mandrill,
    form_body,
    load_json,
    obj,
    require,
    text_field,
)
from stampcli.render.message import Message
from stampcli.times import parse_time

# Mandrill's denylist reason -> ours (the send answer's reject_reason, the
# rejects/list pull and the rejects.csv export all use these names)
DENYLIST_REASONS = {
    "hard-bounce": Reason.HARD_BOUNCE,
    "spam": Reason.COMPLAINT,
    "unsub": Reason.UNSUBSCRIBED,
    "invalid": Reason.INVALID,
    "custom": Reason.MANUAL,
}
# reject_reason at send time -> the suppression it implies (None: reject, do not suppress);
# "custom" is a rule of the sender's own, not news about the recipient
_RECIPIENT_REASONS: dict[str, Reason | None] = {
    **DENYLIST_REASONS,
    "custom": None,
    "soft-bounce": None,
    "rule": None,
}
_ACCOUNT_REASONS = {"invalid-sender", "unsigned", "test-mode-limit"}
_REFUSING_ERRORS = {
    "Invalid_Key",
    "PaymentRequired",
    "Unknown_Subaccount",
    "Unknown_Template",
    "ValidationError",
}


class MandrillAdapter(HTTPAdapter):
    scheme = "mandrill"
    max_batch = 1
    base_url: ClassVar[str] = "https://mandrillapp.com"
    check_name = "POST /api/1.0/users/ping"

    def control_headers(self, message: Message) -> bytes:
        """Mandrill's X-MC-* headers for tags, metadata and tracking, ASCII, CRLF-ended."""
        lines = []
        if message.tags.get("campaign"):
            tag = message.tags["campaign"].encode("ascii", "replace").decode()
            lines.append(f"X-MC-Tags: {' '.join(tag.replace(',', ' ').split())[:50]}")
        lines.append(f"X-MC-Metadata: {json.dumps(message.tags, ensure_ascii=True)}")
        track = [
            name
            for name, on in (("opens", self.tracking.opens), ("clicks_all", self.tracking.clicks))
            if on
        ]
        if self.tracking.opens is not None or self.tracking.clicks is not None:
            lines.append(f"X-MC-Track: {','.join(track) or 'none'}")
        return "".join(f"{line}\r\n" for line in lines).encode("ascii")

    def payload(self, message: Message) -> dict[str, Any]:
        raw = self.control_headers(message) + message.raw
        return {
            "key": self.url.user or "",
            "raw_message": raw.decode("ascii"),
            "from_email": message.sender,
            "from_name": message.from_name,
            "to": [message.recipient, *message.copies],  # the envelope
            "async": False,
        }

    def build_send(self, batch: Sequence[Message]) -> Call:
        return Call("POST", "/api/1.0/messages/send-raw", json=self.payload(batch[0]))

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if not response.is_success:
            return [self.error_result(response)]
        entries = body_json(response)
        if not isinstance(entries, list) or not entries:
            raise BadAnswer("expected one status entry")
        if len(entries) == 1:
            return [self.entry_result(entries[0])]
        # cc/bcc copies answer an entry each: the recipient's own is the message's result
        own = batch[0].recipient.lower()
        for entry in entries:
            if isinstance(entry, dict) and str(entry.get("email", "")).lower() == own:
                return [self.entry_result(entry)]
        raise BadAnswer(f"no status entry for {batch[0].recipient}")

    def entry_result(self, entry: dict[str, Any]) -> Result:
        status = entry["status"]
        mid = str(entry.get("_id") or "")
        if status in ("sent", "queued", "scheduled"):
            return self.accepted(mid, status)
        reason = str(entry.get("reject_reason") or "")
        detail = short(f"Mandrill {status}" + (f": {reason}" if reason else ""))
        if status == "invalid":
            return Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)
        if status == "rejected":
            if reason in _ACCOUNT_REASONS:
                return Result(Outcome.PROVIDER_REFUSED, detail=detail)
            if reason == "soft-bounce":
                return Result(Outcome.RECIPIENT_DEFERRED, detail=detail)
            return Result(
                Outcome.RECIPIENT_REJECTED, detail=detail, suppress=_RECIPIENT_REASONS.get(reason)
            )
        raise BadAnswer(f"unknown status {status!r}")

    def error_result(self, response: httpx.Response) -> Result:
        try:
            body = body_json(response)
            is_error = isinstance(body, dict) and body.get("status") == "error"
        except BadAnswer:
            is_error = False
        if not is_error:
            return status_result(response)
        name = str(body.get("name", ""))
        detail = short(f"HTTP {response.status_code} {name}: {body.get('message', '')}")
        if name in _REFUSING_ERRORS:
            return Result(Outcome.PROVIDER_REFUSED, detail=detail)
        if response.status_code == 429 or name == "Too_Many_Requests":
            return status_result(response, detail)
        return Result(Outcome.PROVIDER_DOWN, detail=detail)

    def check_call(self) -> Call:
        return Call("POST", "/api/1.0/users/ping", json={"key": self.url.user or ""})

    def check_detail(self, response: httpx.Response) -> str:
        return short(response.text.strip('"'))

    def check_failure(self, response: httpx.Response) -> CheckStep | None:
        return CheckStep(self.check_name, False, self.error_result(response).detail)


# --------------------------------------------------------------------------- suppressions
# POST /api/1.0/rejects/list, the key inside the JSON body as in every Mandrill call.
# The answer is Mandrill's rejection denylist as an array of {email, reason, detail,
# created_at, expired, ...}. Taken: hard-bounce, spam, unsub, invalid (the address
# itself) and custom (added by hand). Left out: soft-bounce (Mandrill lifts it after a
# while, and another provider may well deliver meanwhile) and the reasons about the
# sender or the account rather than the recipient (invalid-sender, rule,
# test-mode-limit, unsigned). Expired entries are left out too (the API's default).
#
# The call has no paging and answers at most 1,000 entries. A full answer may have
# left some out: the pull merges what it got and warns that the list may be longer
# than Mandrill lets anyone read.

MAX_REJECTS = 1000  # rejects/list answers at most this many entries


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    data = session.post_json(
        "/api/1.0/rejects/list", {"key": session.url.user or "", "include_expired": False}
    )
    if not isinstance(data, list):
        raise PullError(f"{session.label}: rejects/list did not answer a list")
    for item in records(data):
        why = str(item.get("reason") or "")
        reason = DENYLIST_REASONS.get(why)
        if reason is None or item.get("expired") is True:
            continue
        detail = " ".join(str(item.get("detail") or "").split())
        yield Pulled(
            str(item.get("email") or ""),
            reason,
            f"{why}: {detail}" if detail else why,
            parse_time(item.get("created_at")) or 0.0,
        )
    if len(data) >= MAX_REJECTS:
        raise PullIncomplete(
            f"{session.label}: Mandrill answered its maximum of {MAX_REJECTS} rejections, "
            "which were merged; its API lists no more, so the denylist may be longer "
            "(Mandrill itself still refuses the rest)"
        )


# --------------------------------------------------------------------------- exports
# rejects.csv of Mandrill's denylist: email, reason, detail, created_at, expires_at (or
# last_event_at), expired. Soft bounces and expired entries are not lasting: skipped.


def _export_reason(row: Cells, filename: str) -> tuple[Reason | None, str | None]:
    if (row.get("expired") or "").lower() in ("true", "1", "yes"):
        return None, None
    why = row.get("reason", "")
    if why == "soft-bounce":
        return None, None  # Mandrill lets these expire: not lasting
    return DENYLIST_REASONS.get(why, Reason.MANUAL), row.get("detail") or why or None


EXPORT_FORMATS = (
    ExportFormat(
        "mandrill",
        "email",
        lambda cols: (
            {"email", "reason", "detail", "created_at"} <= cols
            and bool(cols & {"expires_at", "last_event_at"})
        ),
        _export_reason,
    ),
)


# -- webhook -----------------------------------------------------------------------------

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
        occurred_at = timestamp(item.get("ts"), "ts")
        message_id = msg.get("_id") or item.get("_id")
        # Mandrill events have no id. What a webhook event and messages/search share:
        # the message's _id (msg._id; the event's _id may carry an "N." prefix, which
        # normalisation drops) and, for an open or a click, its ts and link (the search
        # lists each in opens_detail/clicks_detail). A state event (send, bounces,
        # deferral, reject, spam, unsub) is in the search only as the message's state,
        # dated with the message's ts, not the event's: a message reaches each state
        # once, so (message, recipient, type) without a time is its key. Repeated
        # deferrals of one message are therefore kept once.
        tracked = kind in (EventType.OPENED, EventType.CLICKED)
        event_id = shared_event_id(
            self.provider,
            message_id=message_id,
            recipient=msg.get("email"),
            kind=kind,
            bounce_kind=bounce_kind,
            when=occurred_at if tracked else None,
            url=item.get("url") if tracked else None,
        )
        return [
            make_event(
                self.provider,
                kind,
                item,
                recipient=msg.get("email"),
                occurred_at=occurred_at,
                event_id=event_id,
                campaign=metadata.get(TAG_CAMPAIGN)
                or (tags[0] if isinstance(tags, list) and tags else None),
                recipient_key=metadata.get(TAG_RECIPIENT),
                message_id=message_id,
                bounce_kind=bounce_kind,
                reason=reason,
                url_=item.get("url"),
                user_agent=item.get("user_agent"),
                auto_reply=kind in (EventType.BOUNCED, EventType.DEFERRED)
                and looks_auto_reply(reason, msg.get("diag")),
            )
        ]


# --------------------------------------------------------------------------- events
SEARCH_LIMIT = 1000  # messages/search.json returns at most this many
EVENTS_MARGIN = 86400.0  # date_from is a day
# a message's state -> the webhook event it stands for
MESSAGE_STATES = {
    "sent": "send",
    "bounced": "hard_bounce",
    "soft-bounced": "soft_bounce",
    "rejected": "reject",
    "spam": "spam",
    "unsub": "unsub",
    "deferred": "deferral",
}
_STABLE = ("_id", "ts", "email", "sender", "subject", "tags", "metadata", "state")


def _message_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One message found by the search as the webhook events it stands for: its state,
    each open and each click (with the parts of the message that do not change)."""
    msg = {k: message[k] for k in _STABLE if k in message}
    for name in ("bounce_description", "diag"):
        if message.get(name):
            msg[name] = message[name]
    out: list[dict[str, Any]] = []
    state = MESSAGE_STATES.get(str(message.get("state") or ""))
    if state is not None:
        out.append({"event": state, "_id": message.get("_id"), "ts": message.get("ts"), "msg": msg})
    for kind, details in (("open", "opens_detail"), ("click", "clicks_detail")):
        for detail in message.get(details) or ():
            if isinstance(detail, dict):
                out.append(
                    {
                        "event": kind,
                        "_id": message.get("_id"),
                        "ts": detail.get("ts"),
                        "url": detail.get("url"),
                        "user_agent": detail.get("ua"),
                        "msg": msg,
                    }
                )
    return out


def fetch_events(session: Session, cursor: str | None, *, now: float) -> Iterator[EventPage]:
    """``POST /api/1.0/messages/search.json`` from the cursor's day: each message's state,
    opens and clicks as webhook events. The search answers at most 1,000 messages: past
    that, PullIncomplete after storing what came (the next pull goes on from there)."""
    from datetime import UTC, datetime

    parser = MandrillParser("pulled", "events carry no signature")

    def day(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")

    data = session.post_json(
        "/api/1.0/messages/search.json",
        {
            "key": session.url.user or "",
            "query": "*",
            "date_from": day(since(cursor, now, EVENTS_MARGIN)),
            "date_to": day(now),
            "limit": SEARCH_LIMIT,
        },
    )
    if not isinstance(data, list):
        raise PullError(f"{session.label}: messages/search did not answer a list")
    messages = [m for m in data if isinstance(m, dict)]
    items = [item for m in messages for item in _message_events(m)]
    events, rejected = parse_items(items, lambda item: parser.events(item, {}))
    sent = [e.occurred_at.timestamp() for e in events]
    newest = max([since(cursor, now, 0.0), *sent])
    full = len(messages) >= SEARCH_LIMIT
    # a full answer may leave older messages out: then the cursor stays where it was
    yield EventPage(events, rejected, None if full else f"{newest:.3f}")
    if full:
        raise PullIncomplete(
            f"{session.label}: the search answered its limit of {SEARCH_LIMIT} messages; "
            "run the pull again for the rest"
        )
