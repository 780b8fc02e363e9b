"""Local HTTP servers that speak each provider's suppression API, with its paging.

One :class:`FakeSuppressionAPI` per provider kind, on 127.0.0.1 port 0, in a
thread. It holds a few lists of records in the provider's documented shape,
checks credentials the way the provider does, enforces its documented page
size limits, and can be told to throttle once (429) or fail (``fail_status``).
Every request is recorded for assertions.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

KEY = "fake-api-key-0123456789"
AWS_ACCESS = "AKIDFAKEACCESS0001"
AWS_SECRET = "fake/aws+secret/key/0123456789"


@dataclass
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeState:
    kind: str
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    domain: str = "mg.example.com"
    throttle_once: bool = False
    fail_status: int | None = None
    fail_after_pages: int | None = None  # answer fail_status from this page on
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _q(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return -1


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not self._gate(state, parts.path, query):
            return
        if not self._authorised(state.kind):
            self._send(401, {"message": "unauthorized"})
            return
        handler = getattr(self, f"_{state.kind}")
        handler(state, parts.path, query)

    def do_POST(self) -> None:
        """Mandrill: every call a POST, the key inside the JSON body."""
        state = self.server.state
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._gate(state, path, {}):
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if state.kind != "mandrill" or not isinstance(body, dict):
            self._send(400, {"status": "error", "name": "ValidationError", "message": "bad"})
            return
        if body.get("key") != KEY:
            # Mandrill answers every API error as HTTP 500
            self._send(
                500, {"status": "error", "code": -1, "name": "Invalid_Key", "message": "Invalid"}
            )
            return
        self._mandrill(state, path, body)

    def _gate(self, state: FakeState, path: str, query: dict[str, str]) -> bool:
        """Record the request; answer a planned throttle or failure (False) or go on."""
        with state.lock:
            state.requests.append(Recorded(path, query, dict(self.headers.items())))
            pages = len(state.requests)
            throttle = state.throttle_once
            state.throttle_once = False
        if throttle:
            self._send(429, {"errors": [{"message": "too many requests"}]}, {"Retry-After": "0"})
            return False
        if state.fail_status is not None and (
            state.fail_after_pages is None or pages > state.fail_after_pages
        ):
            self._send(state.fail_status, {"message": f"failing on purpose with {KEY[:4]}"})
            return False
        return True

    def _authorised(self, kind: str) -> bool:
        h = self.headers
        if kind in ("sendgrid",):
            return h.get("Authorization") == f"Bearer {KEY}"
        if kind == "postmark":
            return h.get("X-Postmark-Server-Token") == KEY
        if kind == "brevo":
            return h.get("api-key") == KEY
        if kind == "sparkpost":
            return h.get("Authorization") == KEY
        if kind == "mailgun":
            return (
                h.get("Authorization")
                == "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
            )
        if kind == "mailjet":
            return (
                h.get("Authorization")
                == "Basic " + base64.b64encode(f"{KEY}:{KEY[::-1]}".encode()).decode()
            )
        if kind == "ses":
            auth = h.get("Authorization") or ""
            return (
                auth.startswith(f"AWS4-HMAC-SHA256 Credential={AWS_ACCESS}/")
                and "/eu-west-1/ses/aws4_request" in auth
                and "Signature=" in auth
                and bool(h.get("x-amz-date"))
            )
        return False

    # ------------------------------------------------------------------ providers

    def _sendgrid(self, state: FakeState, path: str, query: dict[str, str]) -> None:
        name = path.removeprefix("/v3/suppression/")
        if name not in state.lists:
            self._send(404, {"errors": [{"message": "not found"}]})
            return
        limit, offset = _q(query, "limit", 50), _q(query, "offset", 0)
        if not 1 <= limit <= 500 or offset < 0:
            self._send(400, {"errors": [{"field": "limit", "message": "limit must be 1-500"}]})
            return
        self._send(200, state.lists[name][offset : offset + limit])

    def _mailgun(self, state: FakeState, path: str, query: dict[str, str]) -> None:
        prefix = f"/v3/{state.domain}/"
        name = path.removeprefix(prefix)
        if not path.startswith(prefix) or name not in state.lists:
            self._send(404, {"message": "Domain not found"})
            return
        limit = _q(query, "limit", 100)
        if not 1 <= limit <= 1000:
            self._send(400, {"message": "Limit must be between 1 and 1000"})
            return
        items = state.lists[name]
        start = 0
        if query.get("page") == "next":
            after = query.get("address", "")
            start = next((i + 1 for i, it in enumerate(items) if it["address"] == after), 0)
        page = items[start : start + limit]
        base = f"https://api.mailgun.net{prefix}{name}"
        last = page[-1]["address"] if page else query.get("address", "")
        after_last = urlencode({"page": "next", "address": last, "limit": limit})
        self._send(
            200,
            {
                "items": page,
                "paging": {
                    "first": f"{base}?{urlencode({'limit': limit})}",
                    "next": f"{base}?{after_last}",
                    "previous": f"{base}?{urlencode({'page': 'previous', 'limit': limit})}",
                    "last": f"{base}?{urlencode({'page': 'last', 'limit': limit})}",
                },
            },
        )

    def _postmark(self, state: FakeState, path: str, query: dict[str, str]) -> None:
        parts = path.strip("/").split("/")
        if (
            len(parts) != 4
            or parts[0] != "message-streams"
            or parts[2:] != ["suppressions", "dump"]
        ):
            self._send(404, {"ErrorCode": 404, "Message": "not found"})
            return
        self._send(200, {"Suppressions": state.lists.get(parts[1], [])})

    def _ses(self, state: FakeState, path: str, query: dict[str, str]) -> None:
        if path != "/v2/email/suppression/addresses":
            self._send(404, {"message": "not found"})
            return
        size = _q(query, "PageSize", 1000)
        if not 1 <= size <= 1000:
            self._send(400, {"message": "PageSize must be 1-1000"})
            return
        token = query.get("NextToken")
        start = int(base64.b64decode(token).decode()) if token else 0
        items = state.lists["suppressed"]
        body: dict[str, Any] = {"SuppressedDestinationSummaries": items[start : start + size]}
        if start + size < len(items):
            body["NextToken"] = base64.b64encode(str(start + size).encode()).decode()
        self._send(200, body)

    def _mailjet(self, state: FakeState, path: str, query: dict[str, str]) -> None:
        if path != "/v3/REST/contact":
            self._send(404, {"ErrorMessage": "not found"})
            return
        limit, offset = _q(query, "Limit", 10), _q(query, "Offset", 0)
        if not 0 <= limit <= 1000:
            self._send(400, {"ErrorMessage": "Limit must be 0-1000"})
            return
        items = state.lists["contacts"]
        if query.get("IsExcludedFromCampaigns") == "true":
            items = [c for c in items if c["IsExcludedFromCampaigns"]]
        page = items[offset : offset + limit]
        self._send(200, {"Count": len(page), "Data": page, "Total": len(items)})

    def _brevo(self, state: FakeState, path: str, query: dict[str, str]) -> None:
        if path != "/v3/smtp/blockedContacts":
            self._send(404, {"code": "not_found", "message": "not found"})
            return
        limit, offset = _q(query, "limit", 50), _q(query, "offset", 0)
        if not 0 <= limit <= 100:
            self._send(400, {"code": "out_of_range", "message": "limit must be 0-100"})
            return
        items = state.lists["contacts"]
        self._send(200, {"contacts": items[offset : offset + limit], "count": len(items)})

    def _sparkpost(self, state: FakeState, path: str, query: dict[str, str]) -> None:
        if path != "/api/v1/suppression-list":
            self._send(404, {"errors": [{"message": "resource not found"}]})
            return
        per_page = _q(query, "per_page", 2000)
        if not 1 <= per_page <= 10_000:
            self._send(422, {"errors": [{"message": "per_page must be 1-10000"}]})
            return
        items = state.lists["suppressions"]
        cursor = query.get("cursor", "initial")
        start = 0 if cursor == "initial" else int(cursor.removeprefix("c"))
        page = items[start : start + per_page]
        links = [{"href": f"/api/v1/suppression-list?cursor=initial&per_page={per_page}",
                  "rel": "first"}]  # fmt: skip
        if start + per_page < len(items):
            nxt = f"/api/v1/suppression-list?cursor=c{start + per_page}&per_page={per_page}"
            links.append({"href": nxt, "rel": "next"})
        self._send(200, {"results": page, "links": links, "total_count": len(items)})

    def _mandrill(self, state: FakeState, path: str, body: dict[str, Any]) -> None:
        if path not in ("/api/1.0/rejects/list", "/api/1.0/rejects/list.json"):
            self._send(500, {"status": "error", "code": -1, "name": "Unknown_Method"})
            return
        items = [
            r for r in state.lists["rejects"] if body.get("include_expired") or not r["expired"]
        ]
        self._send(200, items[:1000])  # the API's documented maximum; no paging


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FakeState) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)


@contextmanager
def fake_api(state: FakeState) -> Iterator[str]:
    """Run a fake provider API for ``state``; yields its base URL."""
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---------------------------------------------------------------------- sample data


def sendgrid_state(n_bounces: int = 1100) -> FakeState:
    return FakeState(
        "sendgrid",
        {
            "bounces": [
                {
                    "created": 1443651125 + i,
                    "email": f"Bounce{i}@Example.com",
                    "reason": "550 5.1.1 no such user",
                    "status": "5.1.1",
                }
                for i in range(n_bounces)
            ],
            "blocks": [
                {
                    "created": 1443651154,
                    "email": "blocked@example.com",
                    "reason": "error dialing remote address",
                    "status": "4.0.0",
                }
            ],
            "spam_reports": [
                {"created": 1443651141, "email": "spam@example.com", "ip": "10.63.202.100"}
            ],
            "invalid_emails": [
                {"created": 1449953655, "email": "typo@example.comm", "reason": "unknown domain"},
                {"created": 1449953655, "email": "not an address", "reason": "syntax"},
            ],
            "unsubscribes": [{"created": 1443651141, "email": "left@example.com"}],
        },
    )


def mailgun_state(n_bounces: int = 2500) -> FakeState:
    return FakeState(
        "mailgun",
        {
            "bounces": [
                {
                    "address": f"gone{i}@example.com",
                    "code": "550",
                    "error": "No such mailbox",
                    "created_at": "Fri, 21 Oct 2011 11:02:55 UTC",
                }
                for i in range(n_bounces)
            ],
            "complaints": [
                {"address": "angry@example.com", "created_at": "Tue, 15 Nov 2011 08:25:11 UTC"}
            ],
            "unsubscribes": [
                {
                    "address": "quit@example.com",
                    "tags": ["*"],
                    "created_at": "Fri, 21 Oct 2011 11:02:55 UTC",
                }
            ],
        },
    )


def postmark_state() -> FakeState:
    return FakeState(
        "postmark",
        {
            "broadcast": [
                {
                    "EmailAddress": "address@wildbit.example",
                    "SuppressionReason": "ManualSuppression",
                    "Origin": "Recipient",
                    "CreatedAt": "2019-12-17T08:58:33-05:00",
                },
                {
                    "EmailAddress": "bounce.address@wildbit.example",
                    "SuppressionReason": "HardBounce",
                    "Origin": "Recipient",
                    "CreatedAt": "2019-12-17T08:58:33-05:00",
                },
                {
                    "EmailAddress": "spam.complaint.address@wildbit.example",
                    "SuppressionReason": "SpamComplaint",
                    "Origin": "Recipient",
                    "CreatedAt": "2019-12-17T08:58:33-05:00",
                },
            ],
            "outbound": [
                {
                    "EmailAddress": "other-stream@wildbit.example",
                    "SuppressionReason": "HardBounce",
                    "Origin": "Recipient",
                    "CreatedAt": "2019-12-17T08:58:33-05:00",
                }
            ],
        },
    )


def ses_state(n: int = 2100) -> FakeState:
    return FakeState(
        "ses",
        {
            "suppressed": [
                {
                    "EmailAddress": f"ses{i}@example.com",
                    "Reason": "COMPLAINT" if i % 3 == 0 else "BOUNCE",
                    "LastUpdateTime": 1586552585.0 + i,
                }
                for i in range(n)
            ]
        },
    )


def mailjet_state(n: int = 1500) -> FakeState:
    return FakeState(
        "mailjet",
        {
            "contacts": [
                {
                    "ID": i,
                    "Email": f"mj{i}@example.com",
                    "IsExcludedFromCampaigns": i % 2 == 0,
                    "CreatedAt": "2020-01-01T00:00:00Z",
                }
                for i in range(n)
            ]
        },
    )


def brevo_state(n: int = 250) -> FakeState:
    codes = ["hardBounce", "contactFlaggedAsSpam", "unsubscribedViaEmail", "adminBlocked"]
    return FakeState(
        "brevo",
        {
            "contacts": [
                {
                    "email": f"br{i}@example.com",
                    "senderEmail": "news@acme.example",
                    "reason": {"code": codes[i % 4], "message": "reason text"},
                    "blockedAt": "2021-05-06T07:08:09.000+02:00",
                }
                for i in range(n)
            ]
        },
    )


def mandrill_state(n: int = 120) -> FakeState:
    reasons = ["hard-bounce", "soft-bounce", "spam", "unsub", "custom", "invalid", "invalid-sender"]
    return FakeState(
        "mandrill",
        {
            "rejects": [
                {
                    "email": f"md{i}@example.com",
                    "reason": reasons[i % 7],
                    "detail": "550 mailbox unavailable" if i % 7 == 0 else "",
                    "created_at": "2013-01-01 15:30:27",
                    "last_event_at": "2013-01-01 15:30:27",
                    "expires_at": "2013-01-01 15:45:27",
                    "expired": i == 3,  # one expired entry, left out by default
                    "sender": None,
                    "subaccount": None,
                }
                for i in range(n)
            ]
        },
    )


def sparkpost_state(n: int = 25_000) -> FakeState:
    sources = ["Bounce Rule", "Spam Complaint", "List Unsubscribe", "Manually Added"]
    return FakeState(
        "sparkpost",
        {
            "suppressions": [
                {
                    "recipient": f"sp{i}@example.com",
                    # every tenth stops only transactional mail: not a newsletter's
                    "type": "transactional" if i % 10 == 9 else "non_transactional",
                    "source": sources[i % 4],
                    "description": "550: 550-5.1.1 Invalid" if i % 4 == 0 else "",
                    "created": "2016-01-01T12:00:00+00:00",
                    "updated": "2016-01-01T12:00:00+00:00",
                }
                for i in range(n)
            ]
        },
    )
