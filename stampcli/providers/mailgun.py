"""Mailgun: ``mailgun://KEY@DOMAIN`` (EU: ``?region=eu``).

Sends the rendered MIME as it is to ``POST /v3/{domain}/messages.mime``
(multipart/form-data: ``to`` and the ``message`` file), one message per call,
HTTP Basic ``api:KEY``. The campaign goes out as ``o:tag`` and both tags as
``v:`` user variables, which Mailgun returns in every event.

Errors: 400 "not a valid address" is the recipient's; 401/403 ("not allowed
to send") and 404 (unknown domain) refuse us; 429 names its wait in prose
("try again after N seconds").

Webhook ``POST /webhooks/mailgun`` (``MailgunParser``). Mailgun webhooks (the JSON ones):
``{"signature": {...}, "event-data": {...}}``.

One event per request, signed in the body (HMAC-SHA256 of timestamp + token);
the event id is ``event-data.id`` with its timestamp, as the events API gives it
(the token guards against replays). stamp's adapter sends the tags as ``v:campaign`` and
``v:recipient``, returned in ``event-data.user-variables``.
"""

from __future__ import annotations

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
from stampcli.providers.events_pull import EventPage, parse_items, since
from stampcli.providers.http import (
    Call,
    CheckProblem,
    HTTPAdapter,
    ProviderSetupError,
    body_json,
    error_text,
    status_result,
)
from stampcli.providers.pull import Pulled, Session, records, relative
from stampcli.providers.suppression_files import Cells, ExportFormat
from stampcli.providers.webhook import (
    Headers,
    MailgunSignature,
    WebhookParser,
    WebhookPayloadError,
    json_body,
    obj,
    require,
    text_field,
)
from stampcli.render.message import Message
from stampcli.times import parse_time


class MailgunAdapter(HTTPAdapter):
    scheme = "mailgun"
    max_batch = 1
    base_url: ClassVar[str] = "https://api.mailgun.net"
    regional_urls: ClassVar[dict[str, str]] = {"eu": "https://api.eu.mailgun.net"}

    @staticmethod
    def domain_for(url: ProviderURL) -> str:
        """The sending domain (the URL's host); ProviderSetupError without KEY@DOMAIN."""
        if not url.user or not url.host:
            raise ProviderSetupError(
                "mailgun:// needs KEY@DOMAIN, like mailgun://KEY@mg.example.com"
            )
        return url.host

    @property
    def domain(self) -> str:
        return self.domain_for(self.url)

    @property
    def check_name(self) -> str:  # type: ignore[override]
        return f"GET /v3/domains/{self.url.host or '?'}"

    @classmethod
    def auth_for(cls, url: ProviderURL) -> httpx.Auth:
        return httpx.BasicAuth("api", url.user or "")

    def build_send(self, batch: Sequence[Message]) -> Call:
        message = batch[0]
        # the envelope: the MIME carries the headers (Cc shown, Bcc not)
        data: dict[str, str | list[str]] = {
            "to": [message.recipient, *message.copies] if message.copies else message.recipient
        }
        if message.tags.get("campaign"):
            data["o:tag"] = message.tags["campaign"]
        for name, value in message.tags.items():
            data[f"v:{name}"] = value
        if self.tracking.opens is not None:
            data["o:tracking-opens"] = "yes" if self.tracking.opens else "no"
        if self.tracking.clicks is not None:
            data["o:tracking-clicks"] = "yes" if self.tracking.clicks else "no"
        files = [("message", ("message.eml", message.raw, "message/rfc822"))]
        return Call("POST", f"/v3/{self.domain}/messages.mime", data=data, files=files)

    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        if response.is_success:
            return [self.accepted(str(body_json(response)["id"]))]
        text = error_text(response)
        if response.status_code == 400 and "not a valid address" in text.lower():
            detail = f"HTTP 400: {text}"
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress=Reason.INVALID)]
        return [status_result(response, text)]

    def check_call(self) -> Call:
        return Call("GET", f"/v3/domains/{self.domain}")

    def check_detail(self, response: httpx.Response) -> str:
        domain = body_json(response).get("domain", {})
        state = domain.get("state", "?")
        if state not in ("active", "?"):
            raise CheckProblem(f"domain {self.domain} is {state}, not active")
        return f"domain {self.domain} is {state}"


# --------------------------------------------------------------------------- suppressions
# GET /v3/{domain}/{bounces,complaints,unsubscribes}: each answer is {"items": [...],
# "paging": {"next": URL, ...}}; pages are followed through paging.next until a page
# is empty. next names Mailgun's own host, so only its path and query are used (the
# endpoint override must keep working). Bounces carry address, code, error,
# created_at; unsubscribes address, tags, created_at; complaints address, created_at
# (dates in RFC 2822).

SUPPRESSION_PAGE = 1000
SUPPRESSION_LISTS = {
    "bounces": Reason.HARD_BOUNCE,
    "complaints": Reason.COMPLAINT,
    "unsubscribes": Reason.UNSUBSCRIBED,
}


def _detail(name: str, item: dict[str, object]) -> str | None:
    if name == "bounces":
        text = " ".join(str(item.get(k) or "") for k in ("code", "error")).strip()
        return text or None
    if name == "unsubscribes":
        tags = item.get("tags")
        if isinstance(tags, list) and tags and tags != ["*"]:
            return "tags: " + ", ".join(str(t) for t in tags)
    return None


