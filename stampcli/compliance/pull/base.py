"""What every provider's suppression pull shares: the HTTP session, paging guards, errors.

A provider module exposes ``fetch(session) -> Iterator[Pulled]`` and walks
every page of every list it has (bounces, complaints, unsubscribes, blocks).
Errors become :class:`PullError` with a message that names the provider and
the call and never contains a credential.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from stampcli import redact
from stampcli.config import ProviderConfig, ProviderURL
from stampcli.errors import ProviderError

MAX_PAGES = 100_000  # a guard against a server that pages forever
THROTTLE_RETRIES = 5
MAX_THROTTLE_WAIT = 30.0


class PullError(ProviderError):
    """A provider's suppression list could not be fetched."""


class PullIncomplete(PullError):
    """Everything the provider's API lets anyone read was fetched, and that may not be all.

    Raised after the last record: what came is merged, and this is a warning.
    """


@dataclass(frozen=True, slots=True)
class Pulled:
    """One address a provider will not deliver to, and why (one of the store's REASONS)."""

    email: str
    reason: str
    detail: str | None = None
    created_at: float = 0.0


@dataclass
class Session:
    """One provider's configuration and an open HTTP client pointed at its API."""

    config: ProviderConfig
    url: ProviderURL
    client: httpx.Client
    label: str
    sleep: Any = time.sleep  # replaced by tests that must not wait
    pages: int = field(default=0)

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and return its JSON, waiting out throttling; PullError otherwise."""
        return self._json("GET", path, params=params)

    def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST ``body`` as JSON (APIs that take the key in the body); as :meth:`get_json`."""
        return self._json("POST", path, body=body)

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        self.pages += 1
        if self.pages > MAX_PAGES:
            raise PullError(f"{self.label}: more than {MAX_PAGES} pages; stopped paging")
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                response = self.client.request(method, path, params=params, json=body)
            except httpx.HTTPError as exc:
                raise PullError(
                    f"{self.label}: {method} {_path(path)} failed: {type(exc).__name__}: "
                    f"{redact.redact(str(exc)) or 'no answer'}"
                ) from None
            if response.status_code == 429 and attempt < THROTTLE_RETRIES:
                self.sleep(_retry_after(response))
                continue
            break
        if response.status_code >= 400:
            raise PullError(
                f"{self.label}: {method} {_path(path)} answered {response.status_code}: "
                f"{_snippet(response)}"
            )
        try:
            return response.json()
        except ValueError:
            raise PullError(f"{self.label}: {method} {_path(path)} did not answer JSON") from None


def _path(path: str) -> str:
    return urlsplit(path).path or path


def _retry_after(response: httpx.Response) -> float:
    for name in ("retry-after", "x-ratelimit-reset", "ratelimit-reset"):
        value = response.headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        if seconds > 1e9:  # an epoch time (SendGrid's X-RateLimit-Reset)
            seconds -= time.time()
        return min(max(seconds, 0.0), MAX_THROTTLE_WAIT)
    return 1.0


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:200]
    return redact.redact(text) or response.reason_phrase


def records(data: Any, *keys: str) -> list[dict[str, Any]]:
    """``data[keys[0]][keys[1]]...`` as a list of objects; PullError if it is not one."""
    node = data
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    if node is None:
        return []
    if not isinstance(node, list):
        raise PullError(f"unexpected answer: {'.'.join(keys) or 'body'} is not a list")
    return [item for item in node if isinstance(item, dict)]


def relative(url: str) -> str:
    """Path and query of a paging URL, so it is fetched from our base URL (endpoint override)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def iter_offset_pages(
    session: Session,
    path: str,
    params: Mapping[str, Any],
    *,
    limit_name: str,
    offset_name: str,
    page_size: int,
    keys: tuple[str, ...] = (),
) -> Iterator[dict[str, Any]]:
    """Every record of an offset-paged list: fetch until a page comes back short."""
    offset = 0
    while True:
        data = session.get_json(path, {**params, limit_name: page_size, offset_name: offset})
        page = records(data, *keys)
        yield from page
        if len(page) < page_size:
            return
        offset += len(page)
