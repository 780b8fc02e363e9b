"""A provider down costs no message, in sync and in async mode alike.

* refused connections (nothing was written): certainly not sent, so the next provider
  takes the message (failover), or, with none left, it stays queued and is sent later;
* a provider that dies after reading the request (the connection reset before any
  answer): it may have taken the message, so it is ``unknown`` and never sent again,
  neither by failover nor by the queue (at most once, never twice).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import api_server, auth, closed_port, message
from provider_fakes import PostmarkFake

from tests.test_store_contract import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


def postmark(fake: PostmarkFake) -> dict[str, Any]:
    return {"url": fake.provider_url(), "endpoint": fake.url, "timeout": {"connect": 2, "read": 2}}


def dead() -> dict[str, Any]:
    return {
        "url": "postmark://token",
        "name": "dead",
        "endpoint": f"http://127.0.0.1:{closed_port()}",
        "timeout": {"connect": 1, "read": 1},
    }


def wait_final(url: str, key: str, mid: str, timeout: float = 10.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        got: dict[str, Any] = httpx.get(f"{url}/v1/messages/{mid}", headers=auth(key)).json()
        if got["state"] not in ("queued", "sending") or time.monotonic() > end:
            return got
        time.sleep(0.05)


@pytest.mark.parametrize("wait", [True, False])
def test_refused_connections_fail_over_in_both_modes(
    backend: Backend, tmp_path: Path, wait: bool
) -> None:
    with (
        PostmarkFake() as fake,
        api_server(tmp_path, [dead(), postmark(fake)], db=backend.url) as (url, key, _),
    ):
        ids = []
        for i in range(4):
            answer = httpx.post(
                f"{url}/v1/messages?wait={str(wait).lower()}",
                json=message(f"u{i}@example.com"),
                headers=auth(key),
            )
            assert answer.status_code == (200 if wait else 202), answer.text
            ids.append(answer.json()["id"])
        for i, mid in enumerate(ids):
            done = wait_final(url, key, mid)
            assert done["state"] == "sent" and done["provider"] == "postmark", done
            assert len(fake.accepted[f"u{i}@example.com"]) == 1


@pytest.mark.parametrize("wait", [True, False])
def test_every_provider_refusing_keeps_the_message_queued(
    backend: Backend, tmp_path: Path, wait: bool
) -> None:
    with api_server(tmp_path, [dead()], db=backend.url) as (url, key, _):
        answer = httpx.post(
            f"{url}/v1/messages?wait={str(wait).lower()}", json=message(), headers=auth(key)
        )
        assert answer.status_code == 202
        mid = answer.json()["id"]
        end = time.monotonic() + 10
        while True:  # the sync request's own try, or the drainer's first one, is made
            got = httpx.get(f"{url}/v1/messages/{mid}", headers=auth(key)).json()
            if got["attempts"] >= 1 or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert got["state"] == "queued" and got["attempts"] >= 1, got
        assert "cannot reach the provider" in (got["detail"] or "")
    with backend.open() as store:
        (row,) = store.api_queue.get([mid])
        assert row.state == "queued" and row.next_at > time.time()  # due again later


@pytest.mark.parametrize("wait", [True, False])
def test_a_provider_dying_mid_request_leaves_unknown_and_never_sends_twice(
    tmp_path: Path, wait: bool
) -> None:
    with (
        PostmarkFake() as first,
        PostmarkFake() as second,
        api_server(tmp_path, [{**postmark(first), "name": "first"}, postmark(second)]) as (
            url,
            key,
            _,
        ),
    ):
        first.fail("reset", times=1)  # reads the request, then the connection is reset
        answer = httpx.post(
            f"{url}/v1/messages?wait={str(wait).lower()}", json=message(), headers=auth(key)
        )
        done = wait_final(url, key, answer.json()["id"])
        assert done["state"] == "unknown", done
        assert "after the request was sent" in (done["detail"] or "")
        assert not second.accepted  # not failed over: the first may have it
        time.sleep(1.5)  # the drainer's next looks leave it alone
        again = httpx.get(f"{url}/v1/messages/{done['id']}", headers=auth(key)).json()
        assert again["state"] == "unknown" and again["attempts"] == done["attempts"]
        assert not second.accepted
