"""The base of every HTTP provider adapter: clients, timeouts and the common classification.

The one base of nine HTTP adapters: client set-up, timeouts, the answer
classification and the JSON helpers several providers share.

A provider module only says how to *build* the request for a batch of messages
(:meth:`HTTPAdapter.build_send`) and how to *parse* the provider's answer into
one :class:`Result` per message (:meth:`HTTPAdapter.parse_send`); this module
does everything in between, the same way for every provider:

* connect error, connect timeout, TLS failure, write failure -> PROVIDER_DOWN
  (the request never fully left, so nobody can have been mailed);
* read timeout, connection reset or closed after the request was sent -> UNKNOWN;
* 5xx -> PROVIDER_DOWN, 401/403 -> PROVIDER_REFUSED, 429 -> THROTTLED with the
  wait from ``Retry-After``, ``X-RateLimit-Reset`` or ``ratelimit-reset``;
* a 2xx whose body cannot be parsed -> UNKNOWN (the provider may have taken it).

Clients: httpx's connection pool gets slower as one client holds many
connections, so an adapter keeps a small set of ``AsyncClient`` objects with a
few connections each and hands every request to the least busy one. They share
one SSL context (building one per client costs milliseconds and memory).

The send path hands its request straight to the client's transport when the
adapter needs no httpx ``Auth`` flow: ``AsyncClient.request`` spends about a
third of httpx's CPU per call on things a provider call never uses (cookies,
redirects, event hooks, merging the base URL and headers anew), measured at
0.87 against 0.59 ms a request on loopback. Errors, timeouts and pooling are
still httpx's own.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.utils
import functools
import hashlib
import json
import math
import re
import ssl
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import orjson

from stampcli.config import ProviderConfig, ProviderURL, TrackingConfig
from stampcli.providers.base import Adapter, CheckReport, CheckStep, Outcome, Result
from stampcli.redact import redact
from stampcli.render.message import Message
from stampcli.transport.netstream import use_asyncio_backend

if TYPE_CHECKING:
    from stampcli.render.dkim import DkimSigner

# Connections per AsyncClient. Measured against a local fake at concurrency 100
# (client CPU per message): 1 or 4 connections per client ~1.1 ms, one client
# holding all 100 connections ~6 ms, as httpx's pool scans its connections on
# every request. One per client keeps the cost flat at any concurrency.
CONNECTIONS_PER_CLIENT = 1
_DETAIL_MAX = 300  # characters of a provider's answer kept in Result.detail
_EPOCH_CUTOFF = 1_000_000_000  # a reset value above this is a Unix time, below it seconds


class ProviderSetupError(Exception):
    """The adapter cannot build a request (no credentials, bad option): refuses, never raises."""


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request an adapter wants made; the base adds auth, timeouts and the base URL."""

    method: str
    path: str  # joined to the base URL
    json: Any = None
    content: bytes | None = None
    data: Mapping[str, str | list[str]] | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


def encode_json(call: Call) -> Call:
    """``call`` with its JSON body encoded to bytes, as httpx would but ~10x faster."""
    if call.json is None:
        return call
    headers = {"Content-Type": "application/json", **call.headers}
    return dataclasses.replace(call, json=None, content=orjson.dumps(call.json), headers=headers)


class CheckProblem(Exception):
    """Raised by ``check_detail`` when the key works but cannot send (scope, paused account)."""


class BadAnswer(ValueError):
    """The provider's answer does not have the documented shape."""


def short(text: str) -> str:
    """``text`` on one line, at most a few hundred characters, secrets replaced."""
    one_line = " ".join(text.split())
    if len(one_line) > _DETAIL_MAX:
        one_line = one_line[: _DETAIL_MAX - 3] + "..."
    return redact(one_line)


def body_json(response: httpx.Response) -> Any:
    """The decoded JSON body, or BadAnswer."""
    try:
        return orjson.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise BadAnswer(f"the answer is not JSON: {response.text[:80]!r}") from exc


