"""Local fakes of the email providers' HTTP APIs, for tests and benchmarks.

Each fake is a small HTTP/1.1 server on 127.0.0.1 (a free port) running its
own asyncio loop in a daemon thread, so it serves sync code (typer's
CliRunner) and async tests alike. It speaks the provider's documented request
and answer shapes, and it is strict: a wrong auth header, a wrong content
type, a missing required field or too many messages in one call get the
provider's real error shape, so an adapter bug shows up as a failing test.

Usage::

    with PostmarkFake(token="t0k3n") as fake:          # starts; stops at exit
        cfg = ProviderConfig(url="postmark://t0k3n", endpoint=fake.url)
        ...
        fake.accepted["ann@example.com"]               # list of accepted messages
        fake.reject("bob@example.com", "inactive")     # per-recipient rejection
        fake.fail("server_error", times=2)             # next 2 requests: HTTP 500
        fake.fail("throttle", retry_after="7")         # 429 with Retry-After: 7
        fake.fail("unauthorized")                      # 401/403 in the provider's shape
        fake.fail("hang")                              # no answer (read timeout)
        fake.fail("reset")                             # read the request, then RST
        fake.fail("reply", status=412, body={...})     # any answer you like

Faults apply to the next ``times`` requests (``times=None``: until
:meth:`FakeServer.clear_faults`), optionally only to paths starting with
``path``. Every accepted message is recorded per recipient in ``accepted``
(a dict of lists of :class:`Accepted`); ``requests`` keeps the last 1000
requests received; ``calls`` counts them all.

Fakes: SendGridFake, PostmarkFake, ResendFake, SESFake, MailgunFake,
MailjetFake, SparkPostFake, MandrillFake, BrevoFake; ``FAKES`` maps a URL
scheme to its class and ``provider_url(fake)`` gives the URL an adapter
needs to talk to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlsplit

from stampcli.config import ProviderConfig
from stampcli.render.message import Attachment, Message

FAULT_KINDS = ("server_error", "throttle", "unauthorized", "hang", "reset", "reply")
REJECT_REASONS = ("invalid", "inactive", "bounced", "unsubscribed", "complaint")


@dataclass
class Request:
    """One HTTP request as the fake received it (header names lower case)."""

    method: str
    target: str  # path and query, as sent
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";")[0].strip().lower()


@dataclass
class Reply:
    """An answer: ``body`` is bytes, str, or anything JSON-serialisable."""

    status: int
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        return data, headers


@dataclass
class Accepted:
    """One message the fake accepted."""

    recipient: str
    message_id: str
    fields: dict[str, Any]  # the provider's fields for this message (JSON entry or form)
    raw: bytes | None = None  # the raw MIME, for raw-MIME APIs
    request_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    times: int | None
    path: str | None
    status: int
    body: Any
    headers: dict[str, str]
    retry_after: str | None


class FakeServer:
    """Base of the provider fakes: the HTTP server, faults, rejections and records.

    Subclasses implement :meth:`handle` (a normal request) and the
    provider-shaped answers :meth:`unauthorized_reply`, :meth:`throttle_reply`
    and :meth:`server_error_reply`.
    """

    scheme: ClassVar[str] = ""
    hang_seconds: float = 60.0  # how long "hang" keeps a request without answer

    def __init__(self) -> None:
        self.accepted: dict[str, list[Accepted]] = defaultdict(list)
        self.requests: deque[Request] = deque(maxlen=1000)
        self.calls = 0
        self.rejections: dict[str, str] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self.port = 0
        self.tls: ssl.SSLContext | None = None  # set before start(): serve HTTPS

    # ----------------------------------------------------------------- control

    @property
    def url(self) -> str:
        """The base URL to give an adapter as ``endpoint``."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024, ssl=self.tls)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-{self.scheme}", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._loop = self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail(
        self,
        kind: str,
        times: int | None = 1,
        *,
        path: str | None = None,
        status: int = 500,
        body: Any = None,
        headers: dict[str, str] | None = None,
        retry_after: str | float | None = "1",
    ) -> None:
        """Make the next ``times`` requests (to ``path``...) fail the way ``kind`` says."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        ra = None if retry_after is None else str(retry_after)
        with self._lock:
            self._faults.append(Fault(kind, times, path, status, body, headers or {}, ra))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reject(self, address: str, reason: str = "invalid") -> None:
        """Have the provider reject ``address`` the way it does for ``reason``."""
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reason {reason!r}; one of {REJECT_REASONS}")
        self.rejections[address.lower()] = reason

    def rejection(self, address: str) -> str | None:
        return self.rejections.get(address.lower())

    @property
    def accepted_count(self) -> int:
        return sum(len(v) for v in self.accepted.values())

    def record(
        self,
        recipient: str,
        fields: dict[str, Any],
        req: Request,
        raw: bytes | None = None,
        message_id: str | None = None,
    ) -> str:
        """Record one accepted message; returns its id."""
        mid = message_id or self.new_id()
        self.accepted[recipient.lower()].append(Accepted(recipient, mid, fields, raw, req.headers))
        return mid

    def new_id(self) -> str:
        return f"fake-{self.scheme}-{next(self._ids)}"

    # ----------------------------------------------------------------- provider hooks

    def handle(self, req: Request) -> Reply:
        raise NotImplementedError

    def provider_url(self) -> str:
        """The provider URL (with this fake's credentials) for ``ProviderConfig.url``."""
        raise NotImplementedError

    def unauthorized_reply(self) -> Reply:
        return Reply(401, {"message": "unauthorized"})

    def throttle_reply(self, retry_after: str | None) -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Reply(429, {"message": "too many requests"}, headers)

    def server_error_reply(self, status: int) -> Reply:
        return Reply(status, {"message": "internal error"})

    # ----------------------------------------------------------------- the server

    def _take_fault(self, req: Request) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or req.path.startswith(fault.path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:
                req = await self._read_request(reader)
                if req is None:
                    break
                self.calls += 1
                self.requests.append(req)
                fault = self._take_fault(req)
                reply: Reply | None
                if fault is None:
                    try:
                        reply = self.handle(req)
                    except Exception as exc:  # a bug in the fake: say so loudly
                        reply = Reply(599, f"fake crashed: {type(exc).__name__}: {exc}")
                elif fault.kind == "hang":
                    await asyncio.sleep(self.hang_seconds)
                    break
                elif fault.kind == "reset":
                    _reset(writer)
                    return
                else:
                    reply = self._fault_reply(fault)
                data, headers = reply.encode()
                reason = _reason(reply.status)
                head = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Length: {len(data)}"]
                head += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)
                await writer.drain()
                if req.header("connection").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            with contextlib.suppress(Exception):
                writer.close()

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "server_error":
            return self.server_error_reply(fault.status if fault.status >= 500 else 500)
        if fault.kind == "throttle":
            return self.throttle_reply(fault.retry_after)
        if fault.kind == "unauthorized":
            return self.unauthorized_reply()
        return Reply(fault.status, fault.body if fault.body is not None else b"", fault.headers)

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> Request | None:
        line = await reader.readline()
        if not line.strip():
            return None
        method, target, _version = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        else:
            body = b""
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return Request(method.upper(), target, parts.path, query, headers, body)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashing proxy would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _valid_address(value: Any) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value))


