"""Own open and click tracking on ``stamp serve``: ``GET /o/TOKEN.gif`` and ``GET /c/TOKEN``.

The pixel answers a 42-byte transparent 1x1 GIF with headers that forbid caching
(so each open reaches the server); a click answers ``302`` to the address the
token's signed link part names (never any other: see
:mod:`stampcli.compliance.tracking_tokens`). A truncated, altered or forged token
answers a bare ``404`` that says nothing about why. An expired but genuine one
still gets its GIF or redirect (the address is signed), but nothing is recorded.
Genuine hits become ``opened``/``clicked`` events through the server's store
writer (:func:`stampcli.service.tracking.hit_event`); a store that does not answer
costs the hit, never the reader's redirect. Counters of what was refused are kept
in :attr:`TrackingRoutes.counts` and logged per hit (without the token: it names
the recipient).

The client address is the TCP peer's, or, when the peer is loopback (the reverse
proxy ``stamp serve`` is meant to sit behind), the last address of
``X-Forwarded-For``.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from stampcli.compliance.tokens import TokenError
from stampcli.errors import StoreError
from stampcli.events.machine import Classifier
from stampcli.events.model import EventRejected
from stampcli.server.writer import Overloaded, StoreWriter
from stampcli.service.tracking import hit_event, read_hit

log = logging.getLogger("stamp.serve")

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class TrackingRoutes:
    """The two endpoints; ``secret`` is the unsubscribe secret the tokens derive from."""

    def __init__(
        self,
        secret: str | bytes,
        writer: StoreWriter,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.writer = writer
        self.clock = clock
        self.classifier = Classifier()
        self.counts: Counter[str] = Counter()

    async def open(self, request: Request) -> Response:
        token = request.path_params["token"]
        if not token.endswith(".gif"):
            return self._not_found("open", "no .gif")
        if not await self._hit(request, "open", token[: -len(".gif")]):
            return self._not_found("open", "bad token")
        return Response(GIF, media_type="image/gif", headers=NO_CACHE)

    async def click(self, request: Request) -> Response:
        url = await self._hit(request, "click", request.path_params["token"])
        if not url:
            return self._not_found("click", "bad token")
        return RedirectResponse(url, status_code=302, headers=NO_CACHE)

    def _not_found(self, kind: str, why: str) -> Response:
        self.counts[f"{kind}_refused"] += 1
        log.info("tracking %s refused (%s)", kind, why)
        return Response(b"", status_code=404, headers=NO_CACHE)

    async def _hit(self, request: Request, kind: str, token: str) -> str | None:
        """Record one hit; the address to redirect to (opens: "ok"), None for a bad token."""
        try:
            hit = read_hit(self.secret, kind, token)
        except TokenError:
            return None
        answer = hit.url or "ok"
        now = self.clock()
        try:
            event = hit_event(
                hit,
                kind,
                self.classifier,
                method=request.method,
                user_agent=request.headers.get("user-agent"),
                ip=_client_ip(request),
                now=now,
            )
        except EventRejected:
            self.counts[f"{kind}_unusable"] += 1
            return answer
        if event is None:
            self.counts[f"{kind}_expired"] += 1
            log.info("tracking %s of an expired token: not recorded", kind)
            return answer
        try:
            await self.writer.record([event])
        except (StoreError, Overloaded) as exc:
            self.counts[f"{kind}_lost"] += 1
            log.error("tracking %s not recorded: %s", kind, exc)
            return answer
        self.counts["machine" if event.reason else "human"] += 1
        return answer


def _client_ip(request: Request) -> str | None:
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and peer in _LOOPBACK:
        return forwarded.split(",")[-1].strip() or peer
    return peer
