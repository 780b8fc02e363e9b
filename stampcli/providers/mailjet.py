"""Mailjet Send API v3.1: ``mailjet://PUBLIC_KEY:PRIVATE_KEY``.

Up to 50 complete messages go in one ``POST /v3.1/send`` (HTTP Basic
public:private). The answer has one entry per message with its own
``Status``; a batch with a bad message answers 400 while the good ones are
still sent, so the per-message entries are read whatever the HTTP status.
A bad ``To`` is the recipient's (mj-0013: invalid address); any other
per-message error names our request. The campaign goes out as
``CustomCampaign`` (Mailjet groups statistics by it) and the tags as
``EventPayload``, which comes back in every event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import httpx

from stampcli.compliance.times import parse_time
from stampcli.config import ProviderURL
from stampcli.events.model import Reason
from stampcli.providers.base import Outcome, Result
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
from stampcli.providers.pull import Pulled, Session, iter_offset_pages
from stampcli.render.message import Message


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
