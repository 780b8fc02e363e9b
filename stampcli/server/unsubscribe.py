"""One-click unsubscribe (RFC 8058) on ``/unsubscribe`` (and ``/``, the old receiver's URL).

Mail carries ``List-Unsubscribe: <https://host/unsubscribe?t=TOKEN>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. Mailbox providers POST
``List-Unsubscribe=One-Click`` to that URL without cookies; that POST alone
unsubscribes. A person who clicks the link in the footer gets a GET, which only
shows a confirmation page with a button (a form POSTing back): link scanners
and prefetchers fetch URLs with GET, and must not unsubscribe anybody.

Tokens are checked with :func:`stampcli.compliance.tokens.verify_token`; a genuine
one adds the address to the suppression list (reason ``unsubscribed``, source
``unsubscribe:<campaign>``) through the server's store writer. Bodies are
capped at 8 KiB (the one-click body is 26 bytes). The token names the
subscriber: it is never logged.
"""

from __future__ import annotations

import html
import logging
import re
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.compliance.tokens import TokenError, Unsubscribe, verify_token
from stampcli.errors import StoreError
from stampcli.events.model import Reason
from stampcli.server.http import Problem, read_body
from stampcli.server.writer import Overloaded, StoreWriter

log = logging.getLogger("stamp.serve")

MAX_BODY = 8 * 1024
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class UnsubscribeRoute:
    """The endpoint; ``secret`` is the token secret (STAMP_UNSUBSCRIBE_SECRET)."""

    def __init__(self, secret: str | bytes, writer: StoreWriter) -> None:
        self.secret = secret
        self.writer = writer

    async def handle(self, request: Request) -> Response:
        method = request.method
        if method == "HEAD":
            return page(200, "Unsubscribe", "", head=True)
        if method == "GET":
            who = self._token(request)
            if isinstance(who, Response):
                return who
            token = html.escape(request.query_params.get("t", ""), quote=True)
            return page(
                200,
                "Unsubscribe",
                f"<p>Unsubscribe <b>{html.escape(who.email)}</b> from "
                f"<b>{html.escape(who.campaign)}</b>?</p>"
                f'<form method="post" action="?t={token}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                '<button type="submit">Unsubscribe</button></form>',
            )
        if method != "POST":
            return page(405, "Not allowed", "<p>Use GET or POST.</p>")
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return page(411, "Length required", "", close=True)
        try:
            data = await read_body(request, MAX_BODY)
        except Problem as exc:
            return page(exc.status, "Bad request", "", close=exc.status in (408, 413))
        form = _form(request.headers.get("content-type", ""), data)
        who = self._token(request)
        if isinstance(who, Response):
            return who
        if form.get("List-Unsubscribe") != "One-Click":
            return page(
                400, "Bad request", "<p>The request must carry List-Unsubscribe=One-Click.</p>"
            )
        try:
            key = normalize_address(who.email)[0]
        except InvalidAddress:
            return page(400, "Bad request", "<p>The token's address is invalid.</p>")
        source = f"unsubscribe:{who.campaign}"
        try:
            await self.writer.call(
                lambda store: store.suppressions.add(key, Reason.UNSUBSCRIBED, source)
            )
        except (StoreError, Overloaded):
            log.error("unsubscribe: store error while recording an unsubscribe")
            return page(
                503,
                "Please try again",
                "<p>Your request could not be recorded just now. Please try again later.</p>",
            )
        return page(
            200,
            "Unsubscribed",
            f"<p><b>{html.escape(who.email)}</b> will get no more mail from this sender.</p>",
        )

    def _token(self, request: Request) -> Unsubscribe | Response:
        """The token's contents, or the 400/403 page to answer."""
        token = (parse_qs(request.url.query).get("t") or [""])[0].strip()
        if not token:
            return page(400, "Bad request", "<p>This link has no token.</p>")
        try:
            return verify_token(self.secret, token)
        except TokenError:
            if _TOKEN_SHAPE.fullmatch(token):
                return page(
                    403,
                    "Invalid link",
                    "<p>This unsubscribe link is not valid. Please use the link from the "
                    "email itself.</p>",
                )
            return page(400, "Bad request", "<p>This link is malformed.</p>")


def _form(content_type: str, data: bytes) -> dict[str, str]:
    """The POSTed form fields (urlencoded, or multipart as RFC 8058 also allows)."""
    if content_type.lower().startswith("multipart/form-data"):
        return _multipart(content_type, data)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return {}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _multipart(ctype: str, data: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode("latin-1", "replace") + data
    )
    fields: dict[str, str] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload.decode("utf-8", "replace").strip()
    return fields


def page(
    status: int, title: str, body: str, *, head: bool = False, close: bool = False
) -> Response:
    """A small HTML page with the headers a page behind a token URL needs."""
    content = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem}button{font-size:1.1rem;padding:.5rem 1.5rem}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()
    headers = {
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",  # the URL carries the token
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
        ),
    }
    if status == 405:
        headers["Allow"] = "GET, HEAD, POST"
    if close:
        headers["Connection"] = "close"
    response = Response(
        b"" if head else content,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=headers,
    )
    if head:
        response.headers["content-length"] = str(len(content))
    return response
