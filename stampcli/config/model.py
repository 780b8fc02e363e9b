"""The frozen pydantic models of campaign.yml: :class:`Campaign` and the sections it holds.

Field types, defaults and the checks that need no file or environment; the
loader (:mod:`stampcli.config.loader`) substitutes ``${NAME}``, resolves
paths and turns validation errors into located messages.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stampcli.config.dkim import DkimConfig
from stampcli.config.provider_url import ProviderURL, parse_provider_url
from stampcli.config.schedule import ABConfig, ScheduleConfig, WindowConfig, parse_pace
from stampcli.config.sending import DomainLimit, WarmupConfig, check_domains
from stampcli.config.values import Rate, parse_duration, parse_rate, parse_size
from stampcli.events.policy import BouncePolicy


def check_address(v: str | None) -> str | None:
    """A From or Reply-To value: a plain address, perhaps with a (template) display name."""
    if v is None:
        return v
    if "\r" in v or "\n" in v:
        raise ValueError("an address cannot contain a line break")
    _, addr = parseaddr(v)
    if "@" not in addr or "{{" in addr:
        raise ValueError(f"{v!r} has no plain email address (like 'News <news@example.com>')")
    return v


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
    """``tracking:``: the providers' open/click tracking switches, or stamp's own tracking.

    Without ``own`` the switches go to each provider (None: the account's default).
    With ``own: true`` stamp rewrites the links and adds the open pixel itself
    (:mod:`stampcli.render.tracking`); ``opens``/``clicks`` then choose which of the
    two it does (unset: both), and providers are told to track nothing, so no hit is
    counted twice.
    """

    opens: bool | None = None  # None: leave the provider's account default
    clicks: bool | None = None
    own: bool = False
    base_url: str | None = (
        None  # where `stamp serve` answers /o/ and /c/, e.g. https://t.acme.example
    )
    skip: list[str] = []  # URL patterns (shell-style: * ? [..]) whose links are left alone
    expire_after: float = Field(400 * 86400.0, gt=0)  # hits on older links are not recorded

    @field_validator("expire_after", mode="before")
    @classmethod
    def _expiry(cls, v: object) -> float:
        return parse_duration(v)

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        parts = urlsplit(v)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if (
            not (parts.scheme == "https" or (parts.scheme == "http" and local))
            or not parts.hostname
        ):
            raise ValueError(
                f"{v!r} is not an https:// URL (plain http:// only for localhost, to test)"
            )
        if parts.query or parts.fragment or "{" in v:
            raise ValueError(
                f"{v!r}: give the base URL alone, without a query, #fragment or template"
            )
        return v.rstrip("/")

    @field_validator("skip")
    @classmethod
    def _skip(cls, v: list[str]) -> list[str]:
        for i, pattern in enumerate(v):
            if not pattern.strip():
                raise ValueError(
                    f"skip[{i}] is empty; give a URL pattern like 'https://acme.example/account/*'"
                )
        return [p.strip() for p in v]

    @model_validator(mode="after")
    def _own(self) -> TrackingConfig:
        if self.own and self.base_url is None:
            raise ValueError(
                "tracking.own needs tracking.base_url: the https:// address where "
                "`stamp serve` answers the tracked links (e.g. https://t.acme.example)"
            )
        if not self.own and (self.base_url is not None or self.skip):
            given = "base_url" if self.base_url is not None else "skip"
            raise ValueError(f"tracking.{given} is used only with tracking.own: true")
        return self

    @property
    def own_opens(self) -> bool:
        return self.own and self.opens is not False

    @property
    def own_clicks(self) -> bool:
        return self.own and self.clicks is not False

    def for_providers(self) -> TrackingConfig:
        """The switches the providers get: with own tracking, theirs off."""
        if not self.own:
            return self
        return TrackingConfig(opens=False, clicks=False)


class BouncesConfig(_Model):
    """Where SMTP sends hear back (``bounces:``): the VERP return path and the bounce mailbox."""

    # the envelope sender's base, "bounces@bounce.acme.example": each message's MAIL FROM
    # becomes bounces+TOKEN@bounce.acme.example (stampcli.compliance.verp)
    return_path: str | None = None
    secret_env: str = "STAMP_VERP_SECRET"  # signs the VERP tokens
    # the bounce mailbox `stamp bounces fetch` reads: imaps://user:${PASS}@host/INBOX
    mailbox: str | None = None
    processed_folder: str = Field("stamp-processed", min_length=1, max_length=200)
    delete: bool = False  # delete processed messages instead of moving them

    @field_validator("return_path")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        local, at, domain = v.strip().rpartition("@")
        if (
            not at
            or not local
            or "." not in domain
            or "+" in local
            or any(c in v for c in " <>\r\n\t,;")
        ):
            raise ValueError(
                "bounces.return_path must be a plain address like bounces@bounce.example "
                "(no '+': stamp adds +TOKEN itself)"
            )
        return v.strip()


class AutoStopConfig(_Model):
    """Pause the campaign when bounces or complaints pass these shares of answers."""

    enabled: bool = True
    hard_bounce_rate: float = Field(0.05, gt=0, le=1)
    complaint_rate: float = Field(0.001, gt=0, le=1)
    min_answers: int = Field(200, ge=1)


class LimitsConfig(_Model):
    """What one recipient's render may cost (``limits:``); see stampcli.sandbox."""

    body: int = Field(2_000_000, gt=0, description="characters a body template may yield")
    header: int = Field(10_000, gt=0, description="characters of a subject or header template")
    seconds: float = Field(10.0, gt=0, description="seconds one recipient's render may take")

    @field_validator("body", "header", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return parse_size(v)


class Campaign(_Model):
    """A loaded campaign.yml. Paths are absolute; ``${ENV}`` already substituted."""

    name: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from")
    reply_to: str | None = None
    # the To header, a template: "{{ first_name }} {{ last_name }} <{{ email }}>"; its
    # address must be the recipient's (stampcli.render.headers.to_address)
    to: str | None = None
    # copies: templates of addresses ("{{ manager_email }}", "Accounts <ac@x.example>"),
    # each rendering to none, one or a comma-separated list; bcc is never in the headers
    cc: list[str] = []
    bcc: list[str] = []
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
    # attachments: entries that are templates ("invoices/{{ customer_id }}.pdf"), as
    # written (relative to the campaign folder): each recipient's own file, if any.
    # Filled by the loader from attachments:, never written in campaign.yml.
    attachment_templates: list[str] = []
    images: dict[str, Path] = {}  # cid name -> file, used as <img src="cid:NAME">
    allow_paths: list[Path] = []  # folders beside the campaign's own that files may come from
    tracking: TrackingConfig = TrackingConfig()
    suppress_pull: bool = False
    auto_stop: AutoStopConfig = AutoStopConfig()
    bounce_policy: BouncePolicy = BouncePolicy()
    bounces: BouncesConfig = BouncesConfig()
    dkim: DkimConfig | None = None  # sign SMTP and outbox sends (stampcli.config.dkim)
    # per-recipient-domain rates and a warm-up cap (stampcli.config.sending)
    domains: dict[str, DomainLimit] = {}
    warmup: WarmupConfig | None = None
    # the store (ledger, suppressions): a path relative to this file, or a sqlite: URL;
    # kept as written, resolved by stampcli.store.location (also --db and $STAMP_DB)
    store: str | None = None
    # when messages go out (stampcli.config.schedule, README "Schedules, windows and A/B tests")
    schedule: ScheduleConfig | None = None
    window: WindowConfig | None = None
    pace: Rate | None = None  # uniform pieces: at most this many messages per second/minute/hour
    ab: ABConfig | None = None
    path: Path = Field(Path("campaign.yml"), exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if any(c in v for c in "\r\n\t\x00"):
            raise ValueError("the campaign name cannot contain control characters")
        return v.strip()

    @field_validator("pace", mode="before")
    @classmethod
    def _pace(cls, v: object) -> Rate | None:
        return parse_pace(v)

    @field_validator("store")
    @classmethod
    def _store(cls, v: str | None) -> str | None:
        from stampcli.store.location import check_url

        return v if v is None else check_url(v)

    @field_validator("cc", "bcc", mode="before")
    @classmethod
    def _copies(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("from_", "reply_to")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return check_address(v)

    @field_validator("to")
    @classmethod
    def _to(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "\r" in v or "\n" in v:
            raise ValueError("to: cannot contain a line break")
        if "{" not in v:
            raise ValueError(
                "to: is the same for every recipient; make it a template with the "
                "recipient's address, like '{{ first_name }} {{ last_name }} <{{ email }}>'"
            )
        return v

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: dict[str, DomainLimit]) -> dict[str, DomainLimit]:
        return check_domains(v)

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
        for variant in self.ab.variants if self.ab else ():
            if variant.from_ is not None:
                try:
                    check_address(variant.from_)
                except ValueError as exc:
                    raise ValueError(f"ab.variants: {exc}") from None
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
