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
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import httpx

from stampcli.compliance.times import parse_time
from stampcli.config import ProviderConfig, ProviderURL
from stampcli.events.model import Reason
from stampcli.providers.base import NO_TRACKING_SWITCH, Outcome, Result
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
from stampcli.providers.pull import Pulled, Session, iter_offset_pages
from stampcli.render.message import Message


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
