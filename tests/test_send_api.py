"""The send API of ``stamp serve --config`` on 127.0.0.1 under uvicorn, against local
provider fakes: sync and async sends, failover, idempotency (also concurrent), keys,
pools, suppressions, every refusal, OpenAPI and metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import ADMIN_KEY, api_server, auth, closed_port, message
from provider_fakes import PostmarkFake

from stampcli.store import open_store


def postmark(fake: PostmarkFake, **extra: Any) -> dict[str, Any]:
    return {"url": fake.provider_url(), "endpoint": fake.url, "timeout": {"connect": 2, "read": 2},
            **extra}  # fmt: skip


def wait_state(url: str, key: str, mid: str, want: str, timeout: float = 10) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{url}/v1/messages/{mid}", headers=auth(key)).json()
        if got["state"] == want or time.monotonic() > end:
            return got  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_sync_send_answers_provider_and_message_id(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        answer = httpx.post(f"{url}/v1/messages", json=message(), headers=auth(key))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["state"] == "sent" and body["provider"] == "postmark"
        assert body["attempts"] == 1
        (rcpt,) = body["recipients"]
        assert rcpt["outcome"] == "accepted" and rcpt["provider_message_id"]
        (got,) = fake.accepted["ann@example.com"]
        assert got.message_id == rcpt["provider_message_id"]
        # CSS inlined and a text part made from the HTML, as for campaigns
        assert 'style="color: red' in got.fields["HtmlBody"]
        assert got.fields["TextBody"].strip() == "Thanks, Ann!"
        assert got.fields["Metadata"]["campaign"] == body["id"]
        # the status route says the same
        status = httpx.get(f"{url}/v1/messages/{body['id']}", headers=auth(key)).json()
        assert status["state"] == "sent" and status["events"] == []


def test_async_send_is_queued_then_sent_by_the_server(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        answer = httpx.post(
            f"{url}/v1/messages?wait=false", json=message(tags=["receipt"]), headers=auth(key)
        )
        assert answer.status_code == 202
        mid = answer.json()["id"]
        assert answer.json()["state"] in ("queued", "sending", "sent")
        done = wait_state(url, key, mid, "sent")
        assert done["state"] == "sent" and done["provider"] == "postmark"
        assert len(fake.accepted["ann@example.com"]) == 1


def test_failover_when_the_first_provider_refuses_connections(tmp_path: Path) -> None:
    dead = {
        "url": "postmark://token",
        "name": "dead",
        "endpoint": f"http://127.0.0.1:{closed_port()}",
        "timeout": {"connect": 1, "read": 1},
    }
    with PostmarkFake() as fake, api_server(tmp_path, [dead, postmark(fake)]) as (url, key, _):
        for i in range(3):
            answer = httpx.post(
                f"{url}/v1/messages", json=message(f"user{i}@example.com"), headers=auth(key)
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["provider"] == "postmark"
            assert fake.accepted[f"user{i}@example.com"]
        health = httpx.get(f"{url}/v1/providers", headers=auth(ADMIN_KEY)).json()
        states = {p["provider"]: p for p in health["providers"]}
        assert states["dead"]["failovers"] >= 1 and states["postmark"]["sent"] == 3


def test_all_providers_down_costs_no_message(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, built):
        fake.fail("server_error", times=None)
        answer = httpx.post(f"{url}/v1/messages", json=message(), headers=auth(key))
        assert answer.status_code == 202  # queued for later, not lost
        mid = answer.json()["id"]
        assert answer.json()["state"] == "queued"
        fake.clear_faults()
        # re-queued with a back-off; make it due now, the drainer sends it
        with open_store(str(tmp_path / "stamp.db")) as store:
            # the protocol has no "make due now": the test store's own SQL
            store.conn.execute("UPDATE api_messages SET next_at = 0")  # type: ignore[attr-defined]
        assert built.api is not None and built.api.drainer is not None
        built.api.drainer.poke()
        assert wait_state(url, key, mid, "sent")["state"] == "sent"
        assert len(fake.accepted["ann@example.com"]) == 1


def test_idempotency_key_same_answer_never_twice(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        headers = {**auth(key), "Idempotency-Key": "order-1"}
        first = httpx.post(f"{url}/v1/messages", json=message(), headers=headers)
        again = httpx.post(f"{url}/v1/messages", json=message(), headers=headers)
        assert first.status_code == again.status_code == 200
        assert first.json()["id"] == again.json()["id"]
        assert first.json()["recipients"] == again.json()["recipients"]
        assert len(fake.accepted["ann@example.com"]) == 1
        other = httpx.post(f"{url}/v1/messages", json=message(subject="Other"), headers=headers)
        assert other.status_code == 422 and "Idempotency-Key" in other.json()["error"]


def test_idempotency_under_concurrent_duplicates(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=20) as client:
                headers = {**auth(key), "Idempotency-Key": "same-key"}
                return await asyncio.gather(
                    *[
                        client.post(f"{url}/v1/messages", json=message(), headers=headers)
                        for _ in range(20)
                    ]
                )

        answers = asyncio.run(burst())
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["id"] for a in answers}) == 1
        assert {a.json()["state"] for a in answers} == {"sent"}
        assert len(fake.accepted["ann@example.com"]) == 1


def test_keys_pools_and_refusals(tmp_path: Path) -> None:
    with (
        PostmarkFake() as fake,
        api_server(tmp_path, [postmark(fake)], extra={"max_body": "20KB"}) as (url, key, _),
    ):
        post = f"{url}/v1/messages"
        assert httpx.post(post, json=message()).status_code == 401
        bad = httpx.post(post, json=message(), headers=auth("stamp_wrong"))
        assert bad.status_code == 401 and "WWW-Authenticate" in bad.headers
        # X-API-Key works too
        ok = httpx.post(post, json=message(), headers={"X-API-Key": key})
        assert ok.status_code == 200
        foreign = httpx.post(post, json=message(**{"from": "x@evil.example"}), headers=auth(key))
        assert foreign.status_code == 403 and "evil.example" in foreign.json()["error"]
        # 422 with the field path
        missing = httpx.post(post, json={"from": "a@acme.example", "to": []}, headers=auth(key))
        assert missing.status_code == 422
        fields = {f["field"] for f in missing.json()["fields"]}
        assert {"to", "subject"} <= fields
        inject = httpx.post(post, json=message(subject="Hi\r\nBcc: x@y.z"), headers=auth(key))
        assert inject.status_code == 422 and inject.json()["fields"][0]["field"] == "subject"
        assert "header injection" in inject.json()["error"]
        hdr = httpx.post(post, json=message(headers={"X-Ok": "a\nb"}), headers=auth(key))
        assert hdr.status_code == 422 and hdr.json()["fields"][0]["field"] == "headers"
        bad_addr = httpx.post(post, json=message(to=["ann@example.com", "nope"]), headers=auth(key))
        assert bad_addr.status_code == 422 and bad_addr.json()["fields"][0]["field"] == "to"
        bad_b64 = httpx.post(
            post,
            json=message(attachments=[{"filename": "a.pdf", "content": "***"}]),
            headers=auth(key),
        )
        assert bad_b64.status_code == 422
        assert bad_b64.json()["fields"][0]["field"] == "attachments[0].content"
        big = httpx.post(post, json=message(html="x" * 30_000), headers=auth(key))
        assert big.status_code == 413
        not_json = httpx.post(post, content=b"{nope", headers=auth(key))
        assert not_json.status_code == 422 and "Traceback" not in not_json.text
        # another pool's or an unknown id: 404
        assert httpx.get(f"{url}/v1/messages/msg_nope", headers=auth(key)).status_code == 404
        # admin routes
        assert httpx.get(f"{url}/v1/pools", headers=auth(key)).status_code == 401
        pools = httpx.get(f"{url}/v1/pools", headers=auth(ADMIN_KEY)).json()["pools"]
        assert pools[0]["name"] == "app" and pools[0]["providers"] == ["postmark"]
        assert key not in json.dumps(pools)


def test_suppressed_recipients_are_refused_by_name(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "stamp.db")) as store:
        store.suppressions.add("gone@example.com", "hard_bounce", "test")
        store.suppressions.add("unsub@example.com", "unsubscribed", "test")
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        post = f"{url}/v1/messages"
        answer = httpx.post(
            post, json=message(to=["ann@example.com", "gone@example.com"]), headers=auth(key)
        )
        assert answer.status_code == 422
        assert "gone@example.com (hard_bounce)" in answer.json()["error"]
        assert answer.json()["fields"][0]["address"] == "gone@example.com"
        assert not fake.accepted  # nothing sent to anyone
        # transactional may pass an unsubscribe, never a hard bounce
        unsub = httpx.post(post, json=message(to="unsub@example.com"), headers=auth(key))
        assert unsub.status_code == 422
        trans = httpx.post(
            post, json=message(to="unsub@example.com", transactional=True), headers=auth(key)
        )
        assert trans.status_code == 200
        hard = httpx.post(
            post, json=message(to="gone@example.com", transactional=True), headers=auth(key)
        )
        assert hard.status_code == 422


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    with (
        PostmarkFake() as fake,
        api_server(tmp_path, [postmark(fake)], pool={"rate": "2/min"}) as (url, key, _),
    ):
        post = f"{url}/v1/messages?wait=false"
        codes = [httpx.post(post, json=message(), headers=auth(key)).status_code for _ in range(3)]
        assert codes[0] == 202 and codes[-1] == 429
        last = httpx.post(post, json=message(), headers=auth(key))
        assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1


def test_batch_template_cc_bcc_and_attachments(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "welcome.html").write_text(
        "<style>h1{font-size:20px}</style><h1>Hello {{ name }}</h1>", encoding="utf-8"
    )
    pdf = base64.b64encode(b"%PDF-1.4 test").decode()
    with (
        PostmarkFake() as fake,
        api_server(tmp_path, [postmark(fake)], extra={"templates": "templates"}) as (url, key, _),
    ):
        batch = {
            "messages": [
                {
                    "from": "hello@acme.example",
                    "to": f"user{i}@example.com",
                    "cc": "boss@example.com" if i == 0 else [],
                    "bcc": "audit@example.com" if i == 0 else [],
                    "subject": "Welcome {{ name }}",
                    "template": "welcome.html",
                    "data": {"name": f"User {i}"},
                    "attachments": [{"filename": "terms.pdf", "content": pdf}],
                }
                for i in range(5)
            ]
        }
        answer = httpx.post(f"{url}/v1/messages/batch?wait=true", json=batch, headers=auth(key))
        assert answer.status_code == 200, answer.text
        outs = answer.json()["messages"]
        assert [o["state"] for o in outs] == ["sent"] * 5
        assert len(outs[0]["recipients"]) == 3  # to, cc, bcc: one provider send each
        (got,) = fake.accepted["user3@example.com"]
        assert got.fields["Subject"] == "Welcome User 3"
        assert "Hello User 3" in got.fields["HtmlBody"] and "font-size" in got.fields["HtmlBody"]
        assert got.fields["Attachments"][0]["Name"] == "terms.pdf"
        assert fake.accepted["audit@example.com"] and fake.accepted["boss@example.com"]
        missing = httpx.post(
            f"{url}/v1/messages",
            json={**batch["messages"][0], "template": "nope.html"},
            headers=auth(key),
        )
        assert missing.status_code == 422 and missing.json()["fields"][0]["field"] == "template"
        too_many = {"messages": [message()] * 501}
        over = httpx.post(f"{url}/v1/messages/batch", json=too_many, headers=auth(key))
        assert over.status_code == 422 and over.json()["fields"][0]["field"] == "messages"


def test_openapi_docs_and_metrics(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        spec = httpx.get(f"{url}/openapi.json").json()
        for path in ("/v1/messages", "/v1/messages/batch", "/v1/messages/{message_id}",
                     "/v1/pools", "/v1/providers"):  # fmt: skip
            assert path in spec["paths"]
        assert not any(p.startswith("/webhooks") for p in spec["paths"])
        assert "MessageIn" in spec["components"]["schemas"]
        assert httpx.get(f"{url}/docs").status_code == 200
        httpx.post(f"{url}/v1/messages", json=message(), headers=auth(key))
        queued = httpx.post(f"{url}/v1/messages?wait=false", json=message(), headers=auth(key))
        wait_state(url, key, queued.json()["id"], "sent")  # sent by the background sender
        text = httpx.get(f"{url}/metrics").text
        assert 'stamp_http_requests_total{route="/v1/messages",status="200"} 1.0' in text
        assert 'stamp_api_messages_total{provider="postmark",state="sent"} 2.0' in text
        assert 'stamp_api_messages_accepted_total{mode="async",pool="app"} 1.0' in text
        assert 'stamp_api_queue_messages{state="sent"} 2.0' in text
        assert 'stamp_provider_state{pool="app",provider="postmark",state="closed"} 1.0' in text


def test_access_log_is_json_without_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="stamp.access")
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, _):
        httpx.post(f"{url}/v1/messages?wait=true", json=message(), headers=auth(key))
        httpx.post(f"{url}/v1/messages", json=message(), headers=auth("stamp_wrong_key"))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "stamp.access"]
    assert [(x["route"], x["status"], x["pool"]) for x in lines] == [
        ("/v1/messages", 200, "app"),
        ("/v1/messages", 401, None),
    ]
    # the access lines only: the test's own httpx client logs its request URLs too
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "stamp.access")
    assert key not in caplog.text and "stamp_wrong_key" not in caplog.text
    assert key not in text and "stamp_wrong_key" not in text and "Thanks" not in text
    assert "wait=true" not in text  # the path only, never the query


def test_breaker_opens_then_a_queued_message_probes_it_closed(tmp_path: Path) -> None:
    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, built):
        assert built.api is not None and built.api.drainer is not None
        (route,) = built.api.sender.routers["app"]._routes
        # the default 30 s cool-down is for production, not for a test
        route.breaker.cool_down = route.breaker.base_cool_down = 0.3
        fake.fail("server_error", times=None)
        ids = []
        for i in range(6):
            answer = httpx.post(
                f"{url}/v1/messages", json=message(f"user{i}@example.com"), headers=auth(key)
            )
            assert answer.status_code == 202 and answer.json()["state"] == "queued"
            ids.append(answer.json()["id"])
        health = httpx.get(f"{url}/v1/providers", headers=auth(ADMIN_KEY)).json()
        assert health["providers"][0]["state"] == "open"
        assert health["queue"] == {"queued": 6}
        fake.clear_faults()
        with open_store(str(tmp_path / "stamp.db")) as store:
            store.conn.execute("UPDATE api_messages SET next_at = 0")  # type: ignore[attr-defined]
        time.sleep(0.4)  # past the cool-down: the next message is the half-open probe
        built.api.drainer.poke()
        for mid in ids:
            assert wait_state(url, key, mid, "sent")["state"] == "sent"
        health = httpx.get(f"{url}/v1/providers", headers=auth(ADMIN_KEY)).json()
        assert health["providers"][0]["state"] == "closed"
        assert all(len(fake.accepted[f"user{i}@example.com"]) == 1 for i in range(6))


def test_key_rotation_by_reload(tmp_path: Path) -> None:
    from stampcli.sendapi.keys import hash_key, new_key
    from stampcli.server.run import reload_keys

    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, built):
        assert built.api is not None
        config = tmp_path / "serve.yml"
        fresh = new_key()
        text = config.read_text().replace(hash_key(key), hash_key(fresh))
        config.write_text(text)
        assert reload_keys(built.api, {"STAMP_ADMIN_KEY": ADMIN_KEY}).startswith(
            "serve.yml reloaded"
        )
        post = f"{url}/v1/messages?wait=false"
        assert httpx.post(post, json=message(), headers=auth(key)).status_code == 401
        assert httpx.post(post, json=message(), headers=auth(fresh)).status_code == 202
        # a reload that changes providers is refused whole; the keys stay as they were
        config.write_text(text.replace("postmark://", "postmark://other"))
        said = reload_keys(built.api, {"STAMP_ADMIN_KEY": ADMIN_KEY})
        assert "restart" in said
        assert httpx.post(post, json=message(), headers=auth(fresh)).status_code == 202


def test_events_of_api_messages_reach_get_and_no_campaign(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from stampcli.events.model import DeliveryEvent, EventType
    from stampcli.service.events import record_events

    with PostmarkFake() as fake, api_server(tmp_path, [postmark(fake)]) as (url, key, built):
        sent = httpx.post(f"{url}/v1/messages", json=message(), headers=auth(key)).json()
        event = DeliveryEvent(
            type=EventType.DELIVERED,
            provider="postmark",
            event_id="ev-1",
            occurred_at=datetime.now(UTC),
            recipient="ann@example.com",
            campaign=sent["id"],
            recipient_key="ann@example.com",
        )
        assert built.api is not None
        with open_store(str(tmp_path / "stamp.db")) as store:
            record_events(store, [event])
        got = httpx.get(f"{url}/v1/messages/{sent['id']}", headers=auth(key)).json()
        assert [(e["type"], e["recipient"]) for e in got["events"]] == [
            ("delivered", "ann@example.com")
        ]
        with open_store(str(tmp_path / "stamp.db")) as store:
            (row,) = store.api_queue.events_for(sent["id"])
            assert row.matched_by is None  # not pinned on a campaign's ledger by address