def _bare(value: str) -> str:
    """The address of ``Name <addr>`` or ``addr``."""
    match = re.search(r"<([^>]*)>\s*$", value)
    return (match.group(1) if match else value).strip()


def _basic(req: Request) -> tuple[str, str] | None:
    auth = req.header("authorization")
    if not auth.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
    except ValueError:
        return None
    return user, password


def parse_form(req: Request) -> tuple[dict[str, list[str]], dict[str, tuple[str, bytes]]]:
    """multipart/form-data -> (fields, files {name: (filename, exact bytes)}); ValueError if bad."""
    match = re.search(r'boundary="?([^";]+)"?', req.header("content-type"))
    if req.content_type != "multipart/form-data" or not match:
        raise ValueError("not multipart/form-data with a boundary")
    delimiter = b"--" + match.group(1).encode()
    chunks = req.body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ValueError("multipart body without its closing delimiter")
    fields: dict[str, list[str]] = defaultdict(list)
    files: dict[str, tuple[str, bytes]] = {}
    for chunk in chunks[1:-1]:
        head, sep, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep or not data.endswith(b"\r\n"):
            raise ValueError("malformed multipart part")
        data = data[:-2]
        disposition = next(
            (
                line.split(b":", 1)[1].decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if not name:
            raise ValueError("a part without a name")
        if filename:
            files[name.group(1)] = (filename.group(1), data)
        else:
            fields[name.group(1)].append(data.decode())
    return fields, files


# ====================================================================== SendGrid


class SendGridFake(FakeServer):
    """SendGrid v3: POST /v3/mail/send (202 + X-Message-Id), GET /v3/scopes.

    Rejections: "invalid" -> 400 naming the field; any other reason is what
    SendGrid does with suppressed addresses: 202, silently dropped (``dropped``).
    """

    scheme = "sendgrid"

    def provider_url(self) -> str:
        return f"sendgrid://{self.key}"

    def __init__(self, key: str = "SG.fake-key") -> None:
        super().__init__()
        self.key = key
        self.dropped: list[str] = []

    @staticmethod
    def _errors(status: int, message: str, field: str | None = None) -> Reply:
        return Reply(status, {"errors": [{"message": message, "field": field, "help": None}]})

    def unauthorized_reply(self) -> Reply:
        return self._errors(401, "The provided authorization grant is invalid, expired, or revoked")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        reset = str(int(time.time()) + int(float(retry_after or 1)))
        return Reply(
            429,
            {"errors": [{"field": None, "message": "too many requests"}]},
            {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
        )

    def handle(self, req: Request) -> Reply:
        if req.header("authorization") != f"Bearer {self.key}":
            return self.unauthorized_reply()
        if req.method == "GET" and req.path == "/v3/scopes":
            return Reply(200, {"scopes": ["mail.send", "suppression.read"]})
        if req.method != "POST" or req.path != "/v3/mail/send":
            return self._errors(404, "Not Found")
        if req.content_type != "application/json":
            return self._errors(415, "Content-Type should be application/json.")
        try:
            body = req.json()
        except ValueError:
            return self._errors(400, "Bad Request", None)
        problem = self._validate(body)
        if problem:
            return self._errors(400, *problem)
        ids = []
        for p in body["personalizations"]:
            for to in p["to"]:
                if self.rejection(to["email"]):
                    self.dropped.append(to["email"])
                    continue
                ids.append(self.record(to["email"], {**body, "personalization": p}, req))
        return Reply(202, b"", {"X-Message-Id": ids[0] if ids else self.new_id()})

    def _validate(self, body: Any) -> tuple[str, str] | None:
        if not isinstance(body, dict):
            return "Bad Request", ""
        if not isinstance(body.get("from"), dict) or not _valid_address(body["from"].get("email")):
            return "The from object must be provided for every email send.", "from"
        if "reply_to" in body and not (
            isinstance(body["reply_to"], dict) and _valid_address(body["reply_to"].get("email"))
        ):
            return "The reply_to email does not contain a valid address.", "reply_to.email"
        ps = body.get("personalizations")
        if not isinstance(ps, list) or not 1 <= len(ps) <= 1000:
            return "The personalizations field is required and must have at least one.", (
                "personalizations"
            )
        if sum(len(p.get("to", [])) for p in ps) > 1000:
            return "The total number of recipients must be no more than 1000.", "personalizations"
        for i, p in enumerate(ps):
            tos = p.get("to")
            if not isinstance(tos, list) or not tos:
                return "The to array is required for all personalization objects.", (
                    f"personalizations.{i}.to"
                )
            for j, to in enumerate(tos):
                address = to.get("email")
                if not _valid_address(address) or self.rejection(address) == "invalid":
                    return "Does not contain a valid address.", f"personalizations.{i}.to.{j}.email"
            if not (p.get("subject") or body.get("subject")):
                return "The subject is required.", "subject"
        content = body.get("content")
        if not isinstance(content, list) or not content or not all(c.get("value") for c in content):
            return "Unless a valid template_id is provided, the content parameter is required.", (
                "content"
            )
        types = [c.get("type") for c in content]
        if "text/plain" in types and types[0] != "text/plain":
            return "If present, text/plain content must be first.", "content.0.type"
        for k, att in enumerate(body.get("attachments", [])):
            if not att.get("content") or not att.get("filename"):
                return "The attachment content and filename are required.", f"attachments.{k}"
            try:
                base64.b64decode(att["content"], validate=True)
            except ValueError:
                return "The attachment content must be base64 encoded.", f"attachments.{k}.content"
        return None


# ====================================================================== Postmark


class PostmarkFake(FakeServer):
    """Postmark: POST /email and /email/batch (500), GET /server.

    Rejections: "invalid" -> ErrorCode 300; any other reason -> 406 (inactive).
    In a batch each entry gets its own ErrorCode in a 200 answer.
    """

    scheme = "postmark"
    max_batch = 500

    def provider_url(self) -> str:
        return f"postmark://{self.token}"

    def __init__(self, token: str = "pm-fake-token") -> None:
        super().__init__()
        self.token = token

    def unauthorized_reply(self) -> Reply:
        return Reply(
            401, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}
        )

    def throttle_reply(self, retry_after: str | None) -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Reply(429, {"ErrorCode": 429, "Message": "Rate limit exceeded."}, headers)

    def server_error_reply(self, status: int) -> Reply:
        return Reply(status, {"ErrorCode": 0, "Message": "Internal server error"})

    def handle(self, req: Request) -> Reply:
        if req.header("x-postmark-server-token") != self.token:
            return self.unauthorized_reply()
        if "application/json" not in req.header("accept"):
            return Reply(406, {"ErrorCode": 0, "Message": "Accept must be application/json"})
        if req.method == "GET" and req.path == "/server":
            return Reply(200, {"ID": 1, "Name": "Fake Server", "DeliveryType": "Live"})
        if req.method != "POST" or req.path not in ("/email", "/email/batch"):
            return Reply(404, {"ErrorCode": 0, "Message": "Not found"})
        if req.content_type != "application/json":
            return Reply(415, {"ErrorCode": 0, "Message": "Content-Type must be application/json"})
        try:
            body = req.json()
        except ValueError:
            return Reply(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
        if req.path == "/email":
            entry = self._one(body, req)
            return Reply(200 if entry["ErrorCode"] == 0 else 422, entry)
        if not isinstance(body, list) or not body:
            return Reply(422, {"ErrorCode": 402, "Message": "A batch must be a JSON array."})
        if len(body) > self.max_batch:
            return Reply(
                422, {"ErrorCode": 300, "Message": "Batch may contain at most 500 messages."}
            )
        return Reply(200, [self._one(e, req) for e in body])

    def _one(self, entry: Any, req: Request) -> dict[str, Any]:
        def error(code: int, message: str) -> dict[str, Any]:
            return {"ErrorCode": code, "Message": message}

        if not isinstance(entry, dict) or not entry.get("From"):
            return error(300, "Invalid 'From' address: ''.")
        to = entry.get("To") or ""
        if not _valid_address(_bare(to)):
            return error(300, f"Invalid 'To' address: '{to}'.")
        if not (entry.get("HtmlBody") or entry.get("TextBody")):
            return error(300, "Provide either email TextBody or HtmlBody or both.")
        for header in entry.get("Headers", []):
            if set(header) != {"Name", "Value"}:
                return error(300, "Headers must be a list of {Name, Value}.")
        for att in entry.get("Attachments", []):
            if not att.get("Name") or not att.get("ContentType") or "Content" not in att:
                return error(300, "Attachments need Name, Content and ContentType.")
        meta = entry.get("Metadata", {})
        if len(meta) > 10 or any(len(k) > 20 or len(str(v)) > 80 for k, v in meta.items()):
            return error(300, "Metadata: at most 10 fields, names 20 and values 80 characters.")
        address = _bare(to)
        reason = self.rejection(address)
        if reason == "invalid":
            return error(300, f"Invalid 'To' address: '{address}'.")
        if reason:
            return error(
                406,
                "You tried to send to recipient(s) that have been marked as inactive. Found "
                f"inactive addresses: {address}. Inactive recipients are ones that have "
                "generated a hard bounce, a spam complaint, or a manual suppression.",
            )
        mid = str(uuid.uuid4())
        self.record(address, entry, req, message_id=mid)
        return {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": mid,
            "SubmittedAt": "2024-01-01T00:00:00Z",
            "To": to,
        }


# ====================================================================== Resend


_RESEND_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")


class ResendFake(FakeServer):
    """Resend: POST /emails, POST /emails/batch (100, no attachments), GET /domains.

    Honours ``Idempotency-Key`` (same key and body: the first answer again;
    other body: 409) and ``x-batch-validation: permissive`` (per-index errors).
    Rejections: "invalid" -> validation_error for that entry (Resend takes
    suppressed addresses and drops them later, so other reasons do the same).
    """

    scheme = "resend"
    max_batch = 100

    def provider_url(self) -> str:
        return f"resend://{self.key}"

    def __init__(self, key: str = "re_fake_key", domain: str = "x.example") -> None:
        super().__init__()
        self.key = key
        self.domain = domain
        self.idempotency: dict[str, tuple[str, Reply]] = {}
        self.dropped: list[str] = []

    @staticmethod
    def _error(status: int, name: str, message: str) -> Reply:
        return Reply(status, {"statusCode": status, "name": name, "message": message})

    def unauthorized_reply(self) -> Reply:
        return self._error(403, "invalid_api_key", "API key is invalid")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        headers = {"ratelimit-limit": "2", "ratelimit-remaining": "0", "ratelimit-reset": "1"}
        if retry_after is not None:
            headers["retry-after"] = retry_after
        reply = self._error(429, "rate_limit_exceeded", "Too many requests. Slow down.")
        reply.headers = headers
        return reply

    def quota_reply(self) -> Reply:
        """What Resend answers when the day's sending quota is used up."""
        return self._error(
            429, "daily_quota_exceeded", "You have reached your daily email sending quota."
        )

    def server_error_reply(self, status: int) -> Reply:
        return self._error(status, "internal_server_error", "An unexpected error occurred.")

    def handle(self, req: Request) -> Reply:
        auth = req.header("authorization")
        if not auth:
            return self._error(
                401, "missing_api_key", "Missing API key in the authorization header."
            )
        if auth != f"Bearer {self.key}":
            return self.unauthorized_reply()
        if req.method == "GET" and req.path == "/domains":
            return Reply(
                200,
                {
                    "object": "list",
                    "data": [{"id": "d1", "name": self.domain, "status": "verified"}],
                },
            )
        if req.method != "POST" or req.path not in ("/emails", "/emails/batch"):
            return self._error(404, "not_found", "The requested endpoint does not exist.")
        if req.content_type != "application/json":
            return self._error(400, "validation_error", "Content-Type must be application/json.")
        key = req.header("idempotency-key")
        if key:
            if len(key) > 256:
                return self._error(400, "invalid_idempotency_key", "The key must be 1-256 chars.")
            digest = hashlib.sha256(req.path.encode() + req.body).hexdigest()
            if key in self.idempotency:
                seen, reply = self.idempotency[key]
                if seen != digest:
                    return self._error(
                        409, "invalid_idempotent_request", "Same idempotency key, other payload."
                    )
                return reply
        try:
            body = req.json()
        except ValueError:
            return self._error(400, "validation_error", "Invalid JSON.")
        reply = self._batch(body, req) if req.path == "/emails/batch" else self._single(body, req)
        if key and reply.status < 300:
            self.idempotency[key] = (digest, reply)
        return reply

    def _problem(self, entry: Any, batch: bool) -> str | None:
        if not isinstance(entry, dict):
            return "Each email must be an object."
        for name in ("from", "to", "subject"):
            if not entry.get(name):
                return f"Missing `{name}` field."
        tos = entry["to"] if isinstance(entry["to"], list) else [entry["to"]]
        if len(tos) > 50:
            return "Too many recipients in `to`: at most 50."
        for to in tos:
            if not _valid_address(_bare(to)) or self.rejection(_bare(to)) == "invalid":
                return "Invalid `to` field. The email address needs to follow the format."
        if batch and "attachments" in entry:
            return "Attachments are not supported in batch emails."
        for tag in entry.get("tags", []):
            if not _RESEND_TAG.fullmatch(str(tag.get("name", ""))) or not _RESEND_TAG.fullmatch(
                str(tag.get("value", ""))
            ):
                return "Tags should only contain ASCII letters, numbers, underscores, or dashes."
        if not (entry.get("html") or entry.get("text")):
            return "Missing `html` or `text` field."
        return None

    def _accept(self, entry: dict[str, Any], req: Request) -> str:
        mid = str(uuid.uuid4())
        tos = entry["to"] if isinstance(entry["to"], list) else [entry["to"]]
        for to in tos:
            self.record(_bare(to), entry, req, message_id=mid)
        return mid

    def _single(self, body: Any, req: Request) -> Reply:
        problem = self._problem(body, batch=False)
        if problem:
            return self._error(422, "validation_error", problem)
        return Reply(200, {"id": self._accept(body, req)})

    def _batch(self, body: Any, req: Request) -> Reply:
        if not isinstance(body, list) or not body:
            return self._error(422, "validation_error", "The batch must be a non-empty array.")
        if len(body) > self.max_batch:
            return self._error(422, "validation_error", "Batch may contain at most 100 emails.")
        problems = [self._problem(e, batch=True) for e in body]
        permissive = req.header("x-batch-validation").lower() == "permissive"
        if not permissive:
            for i, problem in enumerate(problems):
                if problem:
                    return self._error(422, "validation_error", f"[{i}]: {problem}")
        data = [{"id": self._accept(e, req)} for e, p in zip(body, problems, strict=True) if not p]
        errors = [{"index": i, "message": p} for i, p in enumerate(problems) if p]
        return Reply(200, {"data": data, "errors": errors} if permissive else {"data": data})


# ====================================================================== Amazon SES v2


_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<sig>[0-9a-f]+)"
)


class SESFake(FakeServer):
    """Amazon SES v2 (rest-json): SendEmail with Content.Raw, GetAccount; checks SigV4.

    The signature is recomputed here from the AWS documentation (not with the
    library the adapter uses), so a wrong region, service, key or body fails
    with 403 ``SignatureDoesNotMatch``. Rejections answer 400 MessageRejected.
    """

    scheme = "ses"

    def provider_url(self) -> str:
        key, secret = quote(self.access_key, safe=""), quote(self.secret_key, safe="")
        return f"ses://{key}:{secret}@{self.region}"

    def __init__(
        self,
        access_key: str = "AKIAFAKEFAKEFAKE",
        secret_key: str = "fake/secret+key",
        region: str = "eu-west-1",
        session_token: str | None = None,
    ) -> None:
        super().__init__()
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.session_token = session_token

    @staticmethod
    def _error(status: int, kind: str, message: str) -> Reply:
        return Reply(status, {"message": message}, {"x-amzn-ErrorType": f"{kind}:"})

    def unauthorized_reply(self) -> Reply:
        return self._error(
            403, "UnrecognizedClientException", "The security token included is invalid."
        )

    def throttle_reply(self, retry_after: str | None) -> Reply:
        return self._error(429, "TooManyRequestsException", "Too Many Requests")

    def server_error_reply(self, status: int) -> Reply:
        return self._error(status, "InternalFailure", "Internal failure")

    def _signature_problem(self, req: Request) -> str | None:
        match = _AUTH_RE.fullmatch(req.header("authorization"))
        if not match:
            return "Missing or malformed Authorization header"
        if match["key"] != self.access_key:
            return "The security token included in the request is invalid."
        if match["region"] != self.region or match["service"] != "ses":
            return f"Credential should be scoped to a valid region ({self.region}) and service ses"
        amz_date = req.header("x-amz-date")
        if not amz_date.startswith(match["date"]):
            return "Date in Credential scope does not match x-amz-date"
        if self.session_token and req.header("x-amz-security-token") != self.session_token:
            return "The security token included in the request is invalid."
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return "host and x-amz-date must be signed"
        payload_hash = hashlib.sha256(req.body).hexdigest()
        if req.header("x-amz-content-sha256", payload_hash) != payload_hash:
            return "The provided x-amz-content-sha256 header does not match what was computed."
        canonical_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(req.query.items())
        )
        canonical = "\n".join(
            [
                req.method,
                quote(req.path, safe="/-_.~"),
                canonical_query,
                "".join(f"{h}:{' '.join(req.header(h).split())}\n" for h in signed),
                match["signed"],
                payload_hash,
            ]
        )
        scope = f"{match['date']}/{self.region}/ses/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{self.secret_key}".encode()
        for part in (match["date"], self.region, "ses", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["sig"]):
            return "The request signature we calculated does not match the signature you provided."
        return None

    def handle(self, req: Request) -> Reply:
        problem = self._signature_problem(req)
        if problem:
            return self._error(403, "SignatureDoesNotMatch", problem)
        if req.method == "GET" and req.path == "/v2/email/account":
            return Reply(
                200,
                {
                    "SendingEnabled": True,
                    "ProductionAccessEnabled": True,
                    "EnforcementStatus": "HEALTHY",
                    "SendQuota": {"Max24HourSend": 50000, "MaxSendRate": 14, "SentLast24Hours": 0},
                },
            )
        if req.method != "POST" or req.path != "/v2/email/outbound-emails":
            return self._error(404, "NotFoundException", "Resource not found")
        if req.content_type != "application/json":
            return self._error(400, "BadRequestException", "Content-Type must be JSON")
        try:
            body = req.json()
            raw_b64 = body["Content"]["Raw"]["Data"]
            raw = base64.b64decode(raw_b64, validate=True)
        except (ValueError, KeyError, TypeError):
            return self._error(
                400, "BadRequestException", "Content.Raw.Data must be base64 of the message"
            )
        if b"\r\n\r\n" not in raw or not re.search(rb"(?im)^from:", raw.split(b"\r\n\r\n")[0]):
            return self._error(400, "MessageRejected", "Message must contain headers and a body")
        for tag in body.get("EmailTags", []):
            if not _RESEND_TAG.fullmatch(tag.get("Name", "")) or not _RESEND_TAG.fullmatch(
                tag.get("Value", "")
            ):
                return self._error(400, "BadRequestException", "Invalid message tag")
        tos = body.get("Destination", {}).get("ToAddresses") or []
        if not tos:
            return self._error(400, "BadRequestException", "Missing Destination.ToAddresses")
        for to in tos:
            if self.rejection(_bare(to)):
                return self._error(
                    400,
                    "MessageRejected",
                    f"Email address is not verified. The following identities failed the check "
                    f"in region {self.region.upper()}: {to}",
                )
        mid = f"0100{uuid.uuid4().hex}-000000"
        for to in tos:
            self.record(_bare(to), body, req, raw=raw, message_id=mid)
        return Reply(200, {"MessageId": mid})


