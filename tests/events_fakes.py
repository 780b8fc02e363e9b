"""Local HTTP servers speaking the providers' events APIs, with their paging and filters.

``EventsAPI`` holds one provider's stored events in its documented shape and
answers like the provider: Mailgun's ``/v3/{domain}/events`` (begin/end,
ascending, limit <= 300, ``paging.next`` URLs until an empty page), Postmark's
``/bounces`` (count <= 500, offset, count + offset <= 10,000, fromdate/todate
in Eastern Time, newest first) and SparkPost's events search
(``/api/v1/events/message``, from/to by minute, ``cursor`` paging with
``links.next``). Credentials are checked; every request is recorded.
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
    text = item["BouncedAt"] if kind == "postmark" else item["timestamp"]
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

    def _authorised(self, kind: str) -> bool:
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
