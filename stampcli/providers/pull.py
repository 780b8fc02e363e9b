"""Fetch every configured provider's suppressions and merge them into the store.

``pull_all(campaign, store)`` asks each provider of the campaign that has a
suppression API (SendGrid, Mailgun, Postmark, Amazon SES, Mailjet, Brevo,
SparkPost, Mailchimp Transactional) for its bounces, complaints, unsubscribes
and blocks, page by page, and adds them to the global suppression list with
the provider's label as source. So failing over from one provider to another
never mails somebody the first one already suppressed. A provider that fails
is reported, not fatal: the others are still merged.

A provider takes part by defining, in its module, a :class:`Puller`
``fetch_suppressions(session) -> Iterator[Pulled]`` that walks every page of
every list it has. The session's HTTP client points at the adapter's base URL
with the adapter's auth and headers (``HTTPAdapter.endpoint_for``,
``auth_for``, ``headers_for``), found through the registry: this module names
no provider. Errors become :class:`PullError` with a message that names the
provider and the call and never contains a credential.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from stampcli import redact
from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.config import Campaign, ProviderConfig, ProviderURL
from stampcli.errors import ConfigError, ProviderError
from stampcli.events.model import Reason
from stampcli.providers import adapter_class, provider_module
from stampcli.providers.http import HTTPAdapter, ProviderSetupError
from stampcli.store import suppressions as sup
from stampcli.store.protocols import Store

__all__ = [
    "ProviderPull",
    "PullError",
    "PullIncomplete",
    "PullReport",
    "Pulled",
    "Puller",
    "Session",
    "pull_all",
    "pull_one",
    "puller_for",
]

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
    """One address a provider will not deliver to, and why."""

    email: str
    reason: Reason
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
    for page, _ in offset_pages(
        session, path, params, limit_name=limit_name, offset_name=offset_name,
        page_size=page_size, keys=keys,
    ):  # fmt: skip
        yield from page


def offset_pages(
    session: Session,
    path: str,
    params: Mapping[str, Any],
    *,
    limit_name: str,
    offset_name: str,
    page_size: int,
    keys: tuple[str, ...] = (),
) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """An offset-paged list a page at a time, with whether it is the last (a short page)."""
    offset = 0
    while True:
        data = session.get_json(path, {**params, limit_name: page_size, offset_name: offset})
        page = records(data, *keys)
        last = len(page) < page_size
        yield page, last
        if last:
            return
        offset += len(page)


# --------------------------------------------------------------------------- pulling


class Puller(Protocol):
    """A provider module's ``fetch_suppressions``: every suppressed address it lists."""

    def __call__(self, session: Session) -> Iterator[Pulled]: ...


def puller_for(scheme: str) -> Puller | None:
    """The scheme's ``fetch_suppressions``, or None when its provider has no suppression API."""
    found: Puller | None = getattr(provider_module(scheme), "fetch_suppressions", None)
    return found


@dataclass
class ProviderPull:
    """What one provider gave."""

    provider: str  # label
    scheme: str
    fetched: int = 0  # records received
    new: int = 0  # addresses not suppressed before
    invalid: int = 0  # records whose address could not be normalised
    by_reason: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    warning: str | None = None  # fetched all the API shows, which may not be everything
    skipped: str | None = None  # why the provider was not asked (no suppression API)


@dataclass
class PullReport:
    providers: list[ProviderPull] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(p.new for p in self.providers)

    @property
    def fetched(self) -> int:
        return sum(p.fetched for p in self.providers)

    @property
    def errors(self) -> list[ProviderPull]:
        return [p for p in self.providers if p.error is not None]

    @property
    def ok(self) -> bool:
        return not self.errors


def client_for(config: ProviderConfig) -> httpx.Client:
    """A client for the provider's API: the adapter's base URL, auth and headers."""
    cls = adapter_class(config.scheme)
    if not issubclass(cls, HTTPAdapter):
        raise PullError(f"{config.label}: {config.scheme} has no HTTP API to pull from")
    url = config.parsed
    try:
        base_url = cls.endpoint_for(config)
        auth = cls.auth_for(url)
        headers = cls.headers_for(url)
    except ProviderSetupError as exc:
        raise PullError(f"{config.label}: {exc}") from None
    timeout = httpx.Timeout(
        connect=config.timeout.connect, read=config.timeout.read, write=30.0, pool=30.0
    )
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers=headers,
        timeout=timeout,
        follow_redirects=False,  # never send credentials on to another host
        trust_env=False,
    )


def _items(result: ProviderPull, records: Iterator[Pulled]) -> Iterator[sup.Suppression]:
    for record in records:
        result.fetched += 1
        try:
            key = normalize_address(record.email)[0]
        except InvalidAddress:
            result.invalid += 1
            continue
        reason = str(record.reason)
        result.by_reason[reason] = result.by_reason.get(reason, 0) + 1
        yield sup.Suppression(key, reason, result.provider, "", record.detail, record.created_at)


def pull_one(
    config: ProviderConfig, store: Store, *, sleep: Callable[[float], None] | None = None
) -> ProviderPull:
    """Fetch one provider's suppressions into ``store``; failures go into the result."""
    result = ProviderPull(config.label, config.scheme)
    fetch = puller_for(config.scheme)
    if fetch is None:
        result.skipped = f"{config.scheme} has no suppression list to fetch"
        return result
    # Collected first and merged even when a later page fails: every address a
    # provider named is one more that failover must not mail.
    items: list[sup.Suppression] = []
    try:
        with client_for(config) as client:
            session = Session(config, config.parsed, client, config.label)
            if sleep is not None:
                session.sleep = sleep
            items.extend(_items(result, fetch(session)))
    except PullIncomplete as exc:
        result.warning = str(exc)
    except PullError as exc:
        result.error = str(exc)
    except ProviderSetupError as exc:  # raised by a provider's own checks of its URL
        result.error = f"{config.label}: {exc}"
    result.new = store.suppressions.add_many(items)
    return result


def pull_all(
    campaign: Campaign,
    store: Store,
    providers: Sequence[str] | None = None,
    *,
    sleep: Callable[[float], None] | None = None,
) -> PullReport:
    """Fetch and merge the suppressions of the campaign's providers (or only ``providers``)."""
    chosen = list(campaign.providers)
    if providers:
        labels = {p.label for p in chosen}
        unknown = [name for name in providers if name not in labels]
        if unknown:
            raise ConfigError(
                f"{campaign.path}: providers: no provider named {unknown[0]!r}; "
                f"known: {', '.join(sorted(labels))}"
            )
        chosen = [p for p in chosen if p.label in providers]
    report = PullReport()
    for config in chosen:
        report.providers.append(pull_one(config, store, sleep=sleep))
    return report
