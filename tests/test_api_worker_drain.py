"""``send_queued_api_messages``: what a ``stamp worker`` calls to drain the send API's
queue, on both store backends, against the Postmark fake; two drainers at once never
send one message twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from api_helpers import message
from provider_fakes import PostmarkFake

from stampcli.sendapi.config import ServeConfig
from stampcli.sendapi.model import MessageIn
from stampcli.service import api_send
from stampcli.service.api_send import ApiSender, direct, send_queued_api_messages
from tests.test_store_contract import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


def config(fake: PostmarkFake) -> ServeConfig:
    return ServeConfig.model_validate(
        {
            "pools": [
                {
                    "name": "app",
                    "from_domains": ["acme.example"],
                    "providers": [{"url": fake.provider_url(), "endpoint": fake.url}],
                }
            ]
        }
    )


def test_two_workers_drain_the_queue_once(backend: Backend) -> None:
    n = 40
    with PostmarkFake() as fake:
        with backend.open() as store:
            msgs = [MessageIn.model_validate(message(f"u{i}@example.com")) for i in range(n)]
            done = api_send.enqueue(store, "app", msgs, key=None, wait=False, now=time.time())

        async def worker(name: str) -> api_send.DrainResult:
            with backend.open() as store:
                call = await direct(store)
                async with ApiSender(config(fake)) as sender:
                    return await send_queued_api_messages(call, sender, owner=name, limit=5)

        async def both() -> list[api_send.DrainResult]:
            return list(await asyncio.gather(worker("w1"), worker("w2")))

        results = asyncio.run(both())
        assert sum(r.claimed for r in results) == n
        with backend.open() as store:
            rows = store.api_queue.get(done.ids)
        assert Counter(r.state for r in rows) == {"sent": n}
        by_id = Counter(
            a.fields["Metadata"]["campaign"] for items in fake.accepted.values() for a in items
        )
        assert set(by_id) == set(done.ids) and max(by_id.values()) == 1


async def until(done: Callable[[], bool]) -> None:
    for _ in range(1000):  # 10 s
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_server_drainer_gives_way_to_a_saturated_server_but_not_for_ever(
    tmp_path: Path,
) -> None:
    """While ``busy()`` holds, the serve drainer claims nothing for ``give_way`` seconds;
    a flood that lasts still gets a claim sent each ``give_way``; idle, it sends at once."""
    from stampcli.service.api_send import QueueDrainer
    from stampcli.store import open_store

    with PostmarkFake() as fake, open_store(str(tmp_path / "s.db")) as store:
        msgs = [MessageIn.model_validate(message(f"u{i}@example.com")) for i in range(3)]
        done = api_send.enqueue(store, "app", msgs, key=None, wait=False, now=time.time())
        busy = [True]

        async def run() -> tuple[float, float]:
            call = await direct(store)
            async with ApiSender(config(fake)) as sender:
                drainer = QueueDrainer(call, sender, busy=lambda: busy[0], give_way=0.6)
                began = time.monotonic()
                drainer.start()
                await asyncio.sleep(0.3)
                held = sum(len(v) for v in fake.accepted.values())
                assert held == 0  # still giving way
                await until(lambda: bool(fake.accepted))  # busy for ever: sent after give_way
                flood = time.monotonic() - began
                busy[0] = False
                more = [MessageIn.model_validate(message("late@example.com"))]
                late = api_send.enqueue(store, "app", more, key=None, wait=False, now=time.time())
                began = time.monotonic()
                drainer.poke()
                await until(lambda: store.api_queue.get(late.ids)[0].state == "sent")
                idle = time.monotonic() - began
                await drainer.stop()
                return flood, idle

        flood, idle = asyncio.run(run())
        assert 0.55 <= flood < 5.0
        assert idle < 0.5
        assert Counter(r.state for r in store.api_queue.get(done.ids)) == {"sent": 3}