# ====================================================================== Mailgun


class MailgunFake(FakeServer):
    """Mailgun: POST /v3/{domain}/messages.mime (multipart), GET /v3/domains/{domain}.

    Rejections: any reason -> 400 "to parameter is not a valid address".
    """

    scheme = "mailgun"

    def provider_url(self) -> str:
        return f"mailgun://{self.key}@{self.domain}"

    def __init__(self, key: str = "key-fakefakefake", domain: str = "mg.x.example") -> None:
        super().__init__()
        self.key = key
        self.domain = domain

    def unauthorized_reply(self) -> Reply:
        return Reply(401, "Forbidden")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        wait = retry_after or "1"
        return Reply(
            429,
            {"message": f"Too many requests. Rate limit exceeded, try again after {wait} seconds"},
        )

    def server_error_reply(self, status: int) -> Reply:
        return Reply(status, {"message": "Internal Server Error"})

    def handle(self, req: Request) -> Reply:
        if _basic(req) != ("api", self.key):
            return self.unauthorized_reply()
        if req.method == "GET" and req.path.startswith("/v3/domains/"):
            name = req.path.removeprefix("/v3/domains/")
            if name != self.domain:
                return Reply(404, {"message": "Domain not found"})
            return Reply(
                200,
                {"domain": {"name": name, "state": "active"}, "sending_dns_records": []},
            )
        match = re.fullmatch(r"/v3/([^/]+)/messages\.mime", req.path)
        if req.method != "POST" or not match:
            return Reply(404, {"message": "Not Found"})
        if match.group(1) != self.domain:
            return Reply(404, {"message": f"Domain not found: {match.group(1)}"})
        if req.content_type != "multipart/form-data":
            return Reply(400, {"message": "Content-Type must be multipart/form-data"})
        try:
            fields, files = parse_form(req)
        except ValueError:
            return Reply(400, {"message": "Bad multipart form"})
        if "message" not in files:
            return Reply(400, {"message": "'message' parameter is missing"})
        tos = fields.get("to", [])
        if not tos:
            return Reply(400, {"message": "'to' parameter is missing"})
        for to in tos:
            if not _valid_address(_bare(to)) or self.rejection(_bare(to)):
                return Reply(
                    400,
                    {"message": "to parameter is not a valid address. please check documentation"},
                )
        mid = f"<{uuid.uuid4().hex}@{self.domain}>"
        for to in tos:
            self.record(_bare(to), dict(fields), req, raw=files["message"][1], message_id=mid)
        return Reply(200, {"id": mid, "message": "Queued. Thank you."})


