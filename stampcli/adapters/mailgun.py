"""Mailgun: ``mailgun://KEY@DOMAIN`` (EU: ``?region=eu``).

Sends the rendered MIME as it is to ``POST /v3/{domain}/messages.mime``
(multipart/form-data: ``to`` and the ``message`` file), one message per call,
HTTP Basic ``api:KEY``. The campaign goes out as ``o:tag`` and both tags as
``v:`` user variables, which Mailgun returns in every event.

Errors: 400 "not a valid address" is the recipient's; 401/403 ("not allowed
to send") and 404 (unknown domain) refuse us; 429 names its wait in prose
("try again after N seconds").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import httpx

from stampcli.adapters.base import Outcome, Result
from stampcli.adapters.http import (
    Call,
    CheckProblem,
    HTTPAdapter,
    ProviderSetupError,
    body_json,
    error_text,
    status_result,
)
from stampcli.render.message import Message


class MailgunAdapter(HTTPAdapter):
    scheme = "mailgun"
    max_batch = 1
    base_url: ClassVar[str] = "https://api.mailgun.net"
    regional_urls: ClassVar[dict[str, str]] = {"eu": "https://api.eu.mailgun.net"}

    @property
    def domain(self) -> str:
        if not self.url.user or not self.url.host:
            raise ProviderSetupError(
                "mailgun:// needs KEY@DOMAIN, like mailgun://KEY@mg.example.com"
            )
        return self.url.host

    @property
    def check_name(self) -> str:  # type: ignore[override]
        return f"GET /v3/domains/{self.url.host or '?'}"

    def auth(self) -> httpx.Auth:
        return httpx.BasicAuth("api", self.url.user or "")

    def build_send(self, batch: Sequence[Message]) -> Call:
        message = batch[0]
        data: dict[str, str | list[str]] = {"to": message.recipient}
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
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail, suppress="invalid")]
        return [status_result(response, text)]

    def check_call(self) -> Call:
        return Call("GET", f"/v3/domains/{self.domain}")

    def check_detail(self, response: httpx.Response) -> str:
        domain = body_json(response).get("domain", {})
        state = domain.get("state", "?")
        if state not in ("active", "?"):
            raise CheckProblem(f"domain {self.domain} is {state}, not active")
        return f"domain {self.domain} is {state}"
