"""campaign.yml -> pydantic models.

Loads a campaign file, substitutes ``${NAME}`` from the environment (a missing
variable is an error that names it), resolves relative paths against the
campaign file, and turns every validation problem into one line naming the
file, the key path and, where YAML gives it, the line. Provider URLs are
parsed here (scheme, credentials, host, options) so that adapters receive a
checked ``ProviderURL``: an unknown scheme or ``?option``, or an option value
the scheme does not take, is refused with a suggestion. The secrets inside
them are registered with :mod:`stampcli.redact`; a ``${NAME}`` inside a URL
reaches the provider byte for byte. The files a campaign mails or renders
are confined to its folder and ``allow_paths:`` (see :mod:`stampcli.paths`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stampcli import paths, redact
from stampcli.errors import ConfigError
from stampcli.events.policy import BouncePolicy

# The provider table is stampcli.providers.registry (one entry per scheme); these
# are its views under the names this module has always used.
from stampcli.providers.registry import KEY_ONLY_SCHEMES as _KEY_ONLY_SCHEMES
from stampcli.providers.registry import OPTION_HINTS as _OPTION_HINTS
from stampcli.providers.registry import PROVIDER_OPTIONS, PROVIDER_SCHEMES
from stampcli.providers.registry import SECRET_OPTIONS as _SECRET_OPTIONS

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_RATE_UNITS = {
    "s": 1, "sec": 1, "second": 1,
    "m": 60, "min": 60, "minute": 60,
    "h": 3600, "hour": 3600,
    "d": 86400, "day": 86400,
}  # fmt: skip
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class Rate:
    """A token-bucket rate: ``count`` messages per ``per_seconds``."""

    count: float
    per_seconds: float
    text: str

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    def __str__(self) -> str:
        return self.text


def parse_rate(value: object) -> Rate:
    """``50/s``, ``3000/min``, ``100000/h``, ``2000/day`` or a bare number per second."""
    if isinstance(value, Rate):
        return value
    if isinstance(value, bool):
        raise ValueError("a rate is written like 50/s, 3000/min or 100000/h")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("a rate must be above zero")
        return Rate(float(value), 1.0, f"{value}/s")
    match = _RATE_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a rate; write it like 50/s, 3000/min or 100000/h")
    count = float(match.group(1))
    if count <= 0:
        raise ValueError("a rate must be above zero")
    return Rate(count, float(_RATE_UNITS[match.group(2)]), str(value).strip())


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``500ms``, ``30s``, ``15m``, ``24h`` or ``2d``."""
    if isinstance(value, bool):
        raise ValueError("a duration is written like 30s, 15m, 24h or 2d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION_RE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m, 24h or 2d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


@dataclass(frozen=True)
class ProviderURL:
    """A parsed provider DSN such as ``smtp://user:pass@host:587`` or ``sendgrid://KEY``.

    ``user``/``password`` hold the credentials part (for API providers the key
    is in ``user``, as in Symfony's DSNs); ``options`` the query string, names
    lower-cased and checked against :data:`PROVIDER_OPTIONS`.
    ``str()`` gives the redacted form, safe to print.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    path: str
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def redacted(self) -> str:
        creds = ""
        if self.user is not None:
            creds = "***" if self.scheme not in ("smtp", "smtps") else self.user
            if self.password is not None:
                creds += ":***"
            if self.host or self.scheme in ("smtp", "smtps"):
                creds += "@"
        host = self.host or ""
        port = f":{self.port}" if self.port else ""
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return redact.redact(
            f"{self.scheme}://{creds}{host}{port}{self.path}" + (f"?{query}" if query else "")
        )

    def __str__(self) -> str:
        return self.redacted


def _decode(text: str) -> str:
    """Percent-decode ``text`` once; bytes that are not UTF-8 survive as surrogates."""
    return unquote(text, errors="surrogateescape")


def _encode(value: str) -> str:
    """Percent-encode every byte that is not unreserved: the inverse of :func:`_decode`."""
    return quote(value, safe="", errors="surrogateescape")


def _plain(value: str) -> bool:
    """A short word safe to quote back in an error (no secret looks like ``starttls``)."""
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]{0,32}", value)) and redact.redact(value) == value


def parse_provider_url(url: str) -> ProviderURL:
    """Parse and check a provider URL; registers its credentials as secrets.

    Every part (user, password or key, host, path, option names and values) is
    percent-decoded exactly once, after the URL has been split at its literal
    ``://``, ``?``, ``@``, ``:`` and ``&``. A ``${NAME}`` inside the URL arrives
    here percent-encoded (see :func:`_substitute_env`), so its value comes out
    exactly as set whatever it holds. Errors never quote a credential, nor any
    text that could be part of one.
    """
    if "://" not in url:
        raise ValueError(
            "a provider URL looks like smtp://user:pass@host:587, sendgrid://KEY or outbox://DIR"
        )
    written, rest = url.split("://", 1)
    scheme = written.lower()
    if scheme not in PROVIDER_SCHEMES:
        known = ", ".join(sorted(PROVIDER_SCHEMES))
        if not _plain(written):  # as written: lower case would hide a secret from redaction
            raise ValueError(f"the provider URL does not start with a known scheme; known: {known}")
        close = difflib.get_close_matches(scheme, PROVIDER_SCHEMES, n=1)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        raise ValueError(f"unknown provider scheme {scheme!r}{hint}; known: {known}")
    # API keys may contain '/', '+' or '=' (SES, Mailjet): take the credentials
    # part up to the last '@' before any query string by hand, not with urlsplit.
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    creds: str | None = None
    if "@" in rest:
        creds, rest = rest.rsplit("@", 1)
    elif scheme in _KEY_ONLY_SCHEMES and rest:
        # sendgrid://KEY: the whole authority is the key (case kept, unlike a host)
        creds, rest = rest.rstrip("/"), ""
    user = password = None
    if creds is not None:
        if ":" in creds:
            user, password = (_decode(p) for p in creds.split(":", 1))
        else:
            user = _decode(creds)
    for secret in (password, user if scheme not in ("smtp", "smtps") else None):
        redact.register(secret)
    if "#" in rest or "#" in query:
        raise ValueError(
            "a provider URL has no #fragment; write a '#' inside a password or key as %23, "
            "or take the value from the environment with ${NAME}"
        )
    host: str | None
    port: int | None = None
    path = ""
    if scheme == "outbox":
        host, path = None, _decode(rest)
        if not path:
            raise ValueError("outbox:// needs a folder, for example outbox://out/")
    else:
        parts = urlsplit(f"//{rest}")
        try:
            host = parts.hostname
            port = parts.port
        except ValueError:
            # urllib's own message quotes the text, which may hold a misplaced secret
            raise ValueError(
                "bad host or port in provider URL (a port is a number from 1 to 65535; "
                "write a '?', '@', '/' or ':' inside a password or key percent-encoded, "
                "or take the value from the environment with ${NAME})"
            ) from None
        if host is not None:
            # urllib lower-cases the host: a host taken from ${NAME} is a secret in
            # that lower case too, or the lower-cased form would be shown unredacted
            as_written = _decode(parts.netloc)  # host[:port]: the credentials are split off
            host = _decode(host)
            if redact.redact(as_written) != as_written:
                redact.register(host)
            if any(c in host for c in "@/?#\\ ") or not host.isprintable():
                raise ValueError(
                    "the host in a provider URL cannot contain '@', '/', '?', '#', spaces or "
                    "control characters (a ${NAME} inside a URL stands for one part of it; "
                    "a variable holding a whole URL must be the whole url: value)"
                )
        path = _decode(parts.path)
        if scheme in ("smtp", "smtps") and not host:
            raise ValueError(f"{scheme}:// needs a host, for example {scheme}://user:pass@host:587")
        if scheme in _KEY_ONLY_SCHEMES and not user:
            raise ValueError(f"{scheme}:// needs an API key, for example {scheme}://${{API_KEY}}")
    pairs = []
    for item in query.split("&") if query else ():
        # RFC 3986: '+' is a plus sign (AWS session tokens hold them), not a space
        name, _, value = item.partition("=")
        pairs.append((_decode(name), _decode(value)))
    options = _check_options(scheme, pairs)
    return ProviderURL(scheme, user, password, host, port, path, options)


def _check_options(scheme: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The query options with lower-case names, each known to ``scheme`` with a value it takes."""
    known = PROVIDER_OPTIONS[scheme]
    takes = f"takes: {', '.join(known)}" if known else "takes no options"
    if not all(_plain(name) for name, _ in pairs):
        # not an option name (checked before lower-casing, which would hide a secret
        # from redaction): most likely a piece of a password or key cut at a literal
        # '?' or '&', so it is not quoted back
        raise ValueError(
            f"the text after '?' is not name=value options; {scheme}:// {takes} "
            "(write a '?' or '&' inside a password or key as %3F or %26, or take "
            "the value from the environment with ${NAME})"
        )
    options = {name.lower(): value for name, value in pairs}
    # a session token is as secret as the key beside it: registered before any refusal
    for secret in (v for k, v in options.items() if k in _SECRET_OPTIONS):
        redact.register(secret)
    for name, value in options.items():
        note = f" ({_OPTION_HINTS[scheme, name]})" if (scheme, name) in _OPTION_HINTS else ""
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown option {name!r}{hint}; {scheme}:// {takes}{note}")
        allowed = known[name]
        if allowed is not None and value.lower() not in allowed:
            shown = f"{name}={value!r}" if _plain(value) else f"this {name}= value"
            raise ValueError(f"{shown} is not one of {', '.join(allowed)}{note}")
    return options


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TimeoutConfig(_Model):
    connect: float = Field(10.0, gt=0, description="seconds to open a connection")
    read: float = Field(30.0, gt=0, description="seconds to wait for an answer")

    @field_validator("connect", "read", mode="before")
    @classmethod
    def _duration(cls, v: object) -> float:
        return parse_duration(v)


class ProviderConfig(_Model):
    """One entry of ``providers:`` (tried in the order given)."""

    url: str
    name: str | None = None
    rate: Rate | None = None
    concurrency: int = Field(8, ge=1, le=1000)
    daily_quota: int | None = Field(None, ge=1)
    weight: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    timeout: TimeoutConfig = TimeoutConfig()
    endpoint: str | None = None  # base URL override (EU proxy, or a local test server)
    max_throttle_wait: float = 60.0  # throttled longer than this: pass traffic on

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, v: object) -> Rate | None:
        return None if v is None else parse_rate(v)

    @field_validator("max_throttle_wait", mode="before")
    @classmethod
    def _wait(cls, v: object) -> float:
        return parse_duration(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_provider_url(v)
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError("endpoint must be an http:// or https:// base URL")
        return v

    @property
    def parsed(self) -> ProviderURL:
        return parse_provider_url(self.url)

    @property
    def scheme(self) -> str:
        return self.parsed.scheme

    @property
    def label(self) -> str:
        """The provider's name in logs, the ledger and the quota table."""
        return self.name or self.scheme


class AudienceConfig(_Model):
    file: Path | None = None
    list_: list[str] | None = Field(None, alias="list")
    exclude_lists: list[str] = []
    segment: str | None = None
    email_column: str | None = None
    sheet: str | None = None
    encoding: str | None = None
    delimiter: str | None = None

    @field_validator("list_", "exclude_lists", mode="before")
    @classmethod
    def _names(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_source(self) -> AudienceConfig:
        if (self.file is None) == (self.list_ is None):
            raise ValueError("give exactly one of audience.file or audience.list")
        return self


class UnsubscribeConfig(_Model):
    url: str | None = None  # a template; gets unsubscribe_token, email, campaign
    mailto: str | None = None
    secret_env: str = "STAMP_UNSUBSCRIBE_SECRET"

    @field_validator("url")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(https?://|\{\{)", v.strip()):
            raise ValueError("unsubscribe.url must be an https:// URL")
        return v


class ThrottleConfig(_Model):
    """Campaign-wide sending settings."""

    rate: Rate | None = None  # across every provider
    max_messages: int | None = Field(None, ge=1)  # at most this many per run
    retries: int = Field(3, ge=0, le=20)  # transient retries within a run
    backoff: float = Field(1.0, ge=0)  # first retry delay in seconds; doubles, with jitter
    expire_after: float = 24 * 3600.0  # deferred rows turn failed after this
    batch_size: int = Field(500, ge=1, le=100_000)  # ledger rows claimed at once

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, v: object) -> Rate | None:
        return None if v is None else parse_rate(v)

    @field_validator("expire_after", "backoff", mode="before")
    @classmethod
    def _dur(cls, v: object) -> float:
        return parse_duration(v)


class TrackingConfig(_Model):
    opens: bool | None = None  # None: leave the provider's account default
    clicks: bool | None = None


class AutoStopConfig(_Model):
    """Pause the campaign when bounces or complaints pass these shares of answers."""

    enabled: bool = True
    hard_bounce_rate: float = Field(0.05, gt=0, le=1)
    complaint_rate: float = Field(0.001, gt=0, le=1)
    min_answers: int = Field(200, ge=1)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


class LimitsConfig(_Model):
    """What one recipient's render may cost (``limits:``); see stampcli.sandbox."""

    body: int = Field(2_000_000, gt=0, description="characters a body template may yield")
    header: int = Field(10_000, gt=0, description="characters of a subject or header template")
    seconds: float = Field(10.0, gt=0, description="seconds one recipient's render may take")

    @field_validator("body", "header", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        m = _SIZE.fullmatch(v.strip())
        if m is None:
            raise ValueError(f"{v!r} is not a size (like 2MB, 500kB or 100000)")
        unit = (m.group(2) or "").lower().removesuffix("b")
        return int(float(m.group(1)) * _UNITS[unit])


class Campaign(_Model):
    """A loaded campaign.yml. Paths are absolute; ``${ENV}`` already substituted."""

    name: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from")
    reply_to: str | None = None
    subject: str = Field(min_length=1)
    template: Path
    text_template: Path | None = None
    layout: Path | None = None  # HTML layout a Markdown template is rendered into
    # what the template is; None: by its suffix (.txt text, .md Markdown, else HTML)
    format: Literal["html", "markdown", "text"] | None = None
    limits: LimitsConfig = LimitsConfig()
    audience: AudienceConfig
    unsubscribe: UnsubscribeConfig | None = None
    transactional: bool = False
    headers: dict[str, str] = {}
    list_id: str | None = None
    feedback_id: str | None = None
    providers: list[ProviderConfig] = Field(min_length=1)
    throttle: ThrottleConfig = ThrottleConfig()
    variables: dict[str, Any] = {}
    attachments: list[Path] = []
    images: dict[str, Path] = {}  # cid name -> file, used as <img src="cid:NAME">
    allow_paths: list[Path] = []  # folders beside the campaign's own that files may come from
    tracking: TrackingConfig = TrackingConfig()
    suppress_pull: bool = False
    auto_stop: AutoStopConfig = AutoStopConfig()
    # the store (ledger, suppressions): a path relative to this file, or a sqlite: URL;
    # kept as written, resolved by stampcli.store.location (also --db and $STAMP_DB)
    store: str | None = None
    bounce_policy: BouncePolicy = BouncePolicy()
    path: Path = Field(Path("campaign.yml"), exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if any(c in v for c in "\r\n\t\x00"):
            raise ValueError("the campaign name cannot contain control characters")
        return v.strip()

    @field_validator("store")
    @classmethod
    def _store(cls, v: str | None) -> str | None:
        from stampcli.store.location import check_url

        return v if v is None else check_url(v)

    @field_validator("from_", "reply_to")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "\r" in v or "\n" in v:
            raise ValueError("an address cannot contain a line break")
        _, addr = parseaddr(v)
        if "@" not in addr or "{{" in addr:
            raise ValueError(f"{v!r} has no plain email address (like 'News <news@example.com>')")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[!-9;-~]+", name):
                raise ValueError(f"{name!r} is not a valid header name")
        return v

    @model_validator(mode="after")
    def _checks(self) -> Campaign:
        labels = [p.label for p in self.providers]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(
                f"two providers share the name {dupes[0]!r}; give each a distinct 'name:'"
            )
        weighted = [p.weight is not None for p in self.providers]
        if any(weighted) and not all(weighted):
            raise ValueError("give 'weight:' to every provider or to none")
        return self

    @property
    def from_address(self) -> str:
        return parseaddr(self.from_)[1]

    @property
    def sender_domain(self) -> str:
        return self.from_address.rsplit("@", 1)[-1].lower()

    @property
    def base_dir(self) -> Path:
        return self.path.parent


# --------------------------------------------------------------------------- loading


def _url_nodes(root: yaml.MappingNode) -> set[int]:
    """The ids of the scalars at ``providers[*].url``, whose ``${NAME}`` values are encoded."""
    found: set[int] = set()
    for key, value in root.value:
        if key.value != "providers" or not isinstance(value, yaml.SequenceNode):
            continue
        for item in value.value:
            if isinstance(item, yaml.MappingNode):
                for k, v in item.value:
                    if k.value == "url" and isinstance(v, yaml.ScalarNode):
                        found.add(id(v))
    return found


def _substitute_env(
    node: yaml.Node,
    env: Mapping[str, str],
    missing: list[tuple[str, int]],
    urls: set[int] | None = None,
    seen: set[int] | None = None,
) -> None:
    """Replace ``${NAME}`` in every scalar of the composed YAML tree, in place.

    In a provider URL (``urls``), a ``${NAME}`` after the ``://`` stands for one
    part of the URL (a user, password, key, host, option value) and is put in
    percent-encoded, so that the URL parser, which decodes each part once,
    hands it to the provider exactly as set, ``%``, ``?``, ``#``, ``@``, ``:``
    and ``/`` included. A ``${NAME}`` before the ``://`` (a whole URL kept in
    one variable) is put in as it is: it is URL text, encoded by its author.
    ``seen`` keeps a node reached twice through a YAML alias from being
    substituted twice (``$${X}`` must stay ``${X}``).
    """
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        if isinstance(node.value, str) and "$" in node.value:
            authority = node.value.find("://") + 3 if urls and id(node) in urls else 0

            def sub(m: re.Match[str]) -> str:
                if m.group(0) == "$$":
                    return "$"
                name = m.group(1)
                if name not in env:
                    missing.append((name, node.start_mark.line + 1))
                    return ""
                value = env[name]
                redact.register(value)
                return _encode(value) if 3 <= authority <= m.start() else value

            replaced = _ENV_RE.sub(sub, node.value)
            if replaced != node.value:
                # a substituted value is plain text: never re-read as YAML bool/number
                node.value = replaced
                node.tag = "tag:yaml.org,2002:str"
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _substitute_env(child, env, missing, urls, seen)
    elif isinstance(node, yaml.MappingNode):
        for _, child in node.value:
            _substitute_env(child, env, missing, urls, seen)


_MAX_NODES = 100_000


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the tree holds once aliases are expanded (guards against YAML bombs)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = _MAX_NODES + 1  # a cycle counts as too big
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo)
            if size > _MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for key, child in node.value:
            size += _expanded_size(key, memo) + _expanded_size(child, memo)
            if size > _MAX_NODES:
                break
    memo[id(node)] = size
    return size


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the key path ``loc`` in the composed YAML tree."""
    line = None if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = None
            for key, value in node.value:
                if key.value == part:
                    found = (key, value)
                    break
            if found is None:
                return line
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items() if n != "path"]


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Campaign
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        fld = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if fld is None:
            return None
        ann = fld.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = None
        for c in candidates:
            for sub in (c, *getattr(c, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    model = sub
    return model


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        choices = _aliases(model) if model else []
        close = difflib.get_close_matches(key, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        allowed = f"; allowed here: {', '.join(choices)}" if choices else ""
        return f"unknown key {key!r}{hint}{allowed}"
    if kind == "missing":
        return "this key is required"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return redact.redact(msg)


def _fmt_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def load_dotenv(path: Path) -> None:
    """Read ``KEY=VALUE`` lines from ``path`` (if it exists) into the environment.

    A ``.env`` file next to campaign.yml keeps secrets out of the campaign file
    and shell history; variables already set in the environment win. Every
    value is registered as a secret.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (FileNotFoundError, NotADirectoryError):
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{path}:{number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        redact.register(value)
        os.environ.setdefault(name, value)


def load_campaign(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Campaign:
    """Read, substitute, validate and resolve a campaign file.

    Raises :class:`ConfigError` whose message lists every problem, one per line,
    as ``FILE:LINE: key.path: what is wrong``.
    """
    file = Path(path)
    if env is None:
        load_dotenv(file.parent / ".env")
        env = os.environ
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such campaign file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a text file (campaign files are UTF-8 YAML)") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it ({exc.strerror})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}{where}: not valid YAML: {problem}") from None
    if root is None:
        raise ConfigError(f"{file}: the campaign file is empty")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{file}: a campaign file is a mapping of keys (name:, from:, ...)")
    if _expanded_size(root, {}) > _MAX_NODES:
        raise ConfigError(
            f"{file}: the YAML expands to more than {_MAX_NODES:,} values "
            "(anchors and aliases nested too deep); a campaign file is far smaller"
        )
    missing: list[tuple[str, int]] = []
    _substitute_env(root, env, missing, _url_nodes(root))
    if missing:
        lines = [f"{file}:{line}: environment variable {name} is not set" for name, line in missing]
        raise ConfigError("\n".join(lines))
    try:
        data = yaml.SafeLoader(text).construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: a campaign file is a mapping of keys (name:, from:, ...)")
    data = _resolve_paths(data, file.parent.resolve())
    data["path"] = file.resolve()
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            where = f"{file}:{line}" if line else str(file)
            lines.append(f"{where}: {_fmt_loc(loc)}: {_describe(err)}")
        raise ConfigError("\n".join(lines)) from None
    # the token secret is registered now, not only when the renderer reads it, so
    # that _check_files refuses an attachment holding it
    secret_env = campaign.unsubscribe.secret_env if campaign.unsubscribe else None
    redact.register(env.get(secret_env or UnsubscribeConfig().secret_env))
    _check_files(campaign, file, root)
    return campaign


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    def fix(v: object) -> object:
        if isinstance(v, str) and v and "://" not in v:
            return str((base / os.path.expanduser(v)).resolve())
        return v

    out = dict(data)
    for key in ("template", "text_template", "layout"):
        if key in out:
            out[key] = fix(out[key])
    for key in ("attachments", "allow_paths"):
        if isinstance(out.get(key), list):
            out[key] = [fix(v) for v in out[key]]
    if isinstance(out.get("images"), dict):
        out["images"] = {k: fix(v) for k, v in out["images"].items()}
    aud = out.get("audience")
    if isinstance(aud, dict) and "file" in aud:
        out["audience"] = {**aud, "file": fix(aud["file"])}
    provs = out.get("providers")
    if isinstance(provs, list):
        fixed = []
        for p in provs:
            if isinstance(p, dict) and isinstance(p.get("url"), str):
                url: str = p["url"]
                if url.lower().startswith("outbox://"):
                    # the folder is decoded once here and re-encoded, so that the parser's
                    # one decoding gives back the folder as written (or as ${NAME} held it)
                    folder, sep, query = url.split("://", 1)[1].partition("?")
                    resolved = str((base / _decode(folder)).resolve())
                    p = {**p, "url": f"outbox://{quote(resolved, errors='surrogateescape')}"}
                    p["url"] += sep + query
            fixed.append(p)
        out["providers"] = fixed
    return out


# Secrets shorter than this are not looked for inside attachments: a value of a few
# characters (a port, a region, "true", a short user name, all of which ${NAME} may
# register) turns up by chance in a PDF or an image of a few megabytes and would
# refuse a harmless file, while real keys and passwords are longer; at 8 bytes a
# chance match in 10 MB of random data is about one in 10^12.
_SECRET_SCAN_MIN = 8


def _holds_secret(data: bytes) -> bool:
    """True when ``data`` contains a registered secret (any of its registered forms)."""
    for secret in redact.known():
        if len(secret) >= _SECRET_SCAN_MIN and secret.encode("utf-8", "surrogateescape") in data:
            return True
    return False


def _check_files(campaign: Campaign, file: Path, root: yaml.Node) -> None:
    """Every file the campaign reads exists; content files are confined and hold no secret.

    ``template``, ``text_template``, ``layout``, ``attachments`` and ``images``
    must be regular files inside the campaign's folder or an ``allow_paths:``
    entry (symlinks resolved), never under /proc, /sys or /dev and never a
    dotenv file; attachments and images must not contain a registered secret.
    """
    problems = []

    def report(loc: tuple[int | str, ...], what: str) -> None:
        line = _line_of(root, loc)
        where = f"{file}:{line}" if line else str(file)
        problems.append(redact.redact(f"{where}: {_fmt_loc(loc)}: {what}"))

    for i, allowed in enumerate(campaign.allow_paths):
        if not allowed.exists():
            report(("allow_paths", i), f"no such folder: {allowed}")
    roots = [campaign.base_dir, *campaign.allow_paths]
    where = f"the campaign folder {campaign.base_dir}"
    if campaign.allow_paths:
        where += " and allow_paths"
    content: list[tuple[tuple[int | str, ...], Path | None]] = [
        (("template",), campaign.template),
        (("text_template",), campaign.text_template),
        (("layout",), campaign.layout),
    ]
    mailed: list[tuple[tuple[int | str, ...], Path]]
    mailed = [(("attachments", i), p) for i, p in enumerate(campaign.attachments)]
    mailed += [(("images", k), p) for k, p in campaign.images.items()]
    for loc, p in [*content, *mailed]:
        why = None if p is None else paths.refusal(p, roots, where=where)
        if why is not None:
            report(loc, why)
    # the list may live anywhere (an export from the CRM); it is read, never mailed
    aud = campaign.audience.file
    if aud is not None and not aud.is_file():
        report(("audience", "file"), f"no such file: {aud}")
    if problems:
        raise ConfigError("\n".join(problems))
    for loc, p in mailed:
        try:
            data = p.read_bytes()
        except OSError as exc:
            report(loc, f"cannot read {p}: {exc.strerror}")
            continue
        if _holds_secret(data):
            # which secret is not said: the message goes to terminals and CI logs
            report(
                loc,
                f"{p} contains the value of a secret (a ${{NAME}} or .env value, a "
                "provider key or the unsubscribe secret); stamp will not mail it",
            )
    if problems:
        raise ConfigError("\n".join(problems))


def sender_address(campaign: Campaign) -> Address:
    """The From address as an ``Address`` (display name may still be a template)."""
    name, addr = parseaddr(campaign.from_)
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name, username=local, domain=domain)


SendMode = Literal["failover", "weighted"]


def send_mode(campaign: Campaign) -> SendMode:
    return "weighted" if campaign.providers[0].weight is not None else "failover"
