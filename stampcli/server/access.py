"""Around the send API (``/v1``, ``/metrics``, ``/docs``): a body cap and JSON access logs.

A pure ASGI middleware, so that the webhook and unsubscribe routes pay one
string comparison for it and nothing else. For the API paths it

* refuses a body over ``max_body`` bytes with 413 (by Content-Length at once,
  else while it streams in), and one that arrives too slowly with 408;
* logs one JSON line per request to the ``stamp.access`` logger: time, method,
  path (never the query string), route, status, milliseconds, pool, client
  address; never a header, a key or a body;
* counts the request in the metrics, and in ``load`` while it is under way (the
  background sender gives way to a saturated server).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from stampcli.server.http import BODY_DEADLINE, READ_TIMEOUT
from stampcli.server.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("stamp.access")
PREFIXES = ("/v1", "/metrics", "/docs", "/openapi.json")


class BodyRefused(Exception):
    """Raised out of ``receive`` to the guard, which answers it (not a handler's to catch)."""


class _TooBig(BodyRefused):
    pass


class _TooSlow(BodyRefused):
    pass


class Load:
    """How many API requests are under way now (read on the loop's thread only)."""

    def __init__(self) -> None:
        self.inflight = 0


class ApiGuard:
    def __init__(
        self, app: ASGIApp, *, max_body: int, metrics: Metrics, load: Load | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.load = load or Load()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [0]
        scope.setdefault("state", {})
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            await _answer(send, 413, f"the body is {length:,} bytes, more than {self.max_body:,}")
            self._log(scope, 413, start)
            return
        size = 0
        deadline = time.monotonic() + BODY_DEADLINE

        async def limited() -> Message:
            nonlocal size
            room = min(READ_TIMEOUT, deadline - time.monotonic())
            try:
                # asyncio.timeout, not wait_for: no task per read (a body usually is there)
                async with asyncio.timeout(max(room, 0.001)):
                    message = await receive()
            except TimeoutError:
                raise _TooSlow from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.max_body:
                    raise _TooBig
            return message

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.load.inflight += 1
        try:
            await self.app(scope, limited, watched)
        except _TooBig:
            if not status[0]:
                await _answer(send, 413, f"the body is more than {self.max_body:,} bytes")
                status[0] = 413
        except _TooSlow:
            if not status[0]:
                await _answer(send, 408, "the body arrived too slowly")
                status[0] = 408
        finally:
            self.load.inflight -= 1
            self._log(scope, status[0] or 500, start)

    def _log(self, scope: Scope, status: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        route = scope.get("route")
        template = getattr(route, "path", None) or "(none)"
        self.metrics.requests.labels(template, str(status)).inc()
        self.metrics.latency.labels(template).observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client") or ("", 0)
            access_log.info(
                json.dumps(
                    {
                        "ts": round(time.time(), 3),
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": template,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "pool": scope["state"].get("pool"),
                        "client": client[0],
                    },
                    separators=(",", ":"),
                )
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
