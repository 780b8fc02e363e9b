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

from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from stampcli.adapters.base import Outcome, Result
from stampcli.adapters.http import (
    Call,
    HTTPAdapter,
    body_json,
    error_text,
    status_result,
)
from stampcli.render.message import Message

_CAMPAIGN_ID_MAX = 64


class SparkPostAdapter(HTTPAdapter):
    scheme = "sparkpost"
    max_batch = 1
    base_url: ClassVar[str] = "https://api.sparkpost.com"
    regional_urls: ClassVar[dict[str, str]] = {"eu": "https://api.eu.sparkpost.com"}
    check_name = "GET /api/v1/account"

    def default_headers(self) -> dict[str, str]:
        return {"Authorization": self.url.user or "", "Accept": "application/json"}

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
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress="invalid")]
        return [status_result(response, text)]

    def check_call(self) -> Call:
        return Call("GET", "/api/v1/account")

    def check_detail(self, response: httpx.Response) -> str:
        account = body_json(response).get("results", {})
        return f"account {account.get('company_name', '?')!r} is {account.get('status', '?')}"
