"""The contract every provider's webhook parser keeps, and the body readers they share.

A parser is built once per server from its secrets (``from_env``) and then
answers two questions per request, as django-anymail's webhook views do:

- ``verify(headers, body)``: is this request really from the provider? Raises
  ``WebhookAuthError``; it runs on the raw body bytes, before anything is parsed
  for use (signatures cover the exact bytes).
- ``parse(headers, body) -> ParseResult``: the normalised events. A request that
  cannot be read at all raises ``WebhookPayloadError``; one bad event of a batch
  becomes a ``Rejection`` and the others are kept.

Secrets live in the parser object, never in what ``parse`` returns: the raw
copies are redacted and error messages never quote credentials.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl

import orjson

from stampcli import redact
from stampcli.inbound.errors import EventRejected, WebhookPayloadError
from stampcli.inbound.model import DeliveryEvent, ParseResult, Rejection

MAX_BODY = 25 * 1024 * 1024  # a Mandrill batch of 1,000 events or a SparkPost batch fits
MAX_EVENTS = 10_000  # more events than any provider batches in one request

Headers = Mapping[str, str]
Clock = Callable[[], float]


def lower_headers(headers: Headers) -> dict[str, str]:
    """``headers`` with lower-case names (HTTP names are case-insensitive)."""
    return {k.lower(): v for k, v in headers.items()}


def media_type(headers: Headers) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    value = lower_headers(headers).get("content-type", "")
    return value.split(";", 1)[0].strip().lower()


def check_body(provider: str, headers: Headers, body: bytes, types: Sequence[str]) -> None:
    """Refuse an empty or oversized body, or one whose Content-Type is not in ``types``."""
    if len(body) > MAX_BODY:
        raise WebhookPayloadError(
            f"{provider} webhook: the body is {len(body):,} bytes, more than {MAX_BODY:,}"
        )
    if not body.strip():
        raise WebhookPayloadError(f"{provider} webhook: the body is empty")
    got = media_type(headers)
    if got not in types:
        shown = redact.redact(got[:60]) if got else "none"
        raise WebhookPayloadError(
            f"{provider} webhook: Content-Type {shown!r} is not {' or '.join(types)}"
        )


def load_json(provider: str, data: bytes | str, what: str = "the body") -> Any:
    """``data`` parsed as JSON, or a ``WebhookPayloadError`` naming the provider."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position only ("... line 1 column 3 (char 2)")
        raise WebhookPayloadError(f"{provider} webhook: {what} is not valid JSON ({exc})") from None


def json_body(
    provider: str, headers: Headers, body: bytes, types: Sequence[str] = ("application/json",)
) -> Any:
    """The body as JSON after the size and Content-Type checks."""
    check_body(provider, headers, body, types)
    return load_json(provider, body)


def form_body(provider: str, headers: Headers, body: bytes) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body as (name, value) pairs, in order."""
    check_body(provider, headers, body, ("application/x-www-form-urlencoded",))
    try:
        text = body.decode("ascii")  # form encoding is ASCII: anything else is percent-encoded
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=100
        )
    except (UnicodeDecodeError, ValueError) as exc:
        reason = "is not ASCII" if isinstance(exc, UnicodeDecodeError) else "is not a valid form"
        raise WebhookPayloadError(f"{provider} webhook: the form body {reason}") from None


def as_list(provider: str, data: Any, *, single_ok: bool) -> list[Any]:
    """A batch as a list: a JSON array, or (``single_ok``) one event object."""
    if isinstance(data, list):
        if len(data) > MAX_EVENTS:
            raise WebhookPayloadError(
                f"{provider} webhook: {len(data):,} events in one request, more than {MAX_EVENTS:,}"
            )
        return data
    if single_ok and isinstance(data, dict):
        return [data]
    shape = "a JSON array or object" if single_ok else "a JSON array"
    raise WebhookPayloadError(
        f"{provider} webhook: the body is {type(data).__name__}, not {shape} of events"
    )


def text_field(item: Mapping[str, Any], name: str) -> str | None:
    """``item[name]`` when it is non-empty text, else None."""
    value = item.get(name)
    return value if isinstance(value, str) and value else None


def obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (for optional nested objects)."""
    return value if isinstance(value, Mapping) else {}


class WebhookParser(ABC):
    """One provider's webhook: verify the request, then parse its events."""

    provider: ClassVar[str]  # the registry label and route name
    env: ClassVar[tuple[str, ...]]  # the environment variables from_env needs

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock

    @classmethod
    @abstractmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        """The parser configured from ``env`` (raises ``KeyError`` naming a missing variable)."""

    @abstractmethod
    def verify(self, headers: Headers, body: bytes) -> None:
        """Raise ``WebhookAuthError`` unless the request is authentic."""

    @abstractmethod
    def items(self, headers: Headers, body: bytes) -> list[Any]:
        """The request's events as provider objects (raises ``WebhookPayloadError``)."""

    @abstractmethod
    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        """The normalised events of one provider event ([] = nothing for stamp);
        raises ``EventRejected`` when the event cannot be used."""

    def parse(self, headers: Headers, body: bytes) -> ParseResult:
        """Every usable event of the request; bad ones counted and described."""
        headers = lower_headers(headers)
        events: list[DeliveryEvent] = []
        rejected: list[Rejection] = []
        ignored = 0
        for index, item in enumerate(self.items(headers, body)):
            try:
                if not isinstance(item, Mapping):
                    raise EventRejected(f"is {type(item).__name__}, not a JSON object")
                got = self.events(item, headers)
            except EventRejected as exc:
                rejected.append(Rejection(index, f"{self.provider} event {index}: {exc}"))
                continue
            if got:
                events.extend(got)
            else:
                ignored += 1
        return ParseResult(tuple(events), tuple(rejected), ignored)


def require(env: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """The values of ``names`` in ``env``, each registered as a secret; ``KeyError`` names the
    first one missing or empty."""
    values = []
    for name in names:
        value = env.get(name, "")
        if not value.strip():
            raise KeyError(name)
        redact.register(value)
        values.append(value.strip())
    return values


class BasicAuthParser(WebhookParser):
    """A provider that does not sign its webhooks: HTTP Basic credentials in the URL."""

    env = ("STAMP_WEBHOOK_USER", "STAMP_WEBHOOK_PASSWORD")

    def __init__(self, user: str, password: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._user, self._password = user, password

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        user, password = require(env, cls.env)
        return cls(user, password, **options)

    def verify(self, headers: Headers, body: bytes) -> None:
        # imported here: verify.py needs cryptography and svix, which plain parsing does not
        from stampcli.inbound.verify import check_basic_auth

        check_basic_auth(self.provider, headers, self._user, self._password)
