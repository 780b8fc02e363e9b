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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx

from stampcli.compliance.times import parse_time
from stampcli.config import ProviderURL
from stampcli.events.model import Reason
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
from stampcli.render.message import Message

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
            "recipients": [{"address": {"email": message.recipient}}],
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


# --------------------------------------------------------------------------- events
EVENTS_PAGE = 1000  # per_page (SparkPost allows up to 10,000)
EVENTS_MARGIN = 15 * 60.0  # from= has minutes only, and events land late: read again
EVENT_TYPES = (
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
    from stampcli.inbound.sparkpost import SparkPostParser

    parser = SparkPostParser("pulled", "events carry no credentials")
    newest = since(cursor, now, 0.0)
    query = urlencode(
        {
            "events": EVENT_TYPES,
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
