"""Local HTTP servers speaking the providers' events APIs, with their paging and filters.

``EventsAPI`` holds one provider's stored events in its documented shape and
answers like the provider: Mailgun's ``/v3/{domain}/events`` (begin/end,
ascending, limit <= 300, ``paging.next`` URLs until an empty page), Postmark's
``/bounces`` (count <= 500, offset, count + offset <= 10,000, fromdate/todate
in Eastern Time, newest first) and SparkPost's events search
(``/api/v1/events/message``, from/to by minute, ``cursor`` paging with
``links.next``), Brevo's email events report (``/v3/smtp/statistics/events``,
limit/offset, startDate/endDate by day, sort), Mailjet's ``/v3/REST/message``
(FromTS/ToTS, Limit <= 1000, Offset) and Mandrill's ``messages/search.json``
(POST with the key, date_from/date_to, limit <= 1000). Credentials are
checked; every request is recorded.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

KEY = "fake-events-key-0123456789"
SECRET = "fake-events-secret-9876543210"  # Mailjet's private key
DOMAIN = "mg.example.com"


@dataclass
class EventsAPI:
    kind: str  # mailgun | postmark | sparkpost
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    fail_status: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _time(item: dict[str, Any], kind: str) -> float:
    if kind == "mailgun":
        return float(item["timestamp"])
    if kind == "mandrill":
        return float(item["ts"])
    names = {"postmark": "BouncedAt", "brevo": "date", "mailjet": "ArrivedAt"}
    text = item[names.get(kind, "timestamp")]
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        api = self.server.api
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with api.lock:
            api.requests.append({"path": parts.path, **query})
        if not self._authorised(api.kind):
            self._send(401, {"message": "Invalid credentials"})
            return
        if api.fail_status is not None:
            self._send(api.fail_status, {"message": "down for maintenance"})
            return
        handler = getattr(self, f"_{api.kind}")
        handler(api, parts.path, query)

    def do_POST(self) -> None:
        api = self.server.api
        parts = urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with api.lock:
            api.requests.append({"path": parts.path, **{k: str(v) for k, v in body.items()}})
        if api.kind != "mandrill" or parts.path != "/api/1.0/messages/search.json":
            self._send(404, {"status": "error", "name": "Unknown_Method"})
            return
        if body.get("key") != KEY:
            self._send(500, {"status": "error", "code": -1, "name": "Invalid_Key"})
            return
        limit = int(body.get("limit", 100))
        if not 1 <= limit <= 1000:
            self._send(500, {"status": "error", "name": "ValidationError"})
            return

        def day(text: str, end: bool) -> float:
            start = datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
            return start + 86400 if end else start

        lo, hi = day(body["date_from"], False), day(body["date_to"], True)
        found = sorted(
            (m for m in api.events if lo <= m["ts"] < hi), key=lambda m: m["ts"], reverse=True
        )
        self._send(200, found[:limit])

    def _brevo(self, api: EventsAPI, path: str, query: dict[str, str]) -> None:
        if path != "/v3/smtp/statistics/events":
            self._send(404, {"code": "not_found", "message": "not found"})
            return
        limit, offset = int(query.get("limit", 2500)), int(query.get("offset", 0))
        if not 0 <= limit <= 5000:
            self._send(400, {"code": "out_of_range", "message": "limit"})
            return

        def day(name: str, end: bool) -> float:
            start = datetime.fromisoformat(query[name]).replace(tzinfo=UTC).timestamp()
            return start + 86400 if end else start

        lo, hi = day("startDate", False), day("endDate", True)
        chosen = sorted(
            (e for e in api.events if lo <= _time(e, "brevo") < hi),
            key=lambda e: _time(e, "brevo"),
            reverse=query.get("sort") != "asc",
        )
        self._send(200, {"events": chosen[offset : offset + limit]})

    def _mailjet(self, api: EventsAPI, path: str, query: dict[str, str]) -> None:
        if path != "/v3/REST/message":
            self._send(404, {"ErrorMessage": "not found", "StatusCode": 404})
            return
        limit, offset = int(query.get("Limit", 10)), int(query.get("Offset", 0))
        if not 0 <= limit <= 1000:
            self._send(400, {"ErrorMessage": "Limit", "StatusCode": 400})
            return
        lo, hi = float(query.get("FromTS", 0)), float(query.get("ToTS", 1e12))
        chosen = sorted(
            (e for e in api.events if lo <= _time(e, "mailjet") <= hi),
            key=lambda e: _time(e, "mailjet"),
        )
        page = chosen[offset : offset + (limit or 1000)]
        self._send(200, {"Count": len(page), "Data": page, "Total": len(chosen)})

    def _authorised(self, kind: str) -> bool:
        if kind == "mailjet":
            expected = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
            return self.headers.get("Authorization") == expected
        if kind == "brevo":
            return self.headers.get("api-key") == KEY
        if kind == "mailgun":
            expected = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
            return self.headers.get("Authorization") == expected
        if kind == "postmark":
            return self.headers.get("X-Postmark-Server-Token") == KEY
        return self.headers.get("Authorization") == KEY

    def _mailgun(self, api: EventsAPI, path: str, query: dict[str, str]) -> None:
        if path != f"/v3/{DOMAIN}/events":
            self._send(404, {"message": "not found"})
            return
        limit = int(query.get("limit", 100))
        if not 1 <= limit <= 300 or query.get("ascending") != "yes":
            self._send(400, {"message": "limit must be 1..300; ascending=yes without end"})
            return
        begin, end = float(query["begin"]), float(query.get("end", "1e12"))
        chosen = sorted(
            (e for e in api.events if begin <= e["timestamp"] <= end), key=lambda e: e["timestamp"]
        )
        skip = int(query.get("page_skip", 0))
        page = chosen[skip : skip + limit]
        base = f"http://api.mailgun.net/v3/{DOMAIN}/events?"  # absolute, like Mailgun's
        nxt = base + urlencode({**query, "page_skip": skip + len(page)})
        self._send(200, {"items": page, "paging": {"next": nxt, "previous": base}})

    def _postmark(self, api: EventsAPI, path: str, query: dict[str, str]) -> None:
        if path != "/bounces":
            self._send(404, {"ErrorCode": 404, "Message": "not found"})
            return
        count, offset = int(query.get("count", 0)), int(query.get("offset", 0))
        if not 1 <= count <= 500 or count + offset > 10_000:
            self._send(422, {"ErrorCode": 600, "Message": "count/offset out of range"})
            return
        eastern = ZoneInfo("America/New_York")

        def et(name: str) -> float | None:
            if name not in query:
                return None
            return datetime.fromisoformat(query[name]).replace(tzinfo=eastern).timestamp()

        start, stop = et("fromdate"), et("todate")
        chosen = [
            e
            for e in api.events
            if (start is None or _time(e, "postmark") >= start)
            and (stop is None or _time(e, "postmark") <= stop)
            and e.get("MessageStream", "broadcast") == query.get("messagestream", "broadcast")
        ]
        chosen.sort(key=lambda e: _time(e, "postmark"), reverse=True)  # newest first
        self._send(200, {"TotalCount": len(chosen), "Bounces": chosen[offset : offset + count]})

    def _sparkpost(self, api: EventsAPI, path: str, query: dict[str, str]) -> None:
        if path != "/api/v1/events/message":
            self._send(404, {"errors": [{"message": "not found"}]})
            return
        per_page = int(query.get("per_page", 1000))
        if not 1 <= per_page <= 10_000:
            self._send(400, {"errors": [{"message": "per_page out of range"}]})
            return

        def minute(name: str) -> float:
            return datetime.fromisoformat(query[name]).replace(tzinfo=UTC).timestamp()

        start, stop = minute("from"), minute("to")
        wanted = set(query.get("events", "").split(",")) - {""}
        chosen = [
            e
            for e in api.events
            if start <= _time(e, "sparkpost") < stop and (not wanted or e["type"] in wanted)
        ]
        chosen.sort(key=lambda e: _time(e, "sparkpost"), reverse=True)
        skip = 0 if query.get("cursor") == "initial" else int(query["cursor"])
        page = chosen[skip : skip + per_page]
        links: dict[str, str] = {}
        if skip + per_page < len(chosen):
            links["next"] = "/api/v1/events/message?" + urlencode(
                {**query, "cursor": str(skip + per_page)}
            )
        self._send(200, {"results": page, "total_count": len(chosen), "links": links})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: EventsAPI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api


@contextmanager
def events_api(api: EventsAPI) -> Iterator[str]:
    """Serve ``api`` on 127.0.0.1; yields its base URL."""
    server = _Server(api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
