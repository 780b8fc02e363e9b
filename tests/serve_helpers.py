"""Running ``stamp serve`` for tests: the real app under real uvicorn on 127.0.0.1, and
signed provider payloads shaped as each provider documents them."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from stampcli.server.run import Built, build, uvicorn_config
from stampcli.store.db import Store

MAILGUN_KEY = "key-0123456789abcdef0123456789abcdef"
UNSUBSCRIBE_SECRET = "s3cret-for-tests-only-0123456789"


@contextlib.contextmanager
def running(built: Built, **config: Any) -> Iterator[str]:
    """Serve ``built`` on a free loopback port in a thread; yields the base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(built.app, "127.0.0.1", port, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def serve_store(tmp_path: Path, env: Mapping[str, str], **options: Any) -> tuple[Built, Path]:
    db = tmp_path / "stamp.db"
    Store(db).close()
    return build(db, env, **options), db


def event_rows(db: Path) -> list[dict[str, Any]]:
    with Store(db) as store:
        cur = store.conn.execute("SELECT * FROM events ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def sendgrid_event(index: int, **extra: Any) -> dict[str, Any]:
    """One SendGrid Event Webhook event (docs: "Event Webhook Reference")."""
    return {
        "email": f"user{index}@example.com",
        "timestamp": 1764000000 + index,
        "smtp-id": f"<{index}.abc@example.com>",
        "event": "delivered",
        "category": ["newsletter"],
        "sg_event_id": f"sg-event-{index:08d}",
        "sg_message_id": f"msg{index}.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
        "response": "250 OK",
        "campaign": "spring",
        "recipient": f"user{index}@example.com",
        **extra,
    }


def mailgun_body(
    event: str = "delivered",
    *,
    key: str = MAILGUN_KEY,
    stamp: float | None = None,
    token: str | None = None,
    recipient: str = "ann@example.com",
    event_id: str | None = None,
) -> bytes:
    """A Mailgun webhook body (docs: "Webhooks", the JSON payload with ``signature``)."""
    token = token or secrets.token_hex(25)
    stamp_text = str(int(time.time() if stamp is None else stamp))
    signature = hmac.new(key.encode(), (stamp_text + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": stamp_text, "token": token, "signature": signature},
            "event-data": {
                "event": event,
                "timestamp": time.time(),
                "id": event_id or secrets.token_hex(11),
                "recipient": recipient,
                "message": {"headers": {"message-id": "20260203.abc@mg.example.com"}},
                "user-variables": {"campaign": "spring", "recipient": recipient},
                "delivery-status": {"message": "250 OK", "code": 250},
            },
        }
    ).encode()
