"""What every route of ``stamp serve`` shares: bounded body reading and plain answers.

``read_body`` enforces the size cap (from Content-Length before reading a
byte, and again while streaming, for chunked bodies) and a deadline for the
whole body, so a client trickling bytes cannot hold a request open.
``Problem`` is how a route refuses a request: a status and one sentence,
answered as JSON ``{"error": ...}``; nothing else a route raises reaches the
client (the app's last-resort handler answers a bare 500).
``read_asgi_body``, ``asgi_headers`` and ``send_json`` do the same on raw ASGI, for
the webhook lane that skips Starlette's request and response objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from stampcli import redact

BODY_DEADLINE = 30.0  # seconds for the whole body, however slowly it arrives
READ_TIMEOUT = 10.0  # seconds any one chunk may take


class Problem(Exception):
    """Refuse the request with ``status`` and ``message`` (safe to show: no secrets)."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def json_response(status: int, data: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def problem_response(problem: Problem) -> Response:
    return json_response(
        problem.status, {"error": redact.redact(problem.message)}, headers=problem.headers
    )


def _check_length(length: str | None, limit: int) -> None:
    """Refuse a body by its Content-Length before reading it: 400 not a number, 413 too big."""
    if length is None:
        return
    if not length.isdigit():
        raise Problem(400, "the Content-Length header is not a number")
    if int(length) > limit:
        raise Problem(
            413, f"the body is {int(length):,} bytes, more than {limit:,}", headers=_CLOSE
        )


async def read_body(
    request: Request,
    limit: int,
    *,
    deadline: float | None = None,
    read_timeout: float | None = None,
) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond, 408 when too slow)."""
    deadline = BODY_DEADLINE if deadline is None else deadline
    read_timeout = READ_TIMEOUT if read_timeout is None else read_timeout
    _check_length(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    try:
        async with asyncio.timeout(deadline):
            while True:
                try:
                    chunk = await asyncio.wait_for(stream.__anext__(), read_timeout)
                except StopAsyncIteration:
                    break
                size += len(chunk)
                if size > limit:
                    raise Problem(413, f"the body is more than {limit:,} bytes", headers=_CLOSE)
                chunks.append(chunk)
    except TimeoutError:
        raise Problem(408, "the body arrived too slowly", headers=_CLOSE) from None
    except ClientDisconnect:
        raise Problem(400, "the client went away before the body was complete") from None
    return b"".join(chunks)


_CLOSE = {"Connection": "close"}


async def read_asgi_body(
    headers: Mapping[str, str],
    receive: Any,
    limit: int,
    *,
    deadline: float | None = None,
    read_timeout: float | None = None,
) -> bytes:
    """:func:`read_body` on the raw ASGI ``receive`` (the webhook lane, which skips
    Starlette's request object; ``headers`` as :func:`asgi_headers` gives them): the
    same cap, deadline, answers and messages.

    One ``asyncio.timeout`` rescheduled per chunk stands for both limits: ``wait_for``
    around each chunk made a task per chunk, a measurable share of a one-event request.
    """
    deadline = BODY_DEADLINE if deadline is None else deadline
    read_timeout = READ_TIMEOUT if read_timeout is None else read_timeout
    _check_length(headers.get("content-length"), limit)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(min(end, loop.time() + read_timeout)) as timer:
            while True:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect
                    raise Problem(400, "the client went away before the body was complete")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise Problem(413, f"the body is more than {limit:,} bytes", headers=_CLOSE)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
                timer.reschedule(min(end, loop.time() + read_timeout))
    except TimeoutError:
        raise Problem(408, "the body arrived too slowly", headers=_CLOSE) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def asgi_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """An ASGI scope's headers as ``dict(request.headers)`` makes them: lower-case names,
    the first value of a repeated name."""
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name not in out:
            out[name] = value.decode("latin-1")
    return out


async def send_json(
    send: Any, status: int, data: object, headers: Mapping[str, str] | None = None
) -> None:
    """:func:`json_response` written straight to an ASGI ``send`` (the same headers)."""
    body = orjson.dumps(data)
    await send_bytes(send, status, body, {"Cache-Control": "no-store", **(headers or {})})


async def send_bytes(
    send: Any,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    media_type: str | None = "application/json",
) -> None:
    """An answer written to an ASGI ``send``: ``headers``, Content-Length and (unless
    None) Content-Type, as Starlette's ``Response`` writes them."""
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    if media_type is not None:
        raw.append((b"content-type", media_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Problem422(Problem):
    def __init__(self, message: str, fields: list[dict[str, Any]]) -> None:
        super().__init__(422, message)
        self.fields = fields


def problem_body(problem: Problem) -> dict[str, Any]:
    body: dict[str, Any] = {"error": redact.redact(problem.message)}
    if isinstance(problem, Problem422):
        body["fields"] = problem.fields
    return body