# ====================================================================== Mailjet


class MailjetFake(FakeServer):
    """Mailjet Send API v3.1: POST /v3.1/send (50 messages), GET /v3/REST/apikey.

    Each message gets its own ``Status``; a batch with any bad message answers
    400 while the good ones are still sent. Rejections: "invalid" -> mj-0013 on
    ``To``; other reasons are accepted (Mailjet blocks them later, as events).
    """

    scheme = "mailjet"
    max_batch = 50

    def provider_url(self) -> str:
        return f"mailjet://{self.public}:{self.private}"

    def __init__(self, public: str = "mjpublic123", private: str = "mjprivate456") -> None:
        super().__init__()
        self.public = public
        self.private = private

    @staticmethod
    def _global(status: int, code: str, message: str) -> Reply:
        return Reply(
            status,
            {
                "ErrorIdentifier": str(uuid.uuid4()),
                "ErrorCode": code,
                "StatusCode": status,
                "ErrorMessage": message,
            },
        )

    def unauthorized_reply(self) -> Reply:
        return self._global(401, "mj-0001", "API key authentication/authorization failure.")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        reply = self._global(429, "mj-0005", "Too many requests")
        if retry_after is not None:
            reply.headers["Retry-After"] = retry_after
        return reply

    def handle(self, req: Request) -> Reply:
        if _basic(req) != (self.public, self.private):
            return self.unauthorized_reply()
        if req.method == "GET" and req.path == "/v3/REST/apikey":
            return Reply(200, {"Count": 1, "Total": 1, "Data": [{"APIKey": self.public}]})
        if req.method != "POST" or req.path != "/v3.1/send":
            return self._global(404, "mj-0000", "Not found")
        if req.content_type != "application/json":
            return self._global(400, "mj-0002", "Content-Type must be application/json")
        try:
            messages = req.json()["Messages"]
        except (ValueError, KeyError, TypeError):
            return self._global(400, "mj-0002", "Malformed JSON: Messages is required")
        if not isinstance(messages, list) or not 1 <= len(messages) <= self.max_batch:
            return self._global(400, "send-0001", "Messages must hold 1 to 50 messages")
        out = [self._one(m, req) for m in messages]
        status = 200 if all(o["Status"] == "success" for o in out) else 400
        return Reply(status, {"Messages": out})

    def _one(self, message: Any, req: Request) -> dict[str, Any]:
        def error(code: str, text: str, related: str) -> dict[str, Any]:
            return {
                "Status": "error",
                "Errors": [
                    {
                        "ErrorIdentifier": str(uuid.uuid4()),
                        "ErrorCode": code,
                        "StatusCode": 400,
                        "ErrorMessage": text,
                        "ErrorRelatedTo": [related],
                    }
                ],
            }

        if not _valid_address((message.get("From") or {}).get("Email")):
            return error("mj-0013", "From.Email is an invalid email address.", "From.Email")
        if "ReplyTo" in message and not _valid_address((message["ReplyTo"] or {}).get("Email")):
            return error("mj-0013", "ReplyTo.Email is an invalid email address.", "ReplyTo.Email")
        tos = message.get("To") or []
        if not tos:
            return error("mj-0003", "At least one recipient is required.", "To")
        for i, to in enumerate(tos):
            address = to.get("Email")
            if not _valid_address(address) or self.rejection(address) == "invalid":
                return error(
                    "mj-0013", f'"{address}" is an invalid email address.', f"To[{i}].Email"
                )
        if not (message.get("HTMLPart") or message.get("TextPart")):
            return error("mj-0015", "Text or HTML part is required.", "HTMLPart")
        for track in ("TrackOpens", "TrackClicks"):
            if message.get(track, "account_default") not in (
                "account_default",
                "disabled",
                "enabled",
            ):
                return error("mj-0008", f"{track} has an invalid value.", track)
        results = []
        for to in tos:
            mid = next(self._ids) + 10**15
            self.record(to["Email"], message, req, message_id=str(mid))
            results.append(
                {"Email": to["Email"], "MessageUUID": str(uuid.uuid4()), "MessageID": mid}
            )
        return {"Status": "success", "To": results}