def error_text(response: httpx.Response) -> str:
    """A short human text for an error answer: its JSON message when it has one."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return short(response.text) or response.reason_phrase
    return short(_message_of(data) or response.text)


def _message_of(data: Any) -> str:
    """The message of the usual JSON error shapes ({message}, {errors: [{message}]}, ...)."""
    if isinstance(data, dict):
        for key in ("message", "Message", "ErrorMessage", "error", "detail", "description"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
        errors = data.get("errors") or data.get("Errors")
        if isinstance(errors, list) and errors:
            return "; ".join(_message_of(e) or str(e) for e in errors[:3])
    if isinstance(data, str):
        return data
    return ""


def parse_wait(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After``/``*-Reset`` value: seconds, Unix time or HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    now = time.time() if now is None else now
    try:
        number = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(number) or number < 0:
        return None
    # X-RateLimit-Reset is a Unix time at SendGrid and seconds elsewhere: a value
    # past 2001-09-09 can only be a timestamp.
    if number > _EPOCH_CUTOFF:
        return max(0.0, number - now)
    return number


def wait_from_headers(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """The wait a 429 asks for, from the standard and the common vendor headers."""
    for name in ("retry-after", "x-ratelimit-reset", "ratelimit-reset", "x-sib-ratelimit-reset"):
        wait = parse_wait(headers.get(name), now=now)
        if wait is not None:
            return wait
    return None


_TRY_AGAIN_RE = re.compile(
    r"(?:try again|retry)\s+(?:after|in)\s+(\d+(?:\.\d+)?)\s*"
    r"(ms|milliseconds?|s|sec|seconds?|m|min|minutes?)?",
    re.IGNORECASE,
)


def wait_from_text(text: str) -> float | None:
    """A wait named in prose, as Mailgun does: "... try again after 20 seconds"."""
    match = _TRY_AGAIN_RE.search(text)
    if not match:
        return None
    number = float(match.group(1))
    unit = (match.group(2) or "s").lower()
    if unit.startswith("ms") or unit.startswith("milli"):
        return number / 1000
    if unit.startswith("m"):
        return number * 60
    return number


_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


@functools.lru_cache(maxsize=1024)
def _display_name(header: str) -> str:
    return email.utils.parseaddr(header)[0]


_BARE_ADDRESS = re.compile(r'[^\s<>()",;:\\\[\]]+')


def json_html(message: Message) -> str | orjson.Fragment:
    """The message's HTML for a JSON body: the renderer's JSON literal where it made one.

    Encoding 500 messages' HTML was most of the send loop's work for a batch; the
    renderer builds the literal from escapes it caches per template instead.
    """
    return message.html if message.html_json is None else orjson.Fragment(message.html_json)


def has_html(message: Message) -> bool:
    """False for a text template's message (text/plain only: its ``html`` is empty)."""
    return message.html_json is not None or bool(message.html)


def json_text(message: Message) -> str | orjson.Fragment:
    """The message's text for a JSON body, as :func:`json_html`."""
    return message.text if message.text_json is None else orjson.Fragment(message.text_json)


def display_name(header: str | None) -> str:
    """``parseaddr(header)[0]`` (what ``Message.from_name`` gives), without its ~25 us a call.

    A bare address (no space, angle bracket, comment or quote) has no display name;
    other headers repeat (From on every message of a campaign) and are cached.
    """
    if not header or _BARE_ADDRESS.fullmatch(header):
        return ""
    return _display_name(header)


def mailbox(name: str, address: str) -> str:
    """``Name <address>`` for JSON APIs (UTF-8 names as they are; quoted when needed)."""
    if not name:
        return address
    if _SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_TAG_SAFE = re.compile(r"[A-Za-z0-9-]")
_TAG_MAX = 256


def tag_value(value: str) -> str:
    """``value`` made safe for tag APIs that allow only ``[A-Za-z0-9_-]`` (SES, Resend).

    Reversible (see :func:`untag_value`): every other byte becomes ``_XX`` (hex),
    so ``ann@x.example`` is ``ann_40x_2Eexample``. A result longer than the 256
    characters those APIs allow becomes ``sha256-`` and the hex digest of ``value``.
    """
    out = []
    for char in value:
        if _TAG_SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"_{b:02X}" for b in char.encode())
    encoded = "".join(out)
    if len(encoded) > _TAG_MAX:
        return "sha256-" + hashlib.sha256(value.encode()).hexdigest()
    return encoded


