"""The HTTP send API (``/v1``): FastAPI routes over :mod:`stampcli.service.api_send`.

(No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations,
which name dependencies made inside :func:`build_router`.)

=====================================  ============================================
``POST /v1/messages``                  one message; ``?wait=true`` (default): sent
                                       in the request, 200 with the provider, its
                                       message id and the attempts; ``wait=false``:
                                       202 with the id, sent from the queue
``POST /v1/messages/batch``            up to 500 (``wait=false`` by default)
``GET /v1/messages/{id}``              state, per-recipient answers, delivery events
``GET /v1/pools``, ``/v1/providers``   the admin key only: pools, provider health
=====================================  ============================================

Keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (unknown: 401). The
From domain must be one of the pool's (403); a pool over its rate answers 429
with Retry-After, over its daily quota 429 until midnight UTC; a suppressed
recipient 422 naming it and why; every schema violation 422 with the field path.
``Idempotency-Key``: the same key (per pool, 24 h) answers as the first request
did and never queues again; reused with another body it is refused (422).

The two POST routes read their own request (:func:`authorize`, :func:`post_params`,
:func:`read_body`) and the root app calls them past FastAPI's layers
(:func:`build_fast`); their messages are queued in group commits
(``StoreWriter.batch`` over :func:`stampcli.service.api_send.queue_many`).
"""

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from stampcli.errors import StampError, StoreError
from stampcli.sendapi.compose import ComposeError
from stampcli.sendapi.config import ServeConfig
from stampcli.sendapi.keys import KeyRing
from stampcli.sendapi.model import (
    BatchIn,
    BatchOut,
    MessageIn,
    MessageOut,
    ProblemOut,
)
from stampcli.server.access import Load
from stampcli.server.http import Problem, Problem422
from stampcli.server.metrics import Metrics
from stampcli.server.writer import Overloaded, StoreWriter
from stampcli.service import api_send
from stampcli.service.api_send import ApiSender, QueueDrainer

log = logging.getLogger("stamp.api")
MAX_KEY = 64  # characters of an Idempotency-Key
POLL = 0.05  # seconds between looks at a replayed message still being sent
# requests under way at once (HTTP ones from their first byte in the app to the answer)
# from which the background sender gives way to them (see QueueDrainer): at a few
# hundred a second a request is under way for a few ms, so this many at once means the
# server is saturated, and every CPU ms the drainer takes then is one the queue's
# ingest does not get
BUSY = 16


@dataclass
class ApiState:
    """What the routes share: the config and keys (replaced on SIGHUP), the sender."""

    config: ServeConfig
    keys: KeyRing
    writer: StoreWriter
    sender: ApiSender
    metrics: Metrics
    drainer: QueueDrainer | None = None
    sync_owner: str = field(default_factory=lambda: api_send.owner_name("sync"))
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    relay: Any = None  # smtp_relay.RelayConfig: started with the app when set
    relay_port: int | None = None  # the port the relay listens on, once it does
    accepting: int = 0  # requests between their checks and their answer, now
    load: Load = field(default_factory=Load)  # /v1 HTTP requests under way (ApiGuard)
    reload: Callable[[], str] | None = None  # serve.yml read again (run.reload_keys)
    router: APIRouter | None = None  # the /v1 routes, made once for FastAPI and build_fast

    def busy(self) -> bool:
        """Many requests under way at once: the server is as loaded as it gets."""
        return self.load.inflight + self.accepting >= BUSY

    async def call(self, fn: Callable[[Any], Any]) -> Any:
        return await self._guard(self.writer.call(fn))

    async def batch(self, many: Callable[[Any, list[Any]], Any], item: Any) -> Any:
        """``many`` over ``item`` and the concurrent requests' items, in one commit."""
        return await self._guard(self.writer.batch(many, item))

    async def _guard(self, work: Awaitable[Any]) -> Any:
        try:
            return await work
        except Overloaded as exc:
            raise Problem(503, str(exc), headers={"Retry-After": "1"}) from None
        except StoreError as exc:
            log.error("the store failed: %s", exc)
            raise Problem(503, "the store is not available; try again shortly") from None


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemOut, "description": "no key, or a key no pool has"},
    403: {"model": ProblemOut, "description": "a From domain the pool may not use"},
    413: {"model": ProblemOut, "description": "the body is over the server's max_body"},
    422: {"model": ProblemOut, "description": "invalid fields, or suppressed recipients"},
    429: {"model": ProblemOut, "description": "over the pool's rate or daily quota"},
}


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key else None