# ====================================================================== SparkPost


class SparkPostFake(FakeServer):
    """SparkPost: POST /api/v1/transmissions (content.email_rfc822), GET /api/v1/account.

    Rejections: "invalid" -> 400 error code 1200 on the address; other reasons
    -> 200 with ``total_rejected_recipients`` (SparkPost's suppression list).
    """

    scheme = "sparkpost"

    def provider_url(self) -> str:
        return f"sparkpost://{self.key}"

    def __init__(self, key: str = "sp-fake-key") -> None:
        super().__init__()
        self.key = key

    @staticmethod
    def _errors(status: int, message: str, code: str, description: str = "") -> Reply:
        error = {"message": message, "code": code, "description": description}
        return Reply(status, {"errors": [error]})

    def unauthorized_reply(self) -> Reply:
        return self._errors(401, "Unauthorized.", "1000")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        reply = self._errors(429, "Too many requests", "1001")
        if retry_after is not None:
            reply.headers["Retry-After"] = retry_after
        return reply

    def handle(self, req: Request) -> Reply:
        if req.header("authorization") != self.key:
            return self.unauthorized_reply()
        if req.method == "GET" and req.path == "/api/v1/account":
            return Reply(200, {"results": {"company_name": "Fake Co", "status": "active"}})
        if req.method != "POST" or req.path != "/api/v1/transmissions":
            return self._errors(404, "resource not found", "1600")
        if req.content_type != "application/json":
            return self._errors(415, "Unsupported Media Type", "1300")
        try:
            body = req.json()
            raw = body["content"]["email_rfc822"]
            recipients = body["recipients"]
        except (ValueError, KeyError, TypeError):
            return self._errors(422, "required field is missing", "1400", "content or recipients")
        if not isinstance(raw, str) or ("\r\n\r\n" not in raw and "\n\n" not in raw):
            return self._errors(422, "invalid data format/type", "1300", "email_rfc822")
        if len(body.get("campaign_id", "")) > 64:
            return self._errors(422, "invalid data format/type", "1300", "campaign_id > 64 bytes")
        accepted = rejected = 0
        for r in recipients:
            address = (r.get("address") or {}).get("email")
            if not _valid_address(address) or self.rejection(address) == "invalid":
                return self._errors(
                    400, "invalid data format/type", "1200", f"Invalid recipient address {address}"
                )
            if self.rejection(address):
                rejected += 1
                continue
            accepted += 1
        tid = str(next(self._ids) + 10**16)
        for r in recipients:
            if not self.rejection(r["address"]["email"]):
                self.record(r["address"]["email"], body, req, raw=raw.encode(), message_id=tid)
        if accepted == 0:
            return self._errors(
                400,
                "Message generation rejected",
                "1902",
                "recipient address was suppressed due to customer policy",
            )
        return Reply(
            200,
            {
                "results": {
                    "total_rejected_recipients": rejected,
                    "total_accepted_recipients": accepted,
                    "id": tid,
                }
            },
        )


