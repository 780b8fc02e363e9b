"""``stamp serve`` on 127.0.0.1 under uvicorn: webhook routes with real signatures, bad
input, durability answers, health and the one-click unsubscribe receiver."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from inbound_helpers import (
    TOPIC,
    basic,
    ecdsa_key,
    pem,
    rsa_certificate,
    sendgrid_headers,
    sns_headers,
    sns_notification,
    sns_sign,
)
from serve_helpers import (
    MAILGUN_KEY,
    UNSUBSCRIBE_SECRET,
    event_rows,
    mailgun_body,
    running,
    sendgrid_event,
    serve_store,
)

from stampcli.compliance.tokens import make_token
from stampcli.errors import StoreError
from stampcli.providers.webhook import mandrill_signature
from stampcli.store import suppressions as sup
from stampcli.store.db import Store

JSON = {"Content-Type": "application/json"}
PRIVATE, PUBLIC = ecdsa_key()
BASIC_ENV = {"STAMP_WEBHOOK_USER": "hook", "STAMP_WEBHOOK_PASSWORD": "pw-0123456789abcdef"}
ENV = {
    "SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC,
    "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    "SES_SNS_TOPIC_ARNS": TOPIC,
    "MANDRILL_WEBHOOK_KEY": "mandrill-key-0123456789",
    "STAMP_PUBLIC_URL": "https://hooks.example.com",
    "STAMP_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
    **BASIC_ENV,
}


def signed_sendgrid(events: list[Any], stamp: float | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    return body, sendgrid_headers(PRIVATE, body, str(int(time.time() if stamp is None else stamp)))


@pytest.fixture
def served(tmp_path: Path) -> Any:
    built, db = serve_store(tmp_path, ENV)
    with running(built) as url:
        yield url, db


# -- configuration ----------------------------------------------------------------------


def test_unconfigured_route_answers_404_and_start_up_says_why(tmp_path: Path) -> None:
    built, _ = serve_store(tmp_path, {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY})
    assert "POST /webhooks/mailgun: ready" in built.report
    assert any(
        line.startswith("POST /webhooks/sendgrid: not configured")
        and "SENDGRID_WEBHOOK_PUBLIC_KEY" in line
        for line in built.report
    )
    assert any(line.startswith("/unsubscribe: not configured") for line in built.report)
    with running(built) as url:
        answer = httpx.post(f"{url}/webhooks/sendgrid", content=b"[]", headers=JSON)
        assert answer.status_code == 404
        assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in answer.json()["error"]
        assert httpx.post(f"{url}/webhooks/nope", content=b"{}").status_code == 404
        assert httpx.post(f"{url}/unsubscribe?t=x").status_code == 404


def test_healthz_answers_when_the_store_does(served: Any) -> None:
    url, _ = served
    answer = httpx.get(f"{url}/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


# -- SendGrid: batches, signatures, bad input ---------------------------------------------


def test_sendgrid_signed_batch_is_committed_before_200(served: Any) -> None:
    url, db = served
    body, headers = signed_sendgrid([sendgrid_event(i) for i in range(1000)])
    answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 1000, "rejected": 0, "ignored": 0}
    rows = event_rows(db)  # a fresh connection: the rows are committed
    assert len(rows) == 1000
    assert {r["provider"] for r in rows} == {"sendgrid"} and rows[0]["type"] == "delivered"
    # redelivered: 200 again, stored once
    again = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
    assert again.status_code == 200 and len(event_rows(db)) == 1000


@pytest.mark.parametrize("case", ["forged", "unsigned", "stale", "tampered"])
def test_sendgrid_refuses_unauthentic_requests_and_stores_nothing(served: Any, case: str) -> None:
    url, db = served
    body, headers = signed_sendgrid([sendgrid_event(1)])
    if case == "forged":
        other, _ = ecdsa_key()
        headers = sendgrid_headers(other, body, headers["X-Twilio-Email-Event-Webhook-Timestamp"])
    elif case == "unsigned":
        headers = dict(JSON)
    elif case == "stale":
        body, headers = signed_sendgrid([sendgrid_event(1)], stamp=time.time() - 301)
    else:
        body = body.replace(b"user1@", b"user2@")
    answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 403, answer.text
    assert (
        "Traceback" not in answer.text
        and headers.get("X-Twilio-Email-Event-Webhook-Signature", "@@") not in answer.text
    )
    assert event_rows(db) == []


def test_mixed_batch_keeps_the_good_events_and_counts_the_bad(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url, db = served
    events = [
        sendgrid_event(1),
        sendgrid_event(2, event="no-such-type"),
        sendgrid_event(3, email="not an address\r\nBcc: x@y"),
        "not an object",
        sendgrid_event(4, reason="line1\r\nInjected: header" + "x" * 5000, event="bounce"),
        sendgrid_event(5, useragent="\x00\x01binary\xff" * 100),
    ]
    body, headers = signed_sendgrid(events)
    with caplog.at_level(logging.WARNING, logger="stamp.serve"):
        answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 3, "rejected": 3, "ignored": 0}
    rows = event_rows(db)
    assert sorted(r["recipient"] for r in rows) == [
        "user1@example.com",
        "user4@example.com",
        "user5@example.com",
    ]
    bounce = next(r for r in rows if r["type"] == "bounced")
    assert "\r" not in bounce["reason"] and "\n" not in bounce["reason"]
    assert len(bounce["reason"]) <= 500
    assert "3 of 6 events rejected" in caplog.text
    assert headers["X-Twilio-Email-Event-Webhook-Signature"] not in caplog.text


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[]", "text/html", 400),
        (b"", "application/json", 400),
        (b'{"event": "delivered"}', "application/json", 400),  # an object, not an array
        (b'["x", 1]', "application/json", 400),  # no usable event at all
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_store_nothing(
    served: Any, body: bytes, content_type: str, status: int
) -> None:
    url, db = served
    headers = sendgrid_headers(PRIVATE, body, str(int(time.time())))
    headers["Content-Type"] = content_type
    answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] and "Traceback" not in answer.text
    assert event_rows(db) == []


def test_body_over_5_mb_is_refused_before_it_is_read(served: Any) -> None:
    url, db = served
    big = b"[" + b" " * (5 * 1024 * 1024) + b"]"
    answer = httpx.post(f"{url}/webhooks/sendgrid", content=big, headers=JSON)
    assert answer.status_code == 413

    def chunks() -> Any:  # no Content-Length: the cap holds while streaming
        for _ in range(6):
            yield b" " * (1024 * 1024)

    answer = httpx.post(f"{url}/webhooks/sendgrid", content=chunks(), headers=JSON)
    assert answer.status_code == 413
    assert event_rows(db) == []


def test_store_error_answers_503_so_the_provider_retries(tmp_path: Path) -> None:
    def broken(store: Any, events: Any) -> None:
        raise StoreError("store stamp.db: database or disk is full")

    built, _ = serve_store(tmp_path, ENV, record=broken)
    with running(built) as url:
        body, headers = signed_sendgrid([sendgrid_event(1)])
        answer = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
        assert answer.status_code == 503
        assert "retry" in answer.json()["error"]


# -- Mailgun: one event a request, replays ------------------------------------------------


def test_mailgun_event_stored_and_replay_refused(served: Any) -> None:
    url, db = served
    body = mailgun_body(recipient="ann@example.com")
    assert httpx.post(f"{url}/webhooks/mailgun", content=body, headers=JSON).status_code == 200
    replay = httpx.post(f"{url}/webhooks/mailgun", content=body, headers=JSON)
    assert replay.status_code == 403 and "replay" in replay.json()["error"]
    stale = mailgun_body(stamp=time.time() - 600)
    assert httpx.post(f"{url}/webhooks/mailgun", content=stale, headers=JSON).status_code == 403
    forged = mailgun_body(key="key-wrong")
    assert httpx.post(f"{url}/webhooks/mailgun", content=forged, headers=JSON).status_code == 403
    assert [r["recipient"] for r in event_rows(db)] == ["ann@example.com"]


# -- HTTP Basic providers -----------------------------------------------------------------


def postmark_bounce() -> bytes:
    return json.dumps(
        {
            "RecordType": "Bounce",
            "ID": 4323372036854775807,
            "Type": "HardBounce",
            "TypeCode": 1,
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Description": "The server was unable to deliver your message",
            "Email": "zaphod@example.com",
            "BouncedAt": "2026-11-30T10:00:00Z",
            "Metadata": {"campaign": "spring"},
            "MessageStream": "outbound",
        }
    ).encode()


def test_postmark_needs_basic_credentials(served: Any) -> None:
    url, db = served
    none = httpx.post(f"{url}/webhooks/postmark", content=postmark_bounce(), headers=JSON)
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Basic")
    wrong = {**JSON, **basic("hook", "wrong")}
    assert (
        httpx.post(f"{url}/webhooks/postmark", content=postmark_bounce(), headers=wrong)
    ).status_code == 401
    assert event_rows(db) == []
    good = {**JSON, **basic("hook", BASIC_ENV["STAMP_WEBHOOK_PASSWORD"])}
    answer = httpx.post(f"{url}/webhooks/postmark", content=postmark_bounce(), headers=good)
    assert answer.status_code == 200, answer.text
    [row] = event_rows(db)
    assert row["type"] == "bounced" and row["bounce_kind"] == "hard"
    assert BASIC_ENV["STAMP_WEBHOOK_PASSWORD"] not in row["raw"]
    with Store(db) as store:  # a hard bounce suppresses the address
        assert store.suppressions.get("zaphod@example.com") is not None


# -- Mandrill: HEAD check, signed form ----------------------------------------------------


def test_mandrill_head_then_signed_post(served: Any) -> None:
    url, db = served
    assert httpx.head(f"{url}/webhooks/mandrill").status_code == 200
    events = [
        {
            "event": "hard_bounce",
            "ts": 1764000000,
            "_id": "abc123",
            "msg": {"email": "ford@example.com", "_id": "abc123", "metadata": {}, "tags": []},
        }
    ]
    params = [("mandrill_events", json.dumps(events))]
    signature = mandrill_signature(
        ENV["MANDRILL_WEBHOOK_KEY"], "https://hooks.example.com/webhooks/mandrill", params
    )
    answer = httpx.post(
        f"{url}/webhooks/mandrill", data=dict(params), headers={"X-Mandrill-Signature": signature}
    )
    assert answer.status_code == 200, answer.text
    bad = httpx.post(
        f"{url}/webhooks/mandrill", data=dict(params), headers={"X-Mandrill-Signature": "AAAA"}
    )
    assert bad.status_code == 403
    assert [r["recipient"] for r in event_rows(db)] == ["ford@example.com"]


# -- SES through SNS ----------------------------------------------------------------------


def test_ses_notification_and_subscription_confirmation(tmp_path: Path) -> None:
    key, cert = rsa_certificate("test-only.example")
    fetched: list[str] = []
    confirmed: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return pem(cert)

    built, db = serve_store(
        tmp_path,
        ENV,
        fetch=fetch,
        confirm=confirmed.append,
        ses_options={"trusted_certificates": [cert]},
    )
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": "arthur@example.com"}],
            "timestamp": "2026-11-30T10:00:00.000Z",
        },
        "mail": {"messageId": "0100018-ses-id", "destination": ["arthur@example.com"]},
    }
    with running(built) as url:
        message = sns_sign(sns_notification(bounce), key)
        body = json.dumps(message).encode()
        answer = httpx.post(f"{url}/webhooks/ses", content=body, headers=sns_headers(message))
        assert answer.status_code == 200, answer.text
        # the same message signed by another key is refused
        other, _ = rsa_certificate(index=1)
        forged = sns_sign(sns_notification(bounce, "sns-2"), other)
        answer = httpx.post(
            f"{url}/webhooks/ses", content=json.dumps(forged).encode(), headers=sns_headers(forged)
        )
        assert answer.status_code == 403
        subscribe = sns_sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "sns-3",
                "Token": "tok",
                "TopicArn": TOPIC,
                "Message": "You have chosen to subscribe",
                "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
                "Timestamp": "2026-11-30T10:00:00.000Z",
            },
            key,
        )
        answer = httpx.post(
            f"{url}/webhooks/ses",
            content=json.dumps(subscribe).encode(),
            headers=sns_headers(subscribe),
        )
        assert answer.status_code == 200, answer.text
    assert confirmed == [subscribe["SubscribeURL"]]
    assert fetched and all(u.startswith("https://sns.eu-west-1.amazonaws.com/") for u in fetched)
    assert [r["recipient"] for r in event_rows(db)] == ["arthur@example.com"]


# -- one-click unsubscribe ----------------------------------------------------------------


def test_one_click_unsubscribe_moved_into_serve(served: Any) -> None:
    url, db = served
    token = make_token(UNSUBSCRIBE_SECRET, "Zaphod@Example.com", "spring")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    page = httpx.get(f"{url}/unsubscribe?t={token}")
    assert page.status_code == 200 and "<form" in page.text
    with Store(db) as store:
        assert list(sup.iter_suppressions(store)) == []  # GET changes nothing
    done = httpx.post(
        f"{url}/unsubscribe?t={token}", content=b"List-Unsubscribe=One-Click", headers=form
    )
    assert done.status_code == 200
    # the old receiver's URL (any path was "/") keeps working
    again = httpx.post(f"{url}/?t={token}", content=b"List-Unsubscribe=One-Click", headers=form)
    assert again.status_code == 200
    with Store(db) as store:
        [entry] = list(sup.iter_suppressions(store))
    assert entry.key == "zaphod@example.com" and entry.source == "unsubscribe:spring"
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    bad = httpx.post(
        f"{url}/unsubscribe?t={forged}", content=b"List-Unsubscribe=One-Click", headers=form
    )
    assert bad.status_code == 403
    assert httpx.post(f"{url}/unsubscribe?t={token}", content=b"x=y", headers=form).status_code == (
        400
    )
    assert httpx.put(f"{url}/unsubscribe?t={token}").status_code == 405
    big = httpx.post(f"{url}/unsubscribe?t={token}", content=b"x" * 9000, headers=form)
    assert big.status_code == 413


def test_slow_header_senders_are_cut_off(served: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    monkeypatch.setattr("stampcli.server.run.HEADER_TIMEOUT", 0.5)
    # the protocol reads the constant when a connection is made
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
        start = time.monotonic()
        assert conn.recv(100) == b""  # closed by the server
        assert time.monotonic() - start < 4
    assert httpx.get(f"{url}/healthz").status_code == 200  # others are still served


def test_no_traceback_or_secret_in_any_answer(served: Any) -> None:
    url, _ = served
    for path, body in [
        ("/webhooks/sendgrid", b"\xff\xfe\x00"),
        ("/webhooks/mailgun", b'{"signature": 1}'),
        ("/webhooks/ses", b'{"Type": "Notification"}'),
        ("/webhooks/postmark", base64.b64encode(b"x" * 100)),
    ]:
        answer = httpx.post(f"{url}{path}", content=body, headers=JSON)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)
        assert "Traceback" not in answer.text
        for secret in (MAILGUN_KEY, BASIC_ENV["STAMP_WEBHOOK_PASSWORD"], UNSUBSCRIBE_SECRET):
            assert secret not in answer.text
