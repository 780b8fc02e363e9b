"""The reference for bench_api.py: a bare FastAPI endpoint that only validates and answers.

``POST /v1/messages`` takes the send API's own request model
(:class:`stampcli.sendapi.model.MessageIn`), checks a bearer key and answers 202
with a fresh id: no store, no composing, no provider. It runs under the same
uvicorn configuration as ``stamp serve`` (``stampcli.server.run.uvicorn_config``).

``python benchmarks/api_bare.py PORT``
"""

from __future__ import annotations

import secrets
import socket
import sys
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse

from stampcli.sendapi.model import MessageIn
from stampcli.server.run import uvicorn_config

app = FastAPI()


@app.post("/v1/messages")
async def post(
    message: MessageIn, authorization: Annotated[str | None, Header()] = None
) -> JSONResponse:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401)
    return JSONResponse({"id": "msg_" + secrets.token_hex(12), "state": "queued"}, 202)


if __name__ == "__main__":
    port = int(sys.argv[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", port)).run(sockets=[sock])