# ====================================================================== Mandrill


_MANDRILL_REASONS = {
    "bounced": "hard-bounce",
    "unsubscribed": "unsub",
    "complaint": "spam",
    "inactive": "hard-bounce",
}


class MandrillFake(FakeServer):
    """Mailchimp Transactional: POST /api/1.0/messages/send-raw, POST /api/1.0/users/ping.

    The key travels inside the JSON body. Account errors answer HTTP 500
    ``{"status": "error", "name": ...}``. Rejections: "invalid" -> status
    ``invalid``; other reasons -> ``rejected`` with Mandrill's reject_reason.
    """

    scheme = "mandrill"

    def provider_url(self) -> str:
        return f"mandrill://{self.key}"

    def __init__(self, key: str = "md-fake-key") -> None:
        super().__init__()
        self.key = key

    @staticmethod
    def _error(name: str, message: str, code: int = -1) -> Reply:
        return Reply(500, {"status": "error", "code": code, "name": name, "message": message})

    def unauthorized_reply(self) -> Reply:
        return self._error("Invalid_Key", "Invalid API key")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return Reply(429, {"status": "error", "name": "Too_Many_Requests"}, headers)

    def server_error_reply(self, status: int) -> Reply:
        return Reply(status if status != 500 else 503, "Service Unavailable")

    def handle(self, req: Request) -> Reply:
        if req.method != "POST":
            return self._error("Unknown_Method", "POST only")
        try:
            body = req.json()
        except ValueError:
            return self._error("ValidationError", "You must specify a key value")
        if not isinstance(body, dict) or body.get("key") != self.key:
            return self.unauthorized_reply()
        if req.path == "/api/1.0/users/ping":
            return Reply(200, "PONG!")
        if req.path != "/api/1.0/messages/send-raw":
            return self._error("Unknown_Method", "unknown method")
        raw = body.get("raw_message")
        if not isinstance(raw, str) or "\r\n\r\n" not in raw:
            return self._error("ValidationError", "raw_message must be a complete message")
        tos = body.get("to")
        if not isinstance(tos, list) or not tos:
            return self._error("ValidationError", "to must be a list of addresses")
        out = []
        for to in tos:
            reason = self.rejection(to)
            if reason == "invalid" or not _valid_address(to):
                out.append({"email": to, "status": "invalid", "_id": self.new_id()})
            elif reason:
                out.append(
                    {
                        "email": to,
                        "status": "rejected",
                        "reject_reason": _MANDRILL_REASONS.get(reason, "custom"),
                        "_id": self.new_id(),
                    }
                )
            else:
                mid = self.record(to, body, req, raw=raw.encode())
                out.append({"email": to, "status": "sent", "reject_reason": None, "_id": mid})
        return Reply(200, out)