def untag_value(encoded: str) -> str:
    """The value :func:`tag_value` encoded (the hashed form cannot be reversed; returned as is)."""
    if encoded.startswith("sha256-"):
        return encoded
    raw = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "_" and i + 3 <= len(encoded):
            raw.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(encoded[i].encode())
            i += 1
    return raw.decode()


def transport_result(exc: Exception) -> Result:
    """Classify a failure that happened before a complete answer arrived."""
    name = type(exc).__name__
    text = short(str(exc)) or name
    if isinstance(exc, httpx.ReadTimeout):
        return Result(Outcome.UNKNOWN, detail=f"no answer within the read timeout ({name})")
    if isinstance(
        exc,
        httpx.ConnectError
        | httpx.ConnectTimeout
        | httpx.PoolTimeout
        | httpx.WriteError
        | httpx.WriteTimeout
        | httpx.ProxyError
        | httpx.UnsupportedProtocol
        | ssl.SSLError,
    ):
        # The request never left completely: no provider can have accepted it.
        return Result(Outcome.PROVIDER_DOWN, detail=f"cannot reach the provider: {name}: {text}")
    # ReadError, RemoteProtocolError, and anything else after the request went out.
    return Result(
        Outcome.UNKNOWN, detail=f"connection lost after the request was sent: {name}: {text}"
    )


def status_result(response: httpx.Response, detail: str | None = None) -> Result:
    """The common classification of a non-2xx answer."""
    code = response.status_code
    text = detail if detail is not None else error_text(response)
    if code >= 500 or code == 408:  # 408: the server gave up waiting for our request
        return Result(Outcome.PROVIDER_DOWN, detail=f"HTTP {code}: {text}")
    if code in (401, 403):
        return Result(Outcome.PROVIDER_REFUSED, detail=f"HTTP {code}: {text}")
    if code == 429:
        wait = wait_from_headers(response.headers)
        if wait is None:
            wait = wait_from_text(text)
        return Result(Outcome.THROTTLED, detail=f"HTTP 429: {text}", retry_after=wait)
    # Any other 4xx names a problem with our request: the same request would fail
    # for every recipient, so it is the provider refusing us, not the recipient.
    return Result(Outcome.PROVIDER_REFUSED, detail=f"HTTP {code}: {text}")


