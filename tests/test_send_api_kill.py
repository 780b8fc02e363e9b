"""``kill -9`` of ``stamp serve`` with asynchronous API messages queued, then a restart:
every message reaches the provider at most once, every queued one is sent after the
restart, and those the kill caught mid-send are ``unknown``, never sent again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from api_helpers import ADMIN_KEY, auth, message, write_config
from provider_fakes import PostmarkFake

from stampcli.sendapi.keys import new_key
from stampcli.service.api_send import CLAIM
from stampcli.store import open_store

ROOT = Path(__file__).resolve().parents[1]
COUNT = 60


def start(db: Path, config: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STAMP_ADMIN_KEY": ADMIN_KEY}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stampcli",
            "serve",
            "--port",
            "0",
            "--db",
            str(db),
            "--config",
            str(config),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=open(db.parent / "serve.err", "a"),  # noqa: SIM115 - the child keeps it
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    m = None
    for _ in range(20):  # a new store is announced first
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if m or not line:
            break
    assert m, "stamp serve said no listening line"
    url = f"http://127.0.0.1:{m.group(1)}"
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("stamp serve did not answer")


def test_kill_9_with_queued_messages_then_restart(tmp_path: Path) -> None:
    db = tmp_path / "stamp.db"
    key = new_key()
    with PostmarkFake() as fake:
        provider = {
            "url": fake.provider_url(),
            "endpoint": fake.url,
            "rate": "10/s",
            "concurrency": 2,
        }
        config = write_config(
            tmp_path, [provider], key=key, extra={"lease": "3s", "sync_deadline": "2s"}
        )
        proc, url = start(db, config)
        try:
            # one batch request: queued at once, however slow the machine is today
            answer = httpx.post(
                f"{url}/v1/messages/batch?wait=false",
                json={"messages": [message(f"user{i}@example.com") for i in range(COUNT)]},
                headers=auth(key),
                timeout=30,
            )
            assert answer.status_code == 202
            ids = [m["id"] for m in answer.json()["messages"]]
            # let it send some, then kill it hard in the middle of the queue
            end = time.monotonic() + 20
            while sum(len(v) for v in fake.accepted.values()) < 10 and time.monotonic() < end:
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        sent_before = sum(len(v) for v in fake.accepted.values())
        assert 0 < sent_before < COUNT  # killed with messages still queued
        proc, url = start(db, config)
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                with open_store(str(db)) as store:
                    counts = store.api_queue.counts()
                if set(counts) <= {"sent", "unknown"}:
                    break
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    with open_store(str(db)) as store:
        rows = {r.id: r for r in store.api_queue.get(ids)}
    states = Counter(r.state for r in rows.values())
    assert set(states) <= {"sent", "unknown"}, states
    # each message at the provider at most once; every `sent` one exactly once
    by_id = Counter(
        a.fields["Metadata"]["campaign"] for items in fake.accepted.values() for a in items
    )
    assert max(by_id.values()) == 1
    for mid, row in rows.items():
        if row.state == "sent":
            assert by_id[mid] == 1
    # the kill caught at most one claim's rows (they may have been sent: never sent again)
    assert states["unknown"] <= CLAIM
    assert states["sent"] >= COUNT - states["unknown"]
    assert sum(by_id.values()) >= states["sent"]


def test_sigterm_lets_a_sync_send_under_way_finish(tmp_path: Path) -> None:
    import threading

    from smtp_server import Pause, SMTPTestServer

    db = tmp_path / "stamp.db"
    key = new_key()
    with SMTPTestServer() as smtp:
        smtp.on_data("slow@example.com", Pause(1.5, "250 2.0.0 OK"))
        config = write_config(tmp_path, [{"url": smtp.url("smtp")}], key=key,
                              extra={"lease": "60s", "sync_deadline": "10s"})  # fmt: skip
        proc, url = start(db, config)
        answers: list[httpx.Response] = []
        try:
            thread = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(
                        f"{url}/v1/messages",
                        json=message("slow@example.com"),
                        headers=auth(key),
                        timeout=20,
                    )
                )
            )
            thread.start()
            end = time.monotonic() + 10
            while not smtp.commands["DATA"] and time.monotonic() < end:
                time.sleep(0.02)
            time.sleep(0.3)  # the message's DATA is under way: the server waits 1.5 s
            assert not answers
            proc.send_signal(signal.SIGTERM)
            thread.join(20)
            # uvicorn re-raises the SIGTERM it shut down on, after the shutdown
            assert proc.wait(20) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
    (answer,) = answers
    assert answer.status_code == 200 and answer.json()["state"] == "sent"
    assert smtp.count("slow@example.com") == 1


def test_kill_9_under_a_flood_loses_no_answered_message(tmp_path: Path) -> None:
    """Concurrent asynchronous requests are queued in group commits; a ``kill -9`` in the
    middle of the flood: every request answered 202 has its message in the store (the
    answer came after its commit), with its Idempotency-Key standing for it."""
    import asyncio

    db = tmp_path / "stamp.db"
    key = new_key()
    answered: dict[str, str] = {}  # Idempotency-Key -> id answered 202
    with PostmarkFake() as fake:
        provider = {"url": fake.provider_url(), "endpoint": fake.url}
        config = write_config(tmp_path, [provider], key=key)
        proc, url = start(db, config)

        async def client(n: int) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                for i in range(10_000):
                    idem = f"c{n}-{i}"
                    try:
                        answer = await http.post(
                            "/v1/messages?wait=false",
                            json=message(f"u{n}-{i}@example.com"),
                            headers={**auth(key), "Idempotency-Key": idem},
                        )
                    except httpx.TransportError:
                        return  # the server is gone
                    if answer.status_code == 202:
                        answered[idem] = answer.json()["id"]
                        if len(answered) >= 300:
                            enough.set()

        enough = asyncio.Event()

        async def flood() -> None:
            clients = [asyncio.create_task(client(n)) for n in range(16)]
            await enough.wait()
            proc.send_signal(signal.SIGKILL)
            await asyncio.gather(*clients)

        try:
            asyncio.run(asyncio.wait_for(flood(), 60))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    assert len(answered) >= 300
    with open_store(str(db)) as store:
        rows = {r.id: r for r in store.api_queue.get(list(answered.values()))}
        assert set(rows) == set(answered.values())  # every answered message is there
        # and each key stands for its message: a retry after the restart is a replay
        replay = store.api_queue.enqueue("app", [("msg_new", "{}")], now=time.time(),
                                         key=next(iter(answered)))  # fmt: skip
        assert not replay.new and replay.ids == (answered[next(iter(answered))],)
