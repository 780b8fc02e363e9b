"""Durable before 2xx: kill -9 ``stamp serve`` in the middle of a flood of signed webhooks;
every event it acknowledged is in the store after the kill, and a restart serves again."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from inbound_helpers import ecdsa_key, sendgrid_headers
from serve_helpers import MAILGUN_KEY, event_rows, mailgun_body, sendgrid_event

from stampcli.providers.mailgun import event_id as mailgun_event_id

PRIVATE, PUBLIC = ecdsa_key()
ENV = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY, "SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC}


def start(db: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "stampcli", "serve", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), line
    return proc, line.split()[2].rstrip("/")


async def flood(url: str, acked: list[str], kill: Callable[[], None], kill_after: int) -> None:
    """Mailgun-shaped (one event a request, 24 at once) and SendGrid-shaped (500 a batch)
    requests until the server dies; ``acked`` gets the event id of every 200.

    ``kill`` is called right after a SendGrid batch is acknowledged, once ``kill_after``
    events are: recording a batch that size takes long enough that a server answering
    before its commit would be caught with the batch unwritten."""
    done = asyncio.Event()

    async def mailgun(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            body = mailgun_body(token=secrets.token_hex(25))
            try:
                answer = await client.post(
                    f"{url}/webhooks/mailgun",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
            except httpx.TransportError:
                done.set()
                return
            if answer.status_code == 200:
                # stored under event-data's id and time (the events API's id)
                acked.append(f"mailgun/{mailgun_event_id(json.loads(body)['event-data'])}")

    async def sendgrid(client: httpx.AsyncClient) -> None:
        while not done.is_set():
            base = secrets.randbelow(10**12)
            events = [sendgrid_event(base + i) for i in range(500)]
            body = json.dumps(events).encode()
            headers = sendgrid_headers(PRIVATE, body, str(int(time.time())))
            try:
                answer = await client.post(
                    f"{url}/webhooks/sendgrid", content=body, headers=headers
                )
            except httpx.TransportError:
                done.set()
                return
            if answer.status_code == 200:
                acked.extend(f"sendgrid/{e['sg_event_id']}" for e in events)
                if len(acked) >= kill_after and not done.is_set():
                    kill()

    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        await asyncio.gather(
            *(mailgun(client) for _ in range(24)), sendgrid(client), sendgrid(client)
        )


def test_kill_9_during_a_flood_loses_no_acknowledged_event(tmp_path: Path) -> None:
    db = tmp_path / "stamp.db"
    proc, url = start(db)
    acked: list[str] = []
    try:

        def kill() -> None:
            os.kill(proc.pid, signal.SIGKILL)

        asyncio.run(asyncio.wait_for(flood(url, acked, kill, kill_after=1500), 120))
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stored = {f"{r['provider']}/{r['event_id']}" for r in event_rows(db)}
    lost = [event for event in acked if event not in stored]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events lost"
    assert len(acked) >= 1500

    proc, url = start(db)  # the store opens after the kill and the server answers
    try:
        assert httpx.get(f"{url}/healthz").status_code == 200
        answer = httpx.post(
            f"{url}/webhooks/mailgun",
            content=mailgun_body(),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
