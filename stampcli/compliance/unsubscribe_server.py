"""A small one-click unsubscribe receiver (RFC 8058) for senders without a backend of their own.

Mail carries ``List-Unsubscribe: <https://host/unsubscribe?t=TOKEN>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. Mailbox providers POST
``List-Unsubscribe=One-Click`` to that URL without cookies; that POST alone
unsubscribes. A person who clicks the link in the footer gets a GET, which only
shows a confirmation page with a button (a form POSTing back): link scanners
and prefetchers fetch URLs with GET, and must not unsubscribe anybody.

Tokens are checked with :func:`stampcli.compliance.tokens.verify_token`; a genuine
one adds the address to the suppression list (reason ``unsubscribed``, source
``unsubscribe:<campaign>``), each request on its own store connection.

Written on the standard library's ``ThreadingHTTPServer`` and hardened so that
nothing a client sends stops it: bodies are capped (413), every connection has
a per-read timeout and an overall deadline (slow senders are cut off), the
number of connections served at once is bounded, and any error inside a
request ends only that request.
"""

from __future__ import annotations

import contextlib
import html
import re
import socket
import threading
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.compliance.tokens import TokenError, Unsubscribe, verify_token
from stampcli.errors import StampError
from stampcli.events.model import Reason
from stampcli.store.db import Store

MAX_BODY = 8 * 1024  # the one-click body is 26 bytes; a form post a little more
READ_TIMEOUT = 10.0  # seconds one read may wait
REQUEST_DEADLINE = 30.0  # seconds a whole request may take, however slowly it trickles
MAX_CONNECTIONS = 64
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

Log = Callable[[str], None]


class UnsubscribeServer(ThreadingHTTPServer):
    """The receiver. ``serve_forever()`` runs it; ``shutdown()`` from another thread stops it."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        db_path: str | Path,
        secret: str | bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log: Log | None = None,
        max_body: int = MAX_BODY,
        read_timeout: float = READ_TIMEOUT,
        deadline: float = REQUEST_DEADLINE,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.db_path = Path(db_path)
        self.secret = secret
        self.log = log
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(max_connections)
        # Create the schema once up front, so a broken store fails at start, not per request.
        Store(self.db_path).close()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Too many open connections (a slow-client flood): drop this one, keep serving.
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; one bad request is not news.
        if self.log is not None:
            self.log(f"{client_address[0]}: request failed and was dropped")


class _Handler(BaseHTTPRequestHandler):
    server: UnsubscribeServer
    server_version = "stamp-unsubscribe"
    sys_version = ""

    def setup(self) -> None:
        # StreamRequestHandler.setup() applies this per-read socket timeout.
        self.request.settimeout(self.server.read_timeout)
        super().setup()
        self._timer = threading.Timer(self.server.deadline, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def finish(self) -> None:
        self._timer.cancel()
        with contextlib.suppress(OSError):  # the client went away or the deadline cut it
            super().finish()

    def _expire(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.client_address[0]} {format % args}")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never log the query: the token names the subscriber.
        path = urlsplit(getattr(self, "path", "") or "").path
        self.log_message("%s %s %s", getattr(self, "command", "-"), path, code)

    # ---------------------------------------------------------------- routes

    def do_GET(self) -> None:
        who = self._token()
        if who is None:
            return
        token = html.escape(self._query_token() or "", quote=True)
        body = (
            f"<p>Unsubscribe <b>{html.escape(who.email)}</b> from "
            f"<b>{html.escape(who.campaign)}</b>?</p>"
            f'<form method="post" action="?t={token}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'
        )
        self._page(HTTPStatus.OK, "Unsubscribe", body)

    def do_HEAD(self) -> None:
        self._page(HTTPStatus.OK, "Unsubscribe", "", head=True)

    def do_POST(self) -> None:
        form = self._form()
        if form is None:
            return
        who = self._token()
        if who is None:
            return
        if form.get("List-Unsubscribe") != "One-Click":
            self._page(
                HTTPStatus.BAD_REQUEST,
                "Bad request",
                "<p>The request must carry List-Unsubscribe=One-Click.</p>",
            )
            return
        try:
            key = normalize_address(who.email)[0]
        except InvalidAddress:
            self._page(
                HTTPStatus.BAD_REQUEST, "Bad request", "<p>The token's address is invalid.</p>"
            )
            return
        try:
            with Store(self.server.db_path) as store:
                store.suppressions.add(key, Reason.UNSUBSCRIBED, f"unsubscribe:{who.campaign}")
        except StampError:
            self._page(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "Please try again",
                "<p>Your request could not be recorded just now. Please try again later.</p>",
            )
            if self.server.log is not None:
                self.server.log("store error while recording an unsubscribe")
            return
        self._page(
            HTTPStatus.OK,
            "Unsubscribed",
            f"<p><b>{html.escape(who.email)}</b> will get no more mail from this sender.</p>",
        )

    def _not_allowed(self) -> None:
        self._page(HTTPStatus.METHOD_NOT_ALLOWED, "Not allowed", "<p>Use GET or POST.</p>")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    # ---------------------------------------------------------------- helpers

    def _query_token(self) -> str | None:
        values = parse_qs(urlsplit(self.path).query).get("t")
        return values[0] if values else None

    def _token(self) -> Unsubscribe | None:
        """The token's contents, or None after answering 400/403."""
        token = (self._query_token() or "").strip()
        if not token:
            self._page(HTTPStatus.BAD_REQUEST, "Bad request", "<p>This link has no token.</p>")
            return None
        try:
            return verify_token(self.server.secret, token)
        except TokenError:
            if _TOKEN_SHAPE.fullmatch(token):
                self._page(
                    HTTPStatus.FORBIDDEN,
                    "Invalid link",
                    "<p>This unsubscribe link is not valid. Please use the link from the "
                    "email itself.</p>",
                )
            else:
                self._page(HTTPStatus.BAD_REQUEST, "Bad request", "<p>This link is malformed.</p>")
            return None

    def _form(self) -> dict[str, str] | None:
        """The POSTed form fields, or None after answering 400/411/413."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._page(HTTPStatus.LENGTH_REQUIRED, "Length required", "", close=True)
            return None
        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0:
            self._page(HTTPStatus.BAD_REQUEST, "Bad request", "<p>Bad Content-Length.</p>")
            return None
        if length > self.server.max_body:
            self._page(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Too large", "", close=True)
            return None
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            self.close_connection = True  # the client stopped sending: nobody to answer
            return None
        ctype = self.headers.get("Content-Type") or "application/x-www-form-urlencoded"
        if ctype.lower().startswith("multipart/form-data"):
            return _multipart(ctype, data)
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            return {}
        return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}

    def _page(
        self,
        status: HTTPStatus,
        title: str,
        body: str,
        *,
        head: bool = False,
        close: bool = False,
    ) -> None:
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:32rem;margin:4rem auto;"
            "padding:0 1rem}button{font-size:1.1rem;padding:.5rem 1.5rem}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
        ).encode()
        if close:
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")  # the URL carries the token
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            )
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "GET, HEAD, POST")
            if close:
                self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(page)
        except OSError:
            self.close_connection = True  # the client is gone


def _multipart(ctype: str, data: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body (RFC 8058 allows this encoding)."""
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