def authorize(state: ApiState, request: Request) -> str:
    """The pool of the request's key; 401 without a known one."""
    headers = request.headers
    key = presented_key(headers.get("authorization"), headers.get("x-api-key"))
    pool = state.keys.pool_of(key) if key else None
    if pool is None:
        raise Problem(
            401,
            "send an API key: Authorization: Bearer KEY (or X-API-Key)"
            if not key
            else "this API key is not known",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.scope["state"]["pool"] = pool
    return pool


TRUE = frozenset(("1", "true", "on", "yes", "t", "y"))
FALSE = frozenset(("0", "false", "off", "no", "f", "n"))


def post_params(request: Request, *, wait_default: bool) -> tuple[bool, str | None]:
    """``?wait`` and the ``Idempotency-Key`` header of a POST; 422 naming a bad one."""
    wait = wait_default
    raw = request.query_params.get("wait")
    if raw is not None:
        low = raw.strip().lower()
        if low not in TRUE and low not in FALSE:
            raise field_problem("wait", "Input should be a valid boolean")
        wait = low in TRUE
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > MAX_KEY:
        raise field_problem("Idempotency-Key", f"String should have at most {MAX_KEY} characters")
    return wait, key


def field_problem(name: str, message: str) -> Problem422:
    return Problem422(f"{name}: {message}", [{"field": name, "message": message}])


M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``; 422 with the field paths of what is wrong."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind != "application/json" and not kind.endswith("+json"):
        raise field_problem("(body)", "send a JSON body (Content-Type: application/json)")
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        fields = error_fields(exc.errors(include_input=False, include_url=False))
        first = fields[0] if fields else {"field": "(body)", "message": "invalid"}
        raise Problem422(f"{first['field']}: {first['message']}", fields) from None


def json_answer(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def post_openapi(model: str, *, wait_default: bool) -> dict[str, Any]:
    """The OpenAPI parts of a POST route that reads its own request (see build_router)."""
    return {
        "parameters": [
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "send now and answer the outcome",
                "schema": {"type": "boolean", "default": wait_default},
            },
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key within 24 h answers as the first request, "
                "never sends twice",
                "schema": {"type": "string", "maxLength": MAX_KEY},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
        },
    }


def build_router(state: ApiState) -> APIRouter:
    """The ``/v1`` routes over ``state``."""
    router = APIRouter(prefix="/v1", tags=["send"])

    async def pool_of(request: Request) -> str:
        return authorize(state, request)

    async def admin(
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        key = presented_key(authorization, x_api_key)
        if not state.keys.has_admin:
            raise Problem(404, "no admin key is configured (admin_key_env in serve.yml)")
        if not key or not state.keys.is_admin(key):
            raise Problem(
                401, "this route needs the admin key", headers={"WWW-Authenticate": "Bearer"}
            )

    Pool = Annotated[str, Depends(pool_of)]

    # The two POST routes read their request themselves (plain functions, one pydantic
    # parse of the raw JSON), not through FastAPI's parameter and dependency solving,
    # which was the larger part of a queued request's cost. The OpenAPI document still
    # describes their body, query and headers (openapi_extra, MessageIn/BatchIn schemas).
    @router.post(
        "/messages",
        response_model=MessageOut,
        responses={202: {"model": MessageOut, "description": "queued"}, **RESPONSES},
        summary="Send one message",
        openapi_extra=post_openapi("MessageIn", wait_default=True),
    )
    async def post_message(request: Request) -> Response:
        pool = authorize(state, request)
        wait, key = post_params(request, wait_default=True)
        message = await read_body(request, MessageIn)
        outs, status = await accept(state, pool, [message], wait, key)
        return json_answer(outs[0].model_dump_json().encode(), status)

    @router.post(
        "/messages/batch",
        response_model=BatchOut,
        responses={202: {"model": BatchOut, "description": "queued"}, **RESPONSES},
        summary="Send up to 500 messages",
        openapi_extra=post_openapi("BatchIn", wait_default=False),
    )
    async def post_batch(request: Request) -> Response:
        pool = authorize(state, request)
        wait, key = post_params(request, wait_default=False)
        batch = await read_body(request, BatchIn)
        if len(batch.messages) > state.config.max_batch:
            raise Problem(422, f"at most {state.config.max_batch} messages in a batch")
        outs, status = await accept(state, pool, batch.messages, wait, key)
        return json_answer(BatchOut(messages=outs).model_dump_json().encode(), status)

    @router.get(
        "/messages/{message_id}",
        response_model=MessageOut,
        responses={404: {"model": ProblemOut}, 401: RESPONSES[401]},
        summary="A message's state and delivery events",
    )
    async def get_message(message_id: str, pool: Pool) -> MessageOut:
        found = await state.call(lambda s: api_send.answers(s, [message_id], events=True))
        out: MessageOut | None = found.get(message_id)
        if out is None or out.pool != pool:  # another pool's message is not there for you
            raise Problem(404, f"no message {message_id!r}")
        return out

    @router.get("/pools", dependencies=[Depends(admin)], summary="Pools (admin key)")
    async def pools() -> dict[str, Any]:
        return {
            "pools": [
                {
                    "name": p.name,
                    "from_domains": p.from_domains,
                    "providers": [q.label for q in p.providers],
                    "rate": str(p.rate) if p.rate else None,
                    "daily_quota": p.daily_quota,
                    "keys": len(p.keys) + (1 if p.key_env else 0),
                }
                for p in state.config.pools
            ]
        }

    @router.get("/providers", dependencies=[Depends(admin)], summary="Provider health (admin key)")
    async def providers() -> dict[str, Any]:
        out = []
        for name, r in state.sender.routers.items():
            for st in r.states():
                out.append({"pool": name, **_status(st)})
        counts = await state.call(lambda s: s.api_queue.counts())
        return {"providers": out, "queue": counts}

    return router


def _status(st: Any) -> dict[str, Any]:
    return {
        "provider": st.name,
        "scheme": st.scheme,
        "state": st.state,
        "sent": st.sent,
        "failed": st.failed,
        "rejected": st.rejected,
        "throttled": st.throttled,
        "failovers": st.failovers,
        "quota_used": st.quota_used,
        "quota": st.quota,
        "reason": st.reason,
    }


def _seconds_to_midnight(now: float) -> int:
    day = dt.datetime.fromtimestamp(now, dt.UTC).date() + dt.timedelta(days=1)
    midnight = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    return max(1, math.ceil(midnight - now))


async def accept(
    state: ApiState,
    pool_name: str,
    messages: list[MessageIn],
    wait: bool,
    key: str | None,
    *,
    mode: str | None = None,
) -> tuple[list[MessageOut], int]:
    """Check, queue and (``wait``) send ``messages``; their answers and the HTTP status."""
    state.accepting += 1  # SMTP submissions count toward busy() here, HTTP ones in ApiGuard
    try:
        return await _accept(state, pool_name, messages, wait, key, mode)
    finally:
        state.accepting -= 1


async def _accept(
    state: ApiState,
    pool_name: str,
    messages: list[MessageIn],
    wait: bool,
    key: str | None,
    mode: str | None,
) -> tuple[list[MessageOut], int]:
    pool = state.config.pool(pool_name)
    if pool is None:  # the key's pool left serve.yml in a reload
        raise Problem(401, "this API key is not known")
    for i, m in enumerate(messages):
        if not pool.allows_from(m.from_domain):
            where = "from" if len(messages) == 1 else f"messages[{i}].from"
            raise Problem(403, f"{where}: the pool {pool.name!r} may not send from {m.from_domain}")
    for i, m in enumerate(messages):  # templates, addresses: refused now, not at send time
        try:
            state.sender.composer.check(m)
        except ComposeError as exc:
            prefix = "" if len(messages) == 1 else f"messages[{i}]."
            raise Problem422(
                str(exc), [{"field": prefix + exc.field, "message": str(exc)}]
            ) from None
    bucket = state.sender.buckets.get(pool.name)
    if bucket is not None:
        delay = bucket.delay_for(len(messages))
        if delay > 0 or len(messages) > bucket.burst:
            retry = max(1, math.ceil(delay))
            raise Problem(
                429, f"the pool {pool.name!r} is over its rate ({pool.rate})",
                headers={"Retry-After": str(retry)},
            )  # fmt: skip
        await bucket.acquire(len(messages))
    now = time.time()
    hold = now + state.config.lease if wait else 0.0  # a sync request claims its own rows
    quota = api_send.daily_quota(pool, now)
    done = await state.batch(
        api_send.queue_many,
        api_send.Accept(pool.name, messages, key, wait, now, hold, quota),
    )
    if isinstance(done, list):
        fields = []
        for i, found in enumerate(done):
            for b in found:
                prefix = "" if len(messages) == 1 else f"messages[{i}]."
                fields.append(
                    {"field": prefix + "to", "address": b.address, "reason": b.reason,
                     "message": f"{b.address} is suppressed ({b.reason})"}
                )  # fmt: skip
        names = ", ".join(f"{f['address']} ({f['reason']})" for f in fields)
        raise Problem422(f"suppressed recipients: {names}", fields)
    if done.over_quota:
        raise Problem(
            429,
            f"the pool {pool.name!r} has used its daily quota ({pool.daily_quota:,})",
            headers={"Retry-After": str(_seconds_to_midnight(now))},
        )
    if not done.new:
        if done.request_hash != api_send.request_hash(pool.name, messages):
            raise Problem422(
                "this Idempotency-Key was used with another request in the last 24 hours",
                [{"field": "Idempotency-Key", "message": "used with another request"}],
            )
        return await replay(state, list(done.ids), done.wait)
    state.metrics.accepted.labels(pool.name, mode or ("sync" if wait else "async")).inc(
        len(done.ids)
    )
    if not wait:
        if state.drainer is not None:
            state.drainer.poke()
        # as stored by the enqueue just committed: no second trip to the store
        queued = [
            MessageOut(id=i, state="queued", pool=pool.name, created_at=now, updated_at=now)
            for i in done.ids
        ]
        return queued, 202
    return await send_now(state, list(done.ids))


async def send_now(state: ApiState, ids: list[str]) -> tuple[list[MessageOut], int]:
    """Claim ``ids`` and send them in this request; answer by the deadline either way."""
    owner = state.sync_owner

    async def run() -> None:
        # the claim, the settle and the answer are grouped with concurrent requests' ones
        rows = await state.batch(api_send.claim_many, (owner, ids, state.config.lease))
        done = await state.sender.deliver(rows)
        await state.batch(api_send.settle_many, (owner, done.fates, done.suppress))

    # shielded: a client that goes away, or the deadline, never cancels a send under way
    task = asyncio.get_running_loop().create_task(run())
    state.inflight.add(task)
    task.add_done_callback(state.inflight.discard)
    await asyncio.wait({task}, timeout=state.config.sync_deadline)
    if task.done() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    outs = await state.batch(api_send.answers_many, ids)
    answers = [outs[i] for i in ids]
    return answers, status_of(answers)


async def replay(state: ApiState, ids: list[str], wait: bool) -> tuple[list[MessageOut], int]:
    """The answer of an Idempotency-Key's first request, waiting (up to the deadline) for a
    synchronous one still under way."""
    end = time.monotonic() + state.config.sync_deadline
    while True:
        outs = await state.call(lambda s: api_send.answers(s, ids))
        answers = [outs[i] for i in ids if i in outs]
        if not wait:
            return answers, 202
        if all(a.state in api_send.FINAL for a in answers) or time.monotonic() > end:
            return answers, status_of(answers)
        await asyncio.sleep(POLL)


def status_of(answers: list[MessageOut]) -> int:
    """200 once every message has its outcome; 202 while any is still queued or sending."""
    return 200 if all(a.state in api_send.FINAL for a in answers) else 202


def validation_fields(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's validation errors as ``{"field": "to[0]", "message": ...}`` (no input echoed)."""
    return error_fields(exc.errors())


def error_fields(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors (FastAPI's or pydantic's) as ``{"field": "to[0]", "message": ...}``."""
    out = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in ("body",)]
        path = ""
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else ("." if path else "") + str(part)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": path or "(body)", "message": msg})
    return out


def error_handlers() -> dict[Any, Callable[..., Any]]:
    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = validation_fields(exc)
        first = fields[0] if fields else {"field": "(body)", "message": "invalid"}
        return JSONResponse(
            {"error": f"{first['field']}: {first['message']}", "fields": fields},
            status_code=422,
        )

    return {RequestValidationError: on_validation}


__all__ = ["ApiState", "StampError", "accept", "build_front", "build_router", "error_handlers"]


def with_request_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with what FastAPI cannot see of the POST routes: the request
    models they parse themselves (and the models those use), and how keys are sent."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (MessageIn, BatchIn):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in found.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas.setdefault(model.__name__, found)
    components.setdefault("securitySchemes", {}).update(
        {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a pool's API key"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
    )
    for path, item in spec.get("paths", {}).items():
        if path.startswith("/v1/"):
            for operation in item.values():
                operation.setdefault("security", [{"bearer": []}, {"apiKey": []}])
    return spec


def build_front(
    state: ApiState | None,
    metrics: Metrics,
    handlers: dict[Any, Any],
    extra_routes: list[Any],
    max_body: int,
) -> FastAPI:
    """The FastAPI app of ``/v1``, ``/docs``, ``/openapi.json`` (and ``extra_routes``)."""
    from stampcli import __version__
    from stampcli.server.access import ApiGuard

    front = FastAPI(
        title="stamp send API",
        version=__version__,
        description=(
            "Send single messages through stamp's providers with failover, breakers, rate "
            "limits and suppressions. Authenticate with `Authorization: Bearer KEY`."
        ),
        routes=extra_routes,
        exception_handlers={**handlers, **error_handlers()},
    )
    if state is not None:
        front.include_router(state.router or build_router(state))
    plain_openapi = front.openapi

    def openapi() -> dict[str, Any]:
        if front.openapi_schema is None:
            front.openapi_schema = with_request_schemas(plain_openapi())
        return front.openapi_schema

    front.openapi = openapi  # type: ignore[method-assign]
    load = state.load if state else None
    front.add_middleware(ApiGuard, max_body=max_body, metrics=metrics, load=load)
    return front


FAST_PATHS = frozenset(("/v1/messages", "/v1/messages/batch"))


def build_fast(state: ApiState, metrics: Metrics, max_body: int) -> Any:
    """``POST /v1/messages`` and ``/v1/messages/batch`` straight to their route functions.

    The same functions FastAPI's router holds for these routes (and documents), called
    without FastAPI's middleware, router and per-request wrapping, which cost as much
    CPU as the rest of an asynchronous request together: the root app sends these two
    exact paths with POST here, everything else (other methods, other paths, the
    docs) to FastAPI. What FastAPI's layers did for them is done here too: the body
    cap, access log and metrics (the same :class:`ApiGuard`), a refusal as its JSON
    problem, any other error as a logged 500 without a traceback.
    """
    from stampcli.server.access import ApiGuard, BodyRefused
    from stampcli.server.http import json_response, problem_body

    if state.router is None:
        state.router = build_router(state)
    routes = {
        route.path: route
        for route in state.router.routes
        if isinstance(route, APIRoute)
        and route.path in FAST_PATHS
        and "POST" in (route.methods or ())
    }
    missing = FAST_PATHS - set(routes)
    if missing:  # the routes were renamed without FAST_PATHS: said at start-up
        raise RuntimeError(f"send API routes not found: {sorted(missing)}")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        route = routes[scope["path"]]
        scope["route"] = route  # the access log's and metrics' route label
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request)
        except BodyRefused:
            raise  # ApiGuard answers 408/413
        except Problem as exc:
            response = json_response(exc.status, problem_body(exc), headers=exc.headers)
        except Exception as exc:
            log.error("POST %s: internal error (%s)", scope["path"], type(exc).__name__)
            response = json_response(500, {"error": "internal error"})
        await response(scope, receive, send)

    return ApiGuard(app, max_body=max_body, metrics=metrics, load=state.load)
