"""The send API's POST routes as they read requests themselves (not through FastAPI's
parameter solving): query, headers, body refusals; the pool's daily quota, counted in
the store in the queueing commit (both backends); and the OpenAPI document describing
every route, body, parameter and schema it refers to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import api_server, auth, message
from provider_fakes import PostmarkFake

from stampcli.server.api import MAX_KEY, build_router
from stampcli.store.quota import utc_day
from tests.test_store_contract import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


def postmark(fake: PostmarkFake) -> dict[str, Any]:
    return {"url": fake.provider_url(), "endpoint": fake.url}


def test_query_header_and_body_refusals_name_the_field(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        post = f"{url}/v1/messages"
        bad_wait = httpx.post(f"{post}?wait=maybe", json=message(), headers=auth(key))
        assert bad_wait.status_code == 422 and bad_wait.json()["fields"][0]["field"] == "wait"
        long_key = {**auth(key), "Idempotency-Key": "k" * (MAX_KEY + 1)}
        refused = httpx.post(post, json=message(), headers=long_key)
        assert refused.status_code == 422
        assert refused.json()["fields"][0]["field"] == "Idempotency-Key"
        form = httpx.post(post, data={"to": "x"}, headers=auth(key))
        assert form.status_code == 422 and "Content-Type: application/json" in form.text
        extra = httpx.post(post, json=message(colour="red"), headers=auth(key))
        assert extra.status_code == 422 and extra.json()["fields"][0]["field"] == "colour"
        nested = httpx.post(
            f"{post}/batch", json={"messages": [message(), {"to": "x"}]}, headers=auth(key)
        )
        assert nested.status_code == 422
        assert any(f["field"].startswith("messages[1].") for f in nested.json()["fields"])
        # the key is checked before the body: 401, not 422
        assert httpx.post(post, json={"nope": 1}).status_code == 401
        for word, code in (("false", 202), ("0", 202), ("yes", 200)):
            answer = httpx.post(f"{post}?wait={word}", json=message(), headers=auth(key))
            assert answer.status_code == code, word


def test_pool_daily_quota_is_counted_in_the_store(backend: Backend, tmp_path: Path) -> None:
    with (
        PostmarkFake() as fake,
        api_server(tmp_path, [postmark(fake)], pool={"daily_quota": 3}, db=backend.url) as (
            url,
            key,
            _,
        ),
    ):
        post = f"{url}/v1/messages?wait=false"
        batch = httpx.post(
            f"{url}/v1/messages/batch", json={"messages": [message()] * 2}, headers=auth(key)
        )
        assert batch.status_code == 202
        over = httpx.post(
            f"{url}/v1/messages/batch", json={"messages": [message()] * 2}, headers=auth(key)
        )
        assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
        assert "daily quota (3)" in over.json()["error"]
        # a refused request keeps no Idempotency-Key: the same key queues once there is room
        keyed = {**auth(key), "Idempotency-Key": "k-1"}
        assert httpx.post(post, json=message(), headers=keyed).status_code == 202
        assert httpx.post(post, json=message(), headers=keyed).status_code == 202  # replay
        assert httpx.post(post, json=message(), headers=auth(key)).status_code == 429
    with backend.open() as store:
        assert store.quota.usage("pool:app", utc_day(__import__("time").time())) == 3
        assert sum(store.api_queue.counts().values()) == 3


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def test_openapi_describes_every_route(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, _, built):
        spec = httpx.get(f"{url}/openapi.json").json()
        assert built.api is not None
        routes = {  # what the app serves under /v1 (the router it includes)
            (route.path, method.lower())
            for route in build_router(built.api).routes
            if getattr(route, "include_in_schema", False)
            for method in route.methods
        }
        assert {p for p, _ in routes} == {
            "/v1/messages", "/v1/messages/batch", "/v1/messages/{message_id}",
            "/v1/pools", "/v1/providers",
        }  # fmt: skip
        for path, method in routes:
            operation = spec["paths"][path][method]
            assert operation.get("summary"), (path, method)
            assert operation["security"], (path, method)
            assert "200" in operation["responses"] or "202" in operation["responses"]
        for path, model in (("/v1/messages", "MessageIn"), ("/v1/messages/batch", "BatchIn")):
            post = spec["paths"][path]["post"]
            body = post["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": f"#/components/schemas/{model}"}
            assert {p["name"] for p in post["parameters"]} == {"wait", "Idempotency-Key"}
            for code in ("401", "403", "413", "422", "429"):
                assert code in post["responses"], (path, code)
        schemas = spec["components"]["schemas"]
        assert {"from", "to", "subject", "html", "attachments"} <= set(
            schemas["MessageIn"]["properties"]
        )
        for ref in _refs(spec):  # every schema referred to is there
            assert ref.startswith("#/components/schemas/"), ref
            assert ref.rsplit("/", 1)[1] in schemas, ref
        assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_provider_daily_quota_holds_across_a_restart(backend: Backend, tmp_path: Path) -> None:
    """A pool's provider ``daily_quota`` is counted in the store, not in the process: a
    restarted server does not get a fresh quota (and gives unused permits back on exit)."""
    today = utc_day(__import__("time").time())
    with PostmarkFake() as fake:
        provider = {**postmark(fake), "daily_quota": 2}
        with api_server(tmp_path, [provider], db=backend.url) as (url, key, _):
            for _ in range(2):
                sent = httpx.post(f"{url}/v1/messages", json=message(), headers=auth(key))
                assert sent.status_code == 200 and sent.json()["state"] == "sent"
        with backend.open() as store:
            assert store.quota.usage("postmark", today) == 2
        with api_server(tmp_path, [provider], db=backend.url) as (url, key, _):
            held = httpx.post(f"{url}/v1/messages", json=message(), headers=auth(key))
            # no provider may take it today: queued again (nothing sent), not sent a third time
            assert held.status_code == 202 and held.json()["state"] == "queued"
            assert "quota" in (held.json()["detail"] or "")
        assert sum(len(v) for v in fake.accepted.values()) == 2
        with backend.open() as store:
            assert store.quota.usage("postmark", today) == 2


def test_a_body_that_stalls_gets_408(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    from urllib.parse import urlsplit

    monkeypatch.setattr("stampcli.server.access.READ_TIMEOUT", 0.4)
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            sock.sendall(
                f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"from":'.encode()
            )
            answer = sock.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert not fake.accepted


def test_the_hot_routes_answer_as_fastapi_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """POST /v1/messages and /batch skip FastAPI's layers (api.build_fast); the other
    methods and paths still get FastAPI's answers; a bug is a logged 500, no traceback."""
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        assert httpx.get(f"{url}/v1/messages", headers=auth(key)).status_code == 405
        assert httpx.put(f"{url}/v1/messages/batch", headers=auth(key)).status_code == 405
        ok = httpx.post(f"{url}/v1/messages?wait=false", json=message(), headers=auth(key))
        assert ok.status_code == 202 and ok.headers["content-type"] == "application/json"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'stamp_http_requests_total{route="/v1/messages",status="202"} 1.0' in metrics

        async def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug with a secret in it")

        monkeypatch.setattr("stampcli.server.api.accept", boom)
        with caplog.at_level("ERROR", logger="stamp.api"):
            bad = httpx.post(f"{url}/v1/messages", json=message(), headers=auth(key))
        assert bad.status_code == 500 and bad.json() == {"error": "internal error"}
        assert "RuntimeError" in caplog.text and "secret" not in bad.text
