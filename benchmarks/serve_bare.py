"""The bare reference for ``stamp serve``: a minimal ASGI app under the same uvicorn that
only parses each webhook body and records the same rows into the same store.

No routing framework, no signature check, no writer thread and no group commit:
the body is read, parsed by the provider's own parser (the same events, hence
the same rows) and passed to ``record_events`` on one connection, inline, one
commit per request, then 200. Run as
``python benchmarks/serve_bare.py PROVIDER PORT DB``.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from stampcli.providers.webhook import parser_class
from stampcli.service.events import record_events
from stampcli.store import open_store


def make_app(provider: str, db: str, env: dict[str, str]) -> Any:
    parser = parser_class(provider).from_env(env)
    store = open_store(db)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    store.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        result = parser.parse(headers, b"".join(chunks))
        record_events(store, result.events)
        headers_out = [(b"content-type", b"application/json"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers_out})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def main() -> None:
    import os

    provider, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvicorn.run(
        make_app(provider, db, dict(os.environ)),
        host="127.0.0.1",
        port=port,
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=1024,
    )


if __name__ == "__main__":
    main()
