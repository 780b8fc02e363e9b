"""The ``stamp serve`` ASGI application: its routes, its writer, its start-up report.

Routes:

- ``GET /healthz``: 200 ``{"status": "ok"}`` when the store answers (through the
  writer, so a stuck writer is seen too), else 503;
- ``POST /webhooks/<provider>`` (and ``HEAD`` for Mandrill's URL check): see
  :mod:`stampcli.server.webhooks`;
- ``GET|HEAD|POST /unsubscribe`` and ``/``: the one-click unsubscribe receiver
  (:mod:`stampcli.server.unsubscribe`), when a token secret is configured;
- ``GET|HEAD /o/<token>.gif`` and ``/c/<token>``: own open and click tracking
  (:mod:`stampcli.server.tracking`), with the same secret.
- ``/v1/...``: the send API (:mod:`stampcli.server.api`), when ``serve.yml`` is given;
  ``GET /metrics`` (Prometheus), ``GET /openapi.json`` and ``GET /docs`` always.

The send API is a FastAPI app (for its schema and its OpenAPI document); the
webhook, unsubscribe and health routes stay on the Starlette app they ran on,
and :class:`StampApp` hands each request to one or the other by its path, so
FastAPI's middleware never runs for a webhook (``benchmarks/bench_serve.py``).

Every refusal is a short JSON (or, for the unsubscribe pages, HTML) answer;
an unexpected error is a bare 500 and one log line with the error's type,
never a traceback in a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from stampcli.errors import StoreError
from stampcli.server.access import PREFIXES as API_PREFIXES
from stampcli.server.http import Problem, json_response, problem_body
from stampcli.server.metrics import CONTENT_TYPE_LATEST, Metrics
from stampcli.server.tracking import NO_CACHE, TrackingRoutes
from stampcli.server.unsubscribe import UnsubscribeRoute
from stampcli.server.webhooks import MAX_BODY, Webhooks
from stampcli.server.webhooks import PREFIX as WEBHOOK_PREFIX
from stampcli.server.webhooks import Route as WebhookRoute
from stampcli.server.writer import Overloaded, StoreWriter

if TYPE_CHECKING:  # FastAPI is imported only when the send API is on (it costs ~0.4 s)
    from stampcli.server.api import ApiState

log = logging.getLogger("stamp.serve")

HEALTH_KEY = "healthz@stamp.invalid"  # looked up, never written: a cheap indexed read


def create_app(
    writer: StoreWriter,
    routes: Mapping[str, WebhookRoute],
    *,
    missing: Mapping[str, list[str]] | None = None,
    unsubscribe_secret: str | bytes | None = None,
    max_body: int = MAX_BODY,
    clock: Callable[[], float] = time.time,
    api: ApiState | None = None,
    metrics: Metrics | None = None,
) -> StampApp:
    """The application. ``writer`` is started by the app's lifespan and stopped after it;
    with ``api``, its routers are opened, its queue drainer runs, and on shutdown the
    synchronous sends under way finish before the store is closed."""
    metrics = metrics or (api.metrics if api is not None else Metrics())
    webhooks = Webhooks(routes, writer, max_body=max_body, missing=missing)

    async def healthz(request: Request) -> Response:
        try:
            await writer.call(lambda store: store.suppressions.get(HEALTH_KEY))
        except (StoreError, Overloaded) as exc:
            log.error("healthz: the store does not answer (%s)", exc)
            return json_response(503, {"status": "store unavailable"})
        return json_response(200, {"status": "ok"})

    async def no_unsubscribe(request: Request) -> Response:
        raise Problem(404, "the unsubscribe receiver is not configured")

    unsubscribe = (
        UnsubscribeRoute(unsubscribe_secret, writer).handle
        if unsubscribe_secret is not None
        else no_unsubscribe
    )

    async def no_tracking(request: Request) -> Response:
        return Response(b"", status_code=404, headers=NO_CACHE)

    tracking = (
        TrackingRoutes(unsubscribe_secret, writer, clock=clock)
        if unsubscribe_secret is not None
        else None
    )
    any_method = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    app_routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/webhooks/{provider}", webhooks.handle, methods=["POST", "HEAD"]),
        Route("/unsubscribe", unsubscribe, methods=any_method),
        Route("/", unsubscribe, methods=any_method),
        Route("/o/{token}", tracking.open if tracking else no_tracking, methods=["GET", "HEAD"]),
        Route("/c/{token}", tracking.click if tracking else no_tracking, methods=["GET", "HEAD"]),
    ]

    async def metrics_route(request: Request) -> Response:
        if api is not None:
            try:
                counts = await writer.call(lambda store: store.api_queue.counts())
                metrics.set_queue(counts)
            except (StoreError, Overloaded):
                pass  # the scrape still answers; the depth keeps its last value
            for pool, router in api.sender.routers.items():
                for st in router.states():
                    metrics.set_breaker(pool, st.name, st.state)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.start()
        try:
            if api is None:
                yield
                return
            from stampcli.service.api_send import QueueDrainer

            async with api.sender:
                api.drainer = QueueDrainer(
                    api.call, api.sender, lease=api.config.lease, busy=api.busy
                )
                api.drainer.start()
                watch = _watch_config(api)
                relay = await _start_relay(api)
                try:
                    yield
                finally:
                    if watch is not None:
                        await watch.stop()
                    if relay is not None:
                        relay.close()  # no new submissions; those in DATA finish
                    await api.drainer.stop()  # the send under way ends; the rest stays queued
                    if api.inflight:  # synchronous requests' sends finish
                        await asyncio.gather(*api.inflight, return_exceptions=True)
        finally:
            writer.stop()

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return json_response(exc.status, problem_body(exc), headers=exc.headers)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return json_response(exc.status_code, {"error": exc.detail}, headers=exc.headers)

    async def on_error(request: Request, exc: Exception) -> Response:
        log.error(
            "%s %s: internal error (%s)", request.method, request.url.path, type(exc).__name__
        )
        return json_response(500, {"error": "internal error"})

    exception_handlers: dict[Any, Any] = {
        Problem: on_problem,
        HTTPException: on_http,
        Exception: on_error,
    }
    metrics_routes = [Route("/metrics", metrics_route, methods=["GET"], include_in_schema=False)]
    if api is None:  # no send API: no FastAPI; /metrics on the one app
        app_routes += metrics_routes
    base = Starlette(routes=app_routes, lifespan=lifespan, exception_handlers=exception_handlers)
    if api is None:
        return StampApp(base, None, webhooks=webhooks)
    from stampcli.server.api import FAST_PATHS, build_fast, build_front

    fast = build_fast(api, metrics, api.config.max_body)  # makes api.router
    front = build_front(api, metrics, exception_handlers, metrics_routes, api.config.max_body)
    return StampApp(base, front, fast, FAST_PATHS, webhooks)


class StampApp:
    """The root ASGI app: ``/v1``, ``/metrics``, ``/docs`` and ``/openapi.json`` go to the
    FastAPI app, everything else (and the lifespan) to the Starlette app the webhook,
    unsubscribe and health routes always ran on. One prefix test per request: FastAPI's
    own middleware (telemetry, body limit, exit stack) is not in the webhooks' way.
    ``fast``: the app of the hot ``POST`` routes in ``fast_paths`` (api.build_fast).

    ``POST`` and ``HEAD`` of ``/webhooks/<provider>`` skip Starlette too: they go
    straight to :meth:`Webhooks.asgi` (the same answers as its Starlette route, which
    still takes every other method, for the 405 answer)."""

    def __init__(
        self,
        base: Starlette,
        front: Any,
        fast: ASGIApp | None = None,
        fast_paths: frozenset[str] = frozenset(),
        webhooks: Webhooks | None = None,
    ) -> None:
        self.base = base
        self.front = front
        self.fast = fast
        self.fast_paths = fast_paths
        self.webhooks = webhooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if (
                self.webhooks is not None
                and path.startswith(WEBHOOK_PREFIX)
                and scope["method"] in ("POST", "HEAD")
                and "/" not in path[len(WEBHOOK_PREFIX) :]
                and len(path) > len(WEBHOOK_PREFIX)
            ):
                await self.webhooks.asgi(scope, receive, send)
                return
            if self.front is not None and path.startswith(API_PREFIXES):
                if self.fast is not None and scope["method"] == "POST" and path in self.fast_paths:
                    await self.fast(scope, receive, send)
                else:
                    await self.front(scope, receive, send)
                return
        await self.base(scope, receive, send)


def _watch_config(api: ApiState) -> Any:
    """serve.yml reloaded when it changes on disk (besides SIGHUP), if it is a file."""
    if api.reload is None or not api.config.reload_every or not api.config.path.is_file():
        return None
    from stampcli.server.config_watch import ConfigWatch

    watch = ConfigWatch(api.config.path, api.reload, every=api.config.reload_every)
    watch.start()
    return watch


async def _start_relay(api: ApiState) -> asyncio.Server | None:
    """The SMTP relay on the app's own loop (it shares the app's keys, queue and sender)."""
    if api.relay is None:
        return None
    from stampcli.server.smtp_relay import make_protocol

    relay = api.relay
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: make_protocol(api, relay), relay.host, relay.port, reuse_address=True
    )
    api.relay_port = server.sockets[0].getsockname()[1]
    log.info("SMTP relay listening on %s:%d", relay.host, api.relay_port)
    return server
