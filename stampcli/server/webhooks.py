"""``POST /webhooks/<provider>``: verify, parse, commit, and only then answer 2xx.

One route per provider with a webhook parser (``stampcli.providers.webhook``).
A request goes through, in order:

1. the route must be configured (its secrets in the environment), else 404;
2. the body is read with a cap (413) and a deadline (408);
3. ``parser.verify`` on the raw bytes: forged, unsigned, stale or replayed
   requests get 401 (HTTP Basic providers, with a challenge) or 403, and
   nothing is stored;
4. ``parser.parse``: a body that cannot be read at all gets 400; the bad
   events of a batch are counted, logged and dropped, the good ones kept; a
   request none of whose events is usable gets 400;
5. the events are committed by the store writer; a store failure or a full
   queue answers 503 so the provider retries; 200 comes after the commit.

``POST`` and ``HEAD`` reach :meth:`Webhooks.asgi` straight from the root app (no
Starlette router, middleware or request object: a one-event request is mostly
framework otherwise); other methods reach the Starlette route. Both give the same
answers, from :meth:`Webhooks.answer`.

Verification and parsing of large bodies, and anything that may touch the
network (the SNS certificate fetch, the SubscriptionConfirmation GET), run in
a worker thread, never on the event loop. Logs name the provider, the answer
and counts; never a header, a signature or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from stampcli import redact
from stampcli.errors import StoreError
from stampcli.events.model import ParseResult
from stampcli.providers.webhook import (
    BasicAuthParser,
    WebhookAuthError,
    WebhookParser,
    WebhookPayloadError,
)
from stampcli.server.http import (
    Problem,
    asgi_headers,
    json_response,
    problem_body,
    read_asgi_body,
    read_body,
    send_bytes,
    send_json,
)
from stampcli.server.writer import Overloaded, StoreWriter

log = logging.getLogger("stamp.serve")

MAX_BODY = 5 * 1024 * 1024  # what the issue allows; a SendGrid batch of 1,000 is ~0.6 MB
INLINE_BODY = 64 * 1024  # smaller bodies are verified and parsed on the loop (no thread hop)
SNS_FETCH_TIMEOUT = 5.0  # seconds: SNS waits 15 s for our answer, the cert fetch must fit
SNS_MAX_CERT = 64 * 1024  # a PEM certificate is ~2 KB
SHOWN_REJECTIONS = 3  # rejection reasons written to the log per request
PREFIX = "/webhooks/"

Fetch = Callable[[str], bytes]
Confirm = Callable[[str], None]


def fetch_certificate(url: str) -> bytes:
    """GET an SNS signing certificate (the URL is checked by the verifier first)."""
    return _get(url, SNS_MAX_CERT)


def confirm_subscription(url: str) -> None:
    """GET a SubscriptionConfirmation's SubscribeURL, which confirms it at SNS."""
    _get(url, SNS_MAX_CERT)


def _get(url: str, limit: int) -> bytes:
    data = bytearray()
    with (
        httpx.Client(timeout=SNS_FETCH_TIMEOUT, follow_redirects=False) as client,
        client.stream("GET", url) as answer,
    ):
        answer.raise_for_status()
        for chunk in answer.iter_bytes():
            data += chunk
            if len(data) > limit:
                raise ValueError(f"the answer is more than {limit:,} bytes")
    return bytes(data)


@dataclass(frozen=True, slots=True)
class Route:
    """One configured provider route."""

    label: str
    parser: WebhookParser
    confirm: Confirm = confirm_subscription