class HTTPAdapter(Adapter):
    """Base of the HTTP API adapters: subclasses build calls and parse answers."""

    base_url: ClassVar[str]  # e.g. "https://api.sendgrid.com"
    regional_urls: ClassVar[Mapping[str, str]] = {}  # ?region=eu -> base URL
    check_name: ClassVar[str] = ""  # the step name shown by `stamp providers check`
    connections_per_client: ClassVar[int] = CONNECTIONS_PER_CLIENT

    def __init__(
        self,
        config: ProviderConfig,
        *,
        tracking: TrackingConfig | None = None,
        dkim: DkimSigner | None = None,
    ):
        super().__init__(config, tracking=tracking, dkim=dkim)
        self._clients: list[httpx.AsyncClient] = []
        self._transports: list[httpx.AsyncHTTPTransport] = []
        self._busy: list[int] = []
        self._urls: dict[str, httpx.URL] = {}
        self._headers: list[tuple[str, str]] = []
        self._extensions: dict[str, Any] = {}
        self._direct = False

    # ------------------------------------------------------------------ class-level hooks
    # Where the API is and how to authenticate, from the configuration alone: the
    # adapter's clients and the suppression pull (stampcli.providers.pull) both use
    # these, so a provider's base URL, auth and key header are written once.

    @classmethod
    def endpoint_for(cls, config: ProviderConfig) -> str:
        """The base URL: the config's ``endpoint`` override, else the region's, else the default."""
        if config.endpoint:
            return config.endpoint.rstrip("/")
        region = config.parsed.options.get("region", "").lower()
        if region and region in cls.regional_urls:
            return cls.regional_urls[region]
        return cls.base_url

    @classmethod
    def auth_for(cls, url: ProviderURL) -> httpx.Auth | None:
        """The httpx auth for every request (None when headers or body carry the key).

        Raises :class:`ProviderSetupError` when the URL lacks what the auth needs.
        """
        return None

    @classmethod
    def headers_for(cls, url: ProviderURL) -> dict[str, str]:
        """Headers sent with every request (the API key header, Accept)."""
        return {"Accept": "application/json"}

    # ------------------------------------------------------------------ hooks

    def auth(self) -> httpx.Auth | None:
        """This adapter's auth (:meth:`auth_for` unless the adapter keeps state, as SES)."""
        return self.auth_for(self.url)

    def default_headers(self) -> dict[str, str]:
        return self.headers_for(self.url)

    @abstractmethod
    def build_send(self, batch: Sequence[Message]) -> Call:
        """The one request that sends ``batch`` (at most ``max_batch`` messages)."""

    @abstractmethod
    def parse_send(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        """One Result per message of ``batch`` from the provider's answer.

        May raise :class:`BadAnswer` (or KeyError/TypeError/ValueError) for an
        answer without the documented shape: the base turns that into UNKNOWN
        for a 2xx and into the common classification otherwise.
        """

    @abstractmethod
    def check_call(self) -> Call:
        """An authenticated read-only request proving the key works."""

    def check_detail(self, response: httpx.Response) -> str:
        """What a successful check answer says (account name, quota, ...).

        Raises :class:`CheckProblem` when the answer shows the account cannot send.
        """
        return f"HTTP {response.status_code}"

    def check_failure(self, response: httpx.Response) -> CheckStep | None:
        """A provider-specific reading of a failed check answer (None: the common one)."""
        return None

    # ------------------------------------------------------------------ plumbing

    @property
    def endpoint(self) -> str:
        """The base URL this adapter sends to (:meth:`endpoint_for` its config)."""
        return self.endpoint_for(self.config)

    def _timeout(self) -> httpx.Timeout:
        t = self.config.timeout
        # Waiting for a free pooled connection is bounded by the engine's
        # concurrency and by the read timeout of the requests ahead: no pool limit.
        return httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=None)

    def _make_clients(self) -> None:
        per = max(1, self.connections_per_client)
        count = max(1, math.ceil(self.config.concurrency / per))
        # httpx builds an SSL context per client even for http:// (~50 ms each): share one.
        verify = _shared_ssl_context()
        limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
        auth = self.auth()
        timeout = self._timeout()
        self._transports = [
            httpx.AsyncHTTPTransport(verify=verify, limits=limits) for _ in range(count)
        ]
        for transport in self._transports:
            use_asyncio_backend(transport)
        self._clients = [
            httpx.AsyncClient(
                base_url=self.endpoint,
                auth=auth,
                headers=self.default_headers(),
                timeout=timeout,
                transport=transport,
                follow_redirects=False,
            )
            for transport in self._transports
        ]
        self._busy = [0] * count
        # What AsyncClient.request would add to every request, worked out once.
        self._direct = auth is None
        self._headers = list(self._clients[0].headers.multi_items())
        self._extensions = {"timeout": timeout.as_dict()}
        self._urls = {}

    async def open(self) -> None:
        if not self._clients:
            try:
                self._make_clients()
            except ProviderSetupError:
                # Reported by send()/check() as a refusal; open() must not raise.
                self._clients = []

    async def close(self) -> None:
        clients, self._clients, self._busy = self._clients, [], []
        self._transports = []
        for client in clients:
            with contextlib.suppress(Exception):  # closing must never raise
                await client.aclose()

    async def request(self, call: Call) -> httpx.Response:
        """Make ``call`` on the least busy client; raises httpx errors."""
        if not self._clients:
            self._make_clients()
        index = min(range(len(self._busy)), key=self._busy.__getitem__)
        client = self._clients[index]
        self._busy[index] += 1
        call = encode_json(call)  # raises TypeError for what JSON cannot hold
        try:
            if self._direct:
                return await self._direct_request(self._transports[index], call)
            return await client.request(
                call.method,
                call.path,
                content=call.content,
                data=call.data,
                files=call.files,
                headers=call.headers or None,
            )
        finally:
            if index < len(self._busy) and self._clients[index] is client:
                self._busy[index] -= 1

    async def _direct_request(
        self, transport: httpx.AsyncHTTPTransport, call: Call
    ) -> httpx.Response:
        """``call`` on ``transport`` itself: ``AsyncClient.request`` without its overhead."""
        url = self._urls.get(call.path)
        if url is None:
            url = self._urls[call.path] = self._clients[0].build_request("GET", call.path).url
        headers: list[tuple[str, str]] | httpx.Headers = self._headers
        if call.headers:  # a call's own header replaces a default of the same name
            headers = httpx.Headers(self._headers)
            headers.update(call.headers)
        request = httpx.Request(
            call.method,
            url,
            content=call.content,
            data=call.data,
            files=call.files,
            headers=headers,
            extensions=dict(self._extensions),
        )
        response = await transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    # ------------------------------------------------------------------ the contract

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        results: list[Result] = []
        for start in range(0, len(messages), self.max_batch):
            results.extend(await self._send_batch(messages[start : start + self.max_batch]))
        return results

    async def _send_batch(self, batch: Sequence[Message]) -> list[Result]:
        try:
            call = encode_json(self.build_send(batch))
        except TypeError as exc:  # e.g. a lone surrogate in a field: no provider can take it
            detail = short(f"the message cannot be encoded as JSON: {exc}")
            return [Result(Outcome.RECIPIENT_REJECTED, detail=detail)] * len(batch)
        except ProviderSetupError as exc:
            return [Result(Outcome.PROVIDER_REFUSED, detail=short(str(exc)))] * len(batch)
        try:
            response = await self.request(call)
        except ProviderSetupError as exc:
            return [Result(Outcome.PROVIDER_REFUSED, detail=short(str(exc)))] * len(batch)
        except Exception as exc:
            # httpx and OS errors, or an unexpected library error: classify, never raise.
            return [transport_result(exc)] * len(batch)
        return self._parse(response, batch)

    def _parse(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        try:
            results = self.parse_send(response, batch)
            if len(results) != len(batch):
                raise BadAnswer(f"{len(results)} results for {len(batch)} messages")
            return results
        except (BadAnswer, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            if response.is_success:
                detail = short(
                    f"HTTP {response.status_code} but the answer cannot be read ({exc}); "
                    "the provider may have accepted the message"
                )
                return [Result(Outcome.UNKNOWN, detail=detail)] * len(batch)
            return [status_result(response)] * len(batch)

    async def check(self) -> CheckReport:
        try:
            call = self.check_call()
        except ProviderSetupError as exc:
            step = CheckStep("credentials", False, short(str(exc)))
            return CheckReport(self.name, False, [step], step.detail)
        name = self.check_name or call.label
        try:
            response = await self.request(call)
        except Exception as exc:
            result = transport_result(exc)
            step = CheckStep(name, False, result.detail)
            return CheckReport(self.name, False, [step], step.detail)
        if response.is_success:
            try:
                step = CheckStep(name, True, short(self.check_detail(response)))
            except CheckProblem as exc:
                step = CheckStep(name, False, short(str(exc)))
            except (BadAnswer, KeyError, TypeError, ValueError, IndexError) as exc:
                detail = short(f"HTTP {response.status_code}, unexpected answer: {exc}")
                step = CheckStep(name, True, detail)
        else:
            step = self.check_failure(response) or CheckStep(
                name, False, status_result(response).detail
            )
        return CheckReport(self.name, step.ok, [step], step.detail)

    # ------------------------------------------------------------------ helpers for subclasses

    def accepted(self, message_id: str | None, detail: str = "") -> Result:
        return Result(Outcome.ACCEPTED, message_id=message_id or None, detail=short(detail))


_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every client (httpx's default trust store)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context
