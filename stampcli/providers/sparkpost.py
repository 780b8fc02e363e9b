"""SparkPost: ``sparkpost://KEY`` (EU: ``?region=eu``).

Sends the rendered MIME as it is as one transmission per message
(``POST /api/v1/transmissions`` with ``content.email_rfc822``); the key goes
bare in ``Authorization``. SparkPost answers only counts of accepted and
rejected recipients, which with one recipient per call is that recipient's
fate. The campaign goes out as ``campaign_id`` (at most 64 bytes) and the
tags as transmission ``metadata``, both returned in every event.

Errors ``{"errors": [{message, code, description}]}``: 1902 (message
generation rejected: the address is on a suppression list) and an invalid
recipient address are the recipient's; the rest follows the common rules.

Webhook ``POST /webhooks/sparkpost`` (``SparkPostParser``). SparkPost webhooks: a JSON array
of ``{"msys": {"<class>": {...event...}}}``.

SparkPost does not sign: HTTP Basic credentials (``auth_type: basic``).
stamp's adapter sends the tags as transmission ``metadata`` (echoed in
``rcpt_meta``) and the campaign as ``campaign_id``. ``bounce_class`` tells hard
from soft; classes 60 (auto-reply) and 100 (challenge-response) are auto-replies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

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
    make_event,
    timestamp,
)
from stampcli.providers.base import Outcome, Result
from stampcli.providers.events_pull import EventPage, parse_items, since
from stampcli.providers.http import (
    Call,
    HTTPAdapter,
    body_json,
    error_text,
    status_result,
)
from stampcli.providers.pull import Pulled, Session, records, relative
from stampcli.providers.webhook import BasicAuthParser, Headers, as_list, json_body, obj, text_field
from stampcli.render.message import Message
from stampcli.times import parse_time

_CAMPAIGN_ID_MAX = 64


class SparkPostAdapter(HTTPAdapter):
    scheme = "sparkpost"
    max_batch = 1
    base_url: ClassVar[str] = "https://api.sparkpost.com"
    regional_urls: ClassVar[dict[str, str]] = {"eu": "https://api.eu.sparkpost.com"}
    check_name = "GET /api/v1/account"

    @classmethod
    def headers_for(cls, url: ProviderURL) -> dict[str, str]:
        return {"Authorization": url.user or "", "Accept": "application/json"}

    def payload(self, message: Message) -> dict[str, Any]:
        body: dict[str, Any] = {
            "recipients": [
                {"address": {"email": message.recipient}},
                # a copy keeps the message's own To: header (cc shows in its Cc: header)
                *(
                    {"address": {"email": addr, "header_to": message.recipient}}
                    for addr in message.copies
                ),
            ],
            "content": {"email_rfc822": message.raw.decode("ascii")},
            "metadata": dict(message.tags),
        }
        campaign = message.tags.get("campaign")
        if campaign:
            body["campaign_id"] = campaign.encode()[:_CAMPAIGN_ID_MAX].decode("utf-8", "ignore")
        options: dict[str, bool] = {}
        if self.tracking.opens is not None:
            options["open_tracking"] = self.tracking.opens
        if self.tracking.clicks is not None:
            options["click_tracking"] = self.tracking.clicks
        if options:
            body["options"] = options
        return body

    def build_send(self, batch: Sequence[Message]) -> Call:
        return Call("POST", "/api/v1/transmissions", json=self.payload(batch[0]))

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if response.is_success:
            results = body_json(response)["results"]
            if int(results["total_accepted_recipients"]) >= 1:
                return [self.accepted(str(results["id"]))]
            detail = "SparkPost rejected the recipient (total_rejected_recipients)"
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail)]
        text = error_text(response)
        try:
            errors = body_json(response).get("errors", [])
            codes = {str(e.get("code")) for e in errors}
            descriptions = " ".join(str(e.get("description", "")) for e in errors).lower()
        except (ValueError, AttributeError):
            codes, descriptions = set(), ""
        if response.status_code == 400 and "1902" in codes:
            return [Result(Outcome.RECIPIENT_REJECTED, detail=f"HTTP 400 (1902): {text}")]
        if response.status_code == 400 and "recipient address" in descriptions:
            detail = f"HTTP 400: {text}"
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)]
        return [status_result(response, text)]

    def check_call(self) -> Call:
        return Call("GET", "/api/v1/account")

    def check_detail(self, response: httpx.Response) -> str:
        account = body_json(response).get("results", {})
        return f"account {account.get('company_name', '?')!r} is {account.get('status', '?')}"


# --------------------------------------------------------------------------- suppressions
# GET /api/v1/suppression-list: cursor paging: ask with cursor=initial and per_page (up
# to 10,000), then follow the links entry whose rel is next until there is none (its
# href names SparkPost's path, used against our base URL). Each result is {recipient,
# type, source, description, created, updated}. type says which mail the entry stops:
# a newsletter is non_transactional mail, so entries that stop only transactional mail
# are left out.

SUPPRESSION_PAGE = 10_000
SUPPRESSION_SOURCES = {
    "Bounce Rule": Reason.HARD_BOUNCE,
    "Spam Complaint": Reason.COMPLAINT,
    "List Unsubscribe": Reason.UNSUBSCRIBED,
    "Unsubscribe Link": Reason.UNSUBSCRIBED,
    "Manually Added": Reason.MANUAL,
    "Compliance": Reason.MANUAL,  # SparkPost's compliance team blocked the address
}


def _next(data: Any) -> str | None:
    links = data.get("links") if isinstance(data, dict) else None
    if isinstance(links, dict):  # events search: {"next": "/api/v1/events/message?..."}
        nxt = links.get("next")
        return relative(str(nxt)) if nxt else None
    for link in links if isinstance(links, list) else ():
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            return relative(str(link["href"]))
    return None


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    path: str | None = f"/api/v1/suppression-list?cursor=initial&per_page={SUPPRESSION_PAGE}"
    seen: set[str] = set()
    while path is not None and path not in seen:
        seen.add(path)
        data = session.get_json(path)
        page = records(data, "results")
        for item in page:
            kind = item.get("type")
            stops_bulk = kind == "non_transactional" or item.get("non_transactional") is True
            if not stops_bulk:
                continue
            source = str(item.get("source") or "")
            description = " ".join(str(item.get("description") or "").split())
            yield Pulled(
                str(item.get("recipient") or ""),
                SUPPRESSION_SOURCES.get(source, Reason.MANUAL),
                f"{source}: {description}" if description else source or None,
                parse_time(item.get("created") or item.get("updated")) or 0.0,
            )
        path = _next(data) if page else None


# -- webhook -----------------------------------------------------------------------------

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


# --------------------------------------------------------------------------- events
EVENTS_PAGE = 1000  # per_page (SparkPost allows up to 10,000)
EVENTS_MARGIN = 15 * 60.0  # from= has minutes only, and events land late: read again
PULL_EVENT_TYPES = (
    "delivery,bounce,out_of_band,delay,policy_rejection,generation_failure,"
    "generation_rejection,spam_complaint,open,initial_open,click,list_unsubscribe,"
    "link_unsubscribe"
)


def _utc_minute(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M")


def fetch_events(session: Session, cursor: str | None, *, now: float) -> Iterator[EventPage]:
    """Events search ``GET /api/v1/events/message`` from the cursor (the newest event time
    seen, epoch seconds), following ``links.next``; the items are the webhook's events."""

    parser = SparkPostParser("pulled", "events carry no credentials")
    newest = since(cursor, now, 0.0)
    query = urlencode(
        {
            "events": PULL_EVENT_TYPES,
            "from": _utc_minute(since(cursor, now, EVENTS_MARGIN)),
            "to": _utc_minute(now + 60),
            "timezone": "UTC",
            "per_page": EVENTS_PAGE,
            "cursor": "initial",
        }
    )
    path: str | None = f"/api/v1/events/message?{query}"
    seen: set[str] = set()
    while path is not None and path not in seen:
        seen.add(path)
        data = session.get_json(path)
        page = records(data, "results")
        events, rejected = parse_items(
            ({"msys": {"message_event": item}} for item in page),
            lambda item: parser.events(item, {}),
        )
        newest = max([newest, *(e.occurred_at.timestamp() for e in events)])
        path = _next(data) if page else None
        # the cursor moves only once every page is stored (the order is not documented)
        yield EventPage(events, rejected, f"{newest:.3f}" if path is None else None)