# ====================================================================== Brevo


class BrevoFake(FakeServer):
    """Brevo: POST /v3/smtp/email (201 {messageId}), GET /v3/account; header ``api-key``.

    Rejections: "invalid" -> 400 invalid_parameter; other reasons are accepted
    (Brevo blocks them later, as events).
    """

    scheme = "brevo"

    def provider_url(self) -> str:
        return f"brevo://{self.key}"

    def __init__(self, key: str = "xkeysib-fake") -> None:
        super().__init__()
        self.key = key

    @staticmethod
    def _error(status: int, code: str, message: str) -> Reply:
        return Reply(status, {"code": code, "message": message})

    def unauthorized_reply(self) -> Reply:
        return self._error(401, "unauthorized", "Key not found")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        reply = self._error(429, "too_many_requests", "Too many requests")
        reply.headers = {"x-sib-ratelimit-limit": "10", "x-sib-ratelimit-remaining": "0"}
        reply.headers["x-sib-ratelimit-reset"] = retry_after or "1"
        return reply

    def handle(self, req: Request) -> Reply:
        if req.header("api-key") != self.key:
            return self.unauthorized_reply()
        if req.method == "GET" and req.path == "/v3/account":
            return Reply(200, {"email": "owner@x.example", "companyName": "Fake Co", "plan": []})
        if req.method != "POST" or req.path != "/v3/smtp/email":
            return self._error(404, "not_found", "Invalid route")
        if req.content_type != "application/json":
            return self._error(415, "invalid_parameter", "Content-Type must be application/json")
        try:
            body = req.json()
        except ValueError:
            return self._error(400, "bad_request", "Malformed JSON")
        if not _valid_address((body.get("sender") or {}).get("email")):
            return self._error(400, "missing_parameter", "sender is missing")
        if "replyTo" in body and not _valid_address((body["replyTo"] or {}).get("email")):
            return self._error(400, "invalid_parameter", "replyTo email is not valid")
        tos = body.get("to") or []
        if not tos:
            return self._error(400, "missing_parameter", "to is missing")
        for to in tos:
            if not _valid_address(to.get("email")) or self.rejection(to["email"]) == "invalid":
                return self._error(400, "invalid_parameter", "email is not valid in to")
        if not body.get("subject") or not (body.get("htmlContent") or body.get("textContent")):
            return self._error(400, "missing_parameter", "subject and content are required")
        for att in body.get("attachment", []):
            if not att.get("name") or not (att.get("content") or att.get("url")):
                return self._error(400, "invalid_parameter", "attachment needs name and content")
        mid = f"<{uuid.uuid4().hex}@smtp-relay.mailin.fr>"
        for to in tos:
            self.record(to["email"], body, req, message_id=mid)
        return Reply(201, {"messageId": mid})


