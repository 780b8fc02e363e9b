"""Fetch every configured provider's suppressions and merge them into the store.

``pull_all(campaign, store)`` asks each provider of the campaign that has a
suppression API (SendGrid, Mailgun, Postmark, Amazon SES, Mailjet, Brevo,
SparkPost, Mailchimp Transactional) for its bounces, complaints, unsubscribes and
blocks, page by page, and adds
them to the global suppression list with the provider's label as source. So
failing over from one provider to another never mails somebody the first
one already suppressed. A provider that fails is reported, not fatal: the
others are still merged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx

from stampcli.audience.address import InvalidAddress, normalize_address
from stampcli.compliance.pull import (
    brevo,
    mailgun,
    mailjet,
    mandrill,
    postmark,
    sendgrid,
    ses,
    sparkpost,
)
from stampcli.compliance.pull.base import Pulled, PullError, PullIncomplete, Session
from stampcli.config import Campaign, ProviderConfig
from stampcli.errors import ConfigError
from stampcli.store import suppressions as sup
from stampcli.store.db import Store

__all__ = ["PULLERS", "ProviderPull", "PullError", "PullReport", "Pulled", "pull_all", "pull_one"]

PULLERS: dict[str, ModuleType] = {
    "sendgrid": sendgrid,
    "mailgun": mailgun,
    "postmark": postmark,
    "ses": ses,
    "mailjet": mailjet,
    "brevo": brevo,
    "mandrill": mandrill,  # the key travels in each call's JSON body
    "sparkpost": sparkpost,
}


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


def _base_url(config: ProviderConfig, module: ModuleType) -> str:
    if config.endpoint:
        return config.endpoint.rstrip("/")
    url = config.parsed
    if module is ses:
        return ses.base_url(url, config.label)
    regional: dict[str, str] = module.REGIONAL
    default: str = module.BASE_URL
    return regional.get(url.options.get("region", "").lower(), default)


def _client(config: ProviderConfig, module: ModuleType) -> httpx.Client:
    url = config.parsed
    label = config.label
    kwargs: dict[str, Any] = {}
    key = url.user or ""
    if module is sendgrid:
        kwargs["headers"] = sendgrid.headers(key)
    elif module is postmark:
        kwargs["headers"] = postmark.headers(key)
    elif module is brevo:
        kwargs["headers"] = brevo.headers(key)
    elif module is sparkpost:
        kwargs["headers"] = sparkpost.headers(key)
    elif module is mailgun:
        kwargs["auth"] = httpx.BasicAuth("api", key)
    elif module is mailjet:
        kwargs["auth"] = mailjet.auth(url, label)
    elif module is ses:
        kwargs["auth"] = ses.auth(url, label)
    timeout = httpx.Timeout(
        connect=config.timeout.connect, read=config.timeout.read, write=30.0, pool=30.0
    )
    return httpx.Client(
        base_url=_base_url(config, module),
        timeout=timeout,
        follow_redirects=False,  # never send credentials on to another host
        trust_env=False,
        **kwargs,
    )


def _items(result: ProviderPull, records: Iterator[Pulled]) -> Iterator[sup.Suppression]:
    for record in records:
        result.fetched += 1
        try:
            key = normalize_address(record.email)[0]
        except InvalidAddress:
            result.invalid += 1
            continue
        result.by_reason[record.reason] = result.by_reason.get(record.reason, 0) + 1
        yield sup.Suppression(
            key, record.reason, result.provider, "", record.detail, record.created_at
        )


def pull_one(
    config: ProviderConfig, store: Store, *, sleep: Callable[[float], None] | None = None
) -> ProviderPull:
    """Fetch one provider's suppressions into ``store``; failures go into the result."""
    result = ProviderPull(config.label, config.scheme)
    module = PULLERS.get(config.scheme)
    if module is None:
        result.skipped = f"{config.scheme} has no suppression list to fetch"
        return result
    # Collected first and merged even when a later page fails: every address a
    # provider named is one more that failover must not mail.
    items: list[sup.Suppression] = []
    try:
        with _client(config, module) as client:
            session = Session(config, config.parsed, client, config.label)
            if sleep is not None:
                session.sleep = sleep
            items.extend(_items(result, module.fetch(session)))
    except PullIncomplete as exc:
        result.warning = str(exc)
    except PullError as exc:
        result.error = str(exc)
    result.new = sup.add_many(store, items)
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
