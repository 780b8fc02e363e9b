"""The four routes ``test_serve.py`` leaves to the parsers' own tests, over the real server:
Resend (Svix signatures), Mailjet, SparkPost and Brevo (HTTP basic auth). Each accepts its
provider's genuine request, stores its event, and refuses a forged one storing nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from inbound_helpers import basic, echo
from provider_fakes import sample_message
from serve_helpers import event_rows, running, serve_store
from svix.webhooks import Webhook

RESEND_SECRET = "whsec_" + base64.b64encode(b"resend-test-secret-32-bytes-long").decode()
USER, PASSWORD = "hooks", "pw-0123456789abcdef"
ENV = {
    "RESEND_WEBHOOK_SECRET": RESEND_SECRET,
    "STAMP_WEBHOOK_USER": USER,
    "STAMP_WEBHOOK_PASSWORD": PASSWORD,
}
JSON = {"Content-Type": "application/json"}


def resend(forged: bool) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "type": "email.bounced",
            "created_at": "2026-11-30T10:00:00.000Z",
            "data": {
                "email_id": "4ef9a417-02e9-4d39-ad75-9611e0fcc33c",
                "to": ["Ann@Example.com"],
                "bounce": {"type": "Permanent", "message": "mailbox does not exist"},
                **echo("resend", sample_message()),
            },
        }
    ).encode()
    now = datetime.now(UTC)
    secret = "whsec_" + base64.b64encode(b"not-the-secret-but-32-bytes-long").decode()
    signature = Webhook(secret if forged else RESEND_SECRET).sign("msg_1", now, body.decode())
    headers = {
        **JSON,
        "svix-id": "msg_1",
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": signature,
    }
    return body, headers


def _basic(forged: bool) -> dict[str, str]:
    return {**JSON, **basic(USER, "wrong-password" if forged else PASSWORD)}


def mailjet(forged: bool) -> tuple[bytes, dict[str, str]]:
    event = {
        "event": "bounce",
        "time": 1764000000,
        "MessageID": 19421777835146490,
        "email": "Ann@Example.com",
        "hard_bounce": True,
        "error": "user unknown",
        **echo("mailjet", sample_message()),
    }
    return json.dumps([event]).encode(), _basic(forged)


def sparkpost(forged: bool) -> tuple[bytes, dict[str, str]]:
    event = {
        "type": "bounce",
        "bounce_class": "10",
        "event_id": "92356927693813856",
        "timestamp": "1764000000",
        "rcpt_to": "Ann@Example.com",
        "transmission_id": "30223545419990071",
        "reason": "550 5.1.1 user unknown",
        **echo("sparkpost", sample_message()),
    }
    body = [{"msys": {"message_event": event}}]
    return json.dumps(body).encode(), _basic(forged)


def brevo(forged: bool) -> tuple[bytes, dict[str, str]]:
    event = {
        "event": "hard_bounce",
        "email": "Ann@Example.com",
        "id": 1234,
        "date": "2026-11-30 11:00:00",
        "ts_event": 1764000000,
        "message-id": "<201798300811.5787683@relay.domain.com>",
        "reason": "user unknown",
        **echo("brevo", sample_message()),
    }
    return json.dumps(event).encode(), _basic(forged)


REQUESTS: dict[str, Callable[[bool], tuple[bytes, dict[str, str]]]] = {
    "resend": resend,
    "mailjet": mailjet,
    "sparkpost": sparkpost,
    "brevo": brevo,
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    built, db = serve_store(tmp_path_factory.mktemp("routes"), ENV)
    with running(built) as url:
        yield url, db


def _rows(db: Path, provider: str) -> list[dict[str, Any]]:
    return [row for row in event_rows(db) if row["provider"] == provider]


@pytest.mark.parametrize("provider", sorted(REQUESTS))
def test_route_accepts_the_genuine_request_and_refuses_a_forged_one(
    served: Any, provider: str
) -> None:
    url, db = served
    body, headers = REQUESTS[provider](True)
    forged = httpx.post(f"{url}/webhooks/{provider}", content=body, headers=headers)
    assert forged.status_code in (401, 403), forged.text
    assert _rows(db, provider) == []  # nothing stored on a forged request
    body, headers = REQUESTS[provider](False)
    answer = httpx.post(f"{url}/webhooks/{provider}", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    [row] = _rows(db, provider)
    assert row["type"] == "bounced" and row["recipient"] == "ann@example.com"
    assert PASSWORD not in row["raw"] and RESEND_SECRET not in row["raw"]


def test_the_webhook_lane_answers_as_the_app_does(served: Any) -> None:
    """POST and HEAD of /webhooks/<provider> skip Starlette (StampApp's ASGI lane): the
    same answers, headers included, as the app's other routes give."""
    url, db = served
    body, headers = REQUESTS["brevo"](False)
    answer = httpx.post(f"{url}/webhooks/brevo", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json() == {"accepted": 1, "rejected": 0, "ignored": 0}
    refused = httpx.post(f"{url}/webhooks/brevo", content=body, headers=_basic(True))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Basic realm="stamp"'
    assert "error" in refused.json() and PASSWORD not in refused.text
    missing = httpx.post(f"{url}/webhooks/sendgrid", content=b"[]", headers=JSON)
    assert missing.status_code == 404
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in missing.json()["error"]
    assert httpx.post(f"{url}/webhooks/nosuch", content=b"[]").json() == {
        "error": "no such webhook"
    }
    head = httpx.head(f"{url}/webhooks/brevo")
    assert head.status_code == 200 and head.headers["content-length"] == "0"
    # what the lane does not take goes on to the Starlette route as before
    assert httpx.get(f"{url}/webhooks/brevo").status_code == 405
    assert httpx.post(f"{url}/webhooks/brevo/more", content=body).status_code == 404
    assert httpx.post(f"{url}/webhooks/", content=body).status_code == 404
    assert len(_rows(db, "brevo")) == 1  # one event, however often it came