# ====================================================================== messages


def sample_message(
    recipient: str = "ann@example.com",
    *,
    campaign: str = "november-news",
    attachments: tuple[Attachment, ...] = (),
    html: str = "<p>Hello Ann</p>",
) -> Message:
    """A complete rendered message, as the renderer would give it, for adapter tests."""
    key = recipient.lower()
    message_id = f"<{hashlib.sha256((campaign + key).encode()).hexdigest()[:24]}@acme.example>"
    headers = {
        "List-Unsubscribe": f"<https://acme.example/u?t={key}>, <mailto:unsub@acme.example>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    raw = (
        "From: ACME News <news@acme.example>\r\n"
        f"To: {recipient}\r\n"
        "Subject: November news\r\n"
        f"Message-ID: {message_id}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "Hello Ann\r\n"
    ).encode("ascii")
    return Message(
        campaign=campaign,
        key=key,
        recipient=recipient,
        sender="news@acme.example",
        message_id=message_id,
        from_header="ACME News <news@acme.example>",
        to_header=recipient,
        subject="November news",
        html=html,
        text="Hello Ann",
        raw=raw,
        reply_to="help@acme.example",
        headers=headers,
        attachments=attachments,
        tags={"campaign": campaign, "recipient": key},
    )


def sample_messages(count: int, *, campaign: str = "november-news") -> list[Message]:
    """``count`` messages to user{i}@example.com."""
    return [sample_message(f"user{i}@example.com", campaign=campaign) for i in range(count)]


FAKES: dict[str, Callable[[], FakeServer]] = {
    "sendgrid": SendGridFake,
    "postmark": PostmarkFake,
    "resend": ResendFake,
    "ses": SESFake,
    "mailgun": MailgunFake,
    "mailjet": MailjetFake,
    "sparkpost": SparkPostFake,
    "mandrill": MandrillFake,
    "brevo": BrevoFake,
}


def config_for(fake: FakeServer, **extra: Any) -> ProviderConfig:
    """A ProviderConfig pointing at ``fake`` (short timeouts); ``extra`` adds/overrides keys."""
    data: dict[str, Any] = {
        "url": fake.provider_url(),
        "endpoint": fake.url,
        "timeout": {"connect": 2, "read": 1},
    }
    data.update(extra)
    return ProviderConfig.model_validate(data)


def provider_url(fake: FakeServer) -> str:
    """The provider URL whose credentials match ``fake``."""
    return fake.provider_url()