class Webhooks:
    """The webhook endpoint: one ``Route`` per configured provider."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        writer: StoreWriter,
        *,
        max_body: int = MAX_BODY,
        missing: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.writer = writer
        self.max_body = max_body
        self.missing = dict(missing or {})

    async def handle(self, request: Request) -> Response:
        """The Starlette route (requests :meth:`asgi` does not take)."""
        label = str(request.path_params.get("provider", ""))
        status, data, headers = await self.answer(
            label,
            request.method,
            lambda: dict(request.headers),
            lambda: read_body(request, self.max_body),
        )
        if data is None:
            return Response(status_code=status)
        return json_response(status, data, headers)

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST|HEAD /webhooks/<provider>`` straight on ASGI: the same answers as
        :meth:`handle`, without Starlette's router, middleware and request and response
        objects (about half the server's time on a one-event request)."""
        label = scope["path"][len(PREFIX) :]
        given = asgi_headers(scope)
        try:
            status, data, headers = await self.answer(
                label,
                scope["method"],
                lambda: given,
                lambda: read_asgi_body(given, receive, self.max_body),
            )
        except Problem as exc:
            await send_json(send, exc.status, problem_body(exc), exc.headers)
            return
        except Exception as exc:  # as the app's last-resort handler: a bare 500, one line
            log.error(
                "%s %s: internal error (%s)", scope["method"], scope["path"], type(exc).__name__
            )
            await send_json(send, 500, {"error": "internal error"})
            return
        if data is None:
            await send_bytes(send, status, b"", {}, media_type=None)
        else:
            await send_json(send, status, data, headers)

    async def answer(
        self,
        label: str,
        method: str,
        headers_of: Callable[[], dict[str, str]],
        read: Callable[[], Awaitable[bytes]],
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON data or None for no body, headers) for one request; a refusal
        raises ``Problem``."""
        route = self.routes.get(label)
        if route is None:
            if label in self.missing:
                names = ", ".join(self.missing[label])
                raise Problem(404, f"the {label} webhook is not configured (set {names})")
            raise Problem(404, "no such webhook")
        if method == "HEAD":  # Mandrill checks the URL with a HEAD before saving it
            return 200, None, {}
        body = await read()
        headers = headers_of()
        try:
            if len(body) > INLINE_BODY or label == "ses":
                result = await run_in_threadpool(_verify_and_parse, route.parser, headers, body)
            else:
                result = _verify_and_parse(route.parser, headers, body)
        except WebhookAuthError as exc:
            log.warning("webhook %s: refused, %s", label, redact.redact(str(exc)))
            if isinstance(route.parser, BasicAuthParser):
                raise Problem(
                    401, str(exc), headers={"WWW-Authenticate": 'Basic realm="stamp"'}
                ) from None
            raise Problem(403, str(exc)) from None
        except WebhookPayloadError as exc:
            log.warning("webhook %s: bad request, %s", label, redact.redact(str(exc)))
            raise Problem(400, str(exc)) from None
        if result.subscribe_url is not None:
            return await self._confirm(route, result)
        _log_rejections(label, result)
        if result.rejected and not result.events and not result.ignored:
            raise Problem(
                400,
                f"no usable event in the request ({len(result.rejected)} rejected: "
                f"{result.rejected[0].reason})",
            )
        if result.events:
            try:
                await self.writer.record(result.events)
            except Overloaded as exc:
                log.warning("webhook %s: 503, %s", label, exc)
                raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None
            except StoreError as exc:
                log.error("webhook %s: 503, store error: %s", label, exc)
                raise Problem(503, "the events could not be stored just now; retry later") from None
        data = {
            "accepted": len(result.events),
            "rejected": len(result.rejected),
            "ignored": result.ignored,
        }
        return 200, data, {}

    async def _confirm(self, route: Route, result: ParseResult) -> tuple[int, Any, dict[str, str]]:
        url = result.subscribe_url or ""
        try:
            await run_in_threadpool(route.confirm, url)
        except Exception as exc:  # network errors, a non-2xx answer: SNS sends it again
            log.error(
                "webhook %s: could not confirm the SNS subscription to %s (%s)",
                route.label,
                result.topic_arn,
                type(exc).__name__,
            )
            raise Problem(502, "the SNS subscription could not be confirmed; retry") from None
        log.info("webhook %s: confirmed the SNS subscription to %s", route.label, result.topic_arn)
        return 200, {"confirmed": result.topic_arn}, {}


def _verify_and_parse(parser: WebhookParser, headers: dict[str, str], body: bytes) -> ParseResult:
    parser.verify(headers, body)
    return parser.parse(headers, body)


def _log_rejections(label: str, result: ParseResult) -> None:
    if not result.rejected:
        return
    shown = "; ".join(r.reason for r in result.rejected[:SHOWN_REJECTIONS])
    more = len(result.rejected) - SHOWN_REJECTIONS
    log.warning(
        "webhook %s: %d of %d events rejected: %s%s",
        label,
        len(result.rejected),
        len(result.rejected) + len(result.events) + result.ignored,
        redact.redact(shown),
        f" (and {more} more)" if more > 0 else "",
    )


def build_routes(
    env: Mapping[str, str],
    *,
    fetch: Fetch = fetch_certificate,
    confirm: Confirm = confirm_subscription,
    ses_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Route], dict[str, list[str]]]:
    """The routes whose secrets ``env`` holds, and for the others the variables missing.

    A parser that refuses its configuration (a SendGrid key that is no public key)
    raises ``WebhookAuthError``: the server does not start on a broken secret.
    """
    from stampcli.providers.webhook import labels, missing_env, parser_class

    routes: dict[str, Route] = {}
    missing: dict[str, list[str]] = {}
    for label in labels():
        lacking = missing_env(label, env)
        if lacking:
            missing[label] = lacking
            continue
        options: dict[str, Any] = {}
        if label == "ses":
            options = {"fetch_certificate": fetch, **(ses_options or {})}
        routes[label] = Route(label, parser_class(label).from_env(env, **options), confirm)
    return routes, missing
