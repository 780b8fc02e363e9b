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

Every refusal is a short JSON (or, for the unsubscribe pages, HTML) answer;
an unexpected error is a bare 500 and one log line with the error's type,
never a traceback in a response.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stampcli.errors import StoreError
from stampcli.server.http import Problem, json_response, problem_response
from stampcli.server.tracking import NO_CACHE, TrackingRoutes
from stampcli.server.unsubscribe import UnsubscribeRoute
from stampcli.server.webhooks import MAX_BODY, Webhooks
from stampcli.server.webhooks import Route as WebhookRoute
from stampcli.server.writer import Overloaded, StoreWriter

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
) -> Starlette:
    """The application. ``writer`` is started by the app's lifespan and stopped after it."""
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
    app_routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/webhooks/{provider}", webhooks.handle, methods=["POST", "HEAD"]),
        Route("/unsubscribe", unsubscribe, methods=any_method),
        Route("/", unsubscribe, methods=any_method),
        Route("/o/{token}", tracking.open if tracking else no_tracking, methods=["GET", "HEAD"]),
        Route("/c/{token}", tracking.click if tracking else no_tracking, methods=["GET", "HEAD"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.start()
        try:
            yield
        finally:
            writer.stop()

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return json_response(exc.status_code, {"error": exc.detail}, headers=exc.headers)

    async def on_error(request: Request, exc: Exception) -> Response:
        log.error(
            "%s %s: internal error (%s)", request.method, request.url.path, type(exc).__name__
        )
        return json_response(500, {"error": "internal error"})

    return Starlette(
        routes=app_routes,
        lifespan=lifespan,
        exception_handlers={Problem: on_problem, HTTPException: on_http, Exception: on_error},
    )