def fetch_suppressions(session: Session) -> Iterator[Pulled]:
    domain = MailgunAdapter.domain_for(session.url)
    for name, reason in SUPPRESSION_LISTS.items():
        path: str | None = f"/v3/{domain}/{name}?limit={SUPPRESSION_PAGE}"
        seen: set[str] = set()
        while path is not None:
            seen.add(path)
            data = session.get_json(path)
            items = records(data, "items")
            for item in items:
                yield Pulled(
                    str(item.get("address") or ""),
                    reason,
                    _detail(name, item),
                    parse_time(item.get("created_at")) or 0.0,
                )
            paging = data.get("paging") if isinstance(data, dict) else None
            nxt = paging.get("next") if isinstance(paging, dict) else None
            path = relative(nxt) if items and isinstance(nxt, str) and nxt else None
            if path in seen:
                path = None  # the last page points at itself


# --------------------------------------------------------------------------- events
EVENTS_PAGE = 300  # the events API's largest page
# Mailgun stores events late and out of order (up to ~30 min, its polling guide):
# every pull reads that far back again; the store keeps each event once.
EVENTS_MARGIN = 30 * 60.0


def fetch_events(session: Session, cursor: str | None, *, now: float) -> Iterator[EventPage]:
    """``GET /v3/{domain}/events`` ascending from the cursor (epoch seconds), following
    ``paging.next`` until an empty page; the cursor is the newest event time seen."""
    parser = MailgunParser("pulled events carry no signature")
    domain = MailgunAdapter.domain_for(session.url)
    begin = since(cursor, now, EVENTS_MARGIN)
    newest = since(cursor, now, 0.0)
    path: str | None = f"/v3/{domain}/events"
    params: dict[str, object] | None = {
        "begin": f"{begin:.3f}",
        "end": f"{now:.3f}",
        "ascending": "yes",
        "limit": EVENTS_PAGE,
    }
    seen: set[str] = set()
    while path is not None:
        seen.add(path)
        data = session.get_json(path, params)
        items = records(data, "items")
        if not items:
            return
        events, rejected = parse_items(items, lambda item: parser.events(item, {}))
        newest = max([newest, *(e.occurred_at.timestamp() for e in events)])
        yield EventPage(events, rejected, f"{newest:.3f}")
        paging = data.get("paging") if isinstance(data, dict) else None
        nxt = paging.get("next") if isinstance(paging, dict) else None
        path, params = (relative(nxt) if isinstance(nxt, str) and nxt else None), None
        if path in seen:
            path = None


# --------------------------------------------------------------------------- exports
# Mailgun's CSV exports of the same lists: address with code, error (bounces), tags
# (unsubscribes) or neither (complaints), and created_at.
_EXPORT_COLUMNS = {"address", "code", "error", "created_at", "tags"}


def _export_reason(row: Cells, filename: str) -> tuple[Reason | None, str | None]:
    get = row.get
    if "code" in row or "error" in row:
        detail = " ".join(x for x in (get("code", ""), get("error", "")) if x)
        return SUPPRESSION_LISTS["bounces"], detail or None
    if "tags" in row:
        tags = get("tags", "")
        return SUPPRESSION_LISTS["unsubscribes"], f"tags: {tags}" if tags and tags != "*" else None
    return SUPPRESSION_LISTS["complaints"], None


EXPORT_FORMATS = (
    # a lone "address" column is a plain list, not an export
    ExportFormat(
        "mailgun",
        "address",
        lambda cols: "address" in cols and len(cols) > 1 and cols <= _EXPORT_COLUMNS,
        _export_reason,
    ),
)


# -- webhook -----------------------------------------------------------------------------

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


def event_id(item: Mapping[str, Any]) -> str | None:
    """The stored id of a Mailgun event, the same by webhook and by the events API.

    The webhook's ``event-data`` is the very object the events API lists, with its
    ``id``; that id is unique only within a day, so with the event's ``timestamp``
    (the same JSON number in both) it is unique. The signature token exists only in
    the webhook: it serves replay protection, and is the id only of event-data
    without an id. (Before, the webhook stored the token and the pull ``id@time``,
    so an event received both ways was stored twice.)
    """
    when = item.get("timestamp")
    if item.get("id") not in (None, "") and when is not None:
        if isinstance(when, int | float) and not isinstance(when, bool):
            when = repr(float(when))  # 1764000000 and 1764000000.0 are one time
        return f"{item.get('id')}@{when}"
    token = item.get("_token")
    return token if isinstance(token, str) else None


class MailgunParser(WebhookParser):
    provider = "mailgun"
    env = ("MAILGUN_WEBHOOK_SIGNING_KEY",)

    def __init__(self, signing_key: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signature = MailgunSignature(signing_key, clock=self.clock)
        # the last body read and what it held: verify and parse of one request read the
        # same bytes object, so its JSON is parsed once (one swap of one tuple: safe
        # across threads; holding the body keeps its identity from being reused)
        self._last: tuple[bytes, Mapping[str, Any]] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        [key] = require(env, cls.env)
        return cls(key, **options)

    def _body(self, headers: Headers, body: bytes) -> Mapping[str, Any]:
        last = self._last
        if last is not None and last[0] is body:
            return last[1]
        data = json_body(self.provider, headers, body)
        if not isinstance(data, dict) or not isinstance(data.get("event-data"), dict):
            raise WebhookPayloadError(
                "mailgun webhook: the body is not {signature, event-data} (legacy form "
                "webhooks are not supported: configure Mailgun's JSON webhooks)"
            )
        self._last = (body, data)
        return data

    def verify(self, headers: Headers, body: bytes) -> None:
        self.signature.check(self._body(headers, body).get("signature"))

    def items(self, headers: Headers, body: bytes) -> list[Any]:
        data = self._body(headers, body)
        item = dict(data["event-data"])
        # kept only for event-data without an id (the verifier has checked the token for
        # replays already; it is not the stored id, see event_id)
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
                event_id=event_id(item),
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
