"""campaign.yml -> pydantic models.

Loads a campaign file, substitutes ``${NAME}`` from the environment (a missing
variable is an error that names it), resolves relative paths against the
campaign file, and turns every validation problem into one line naming the
file, the key path and, where YAML gives it, the line. Provider URLs are
parsed here (scheme, credentials, host, options) so that adapters receive a
checked ``ProviderURL``: an unknown scheme or ``?option``, or an option value
the scheme does not take, is refused with a suggestion. The secrets inside
them are registered with :mod:`stampcli.redact`.
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
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from stampcli import redact
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


def parse_provider_url(url: str) -> ProviderURL:
    """Parse and check a provider URL; registers its credentials as secrets."""
    if "://" not in url:
        raise ValueError(
            "a provider URL looks like smtp://user:pass@host:587, sendgrid://KEY or outbox://DIR"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in PROVIDER_SCHEMES:
        close = difflib.get_close_matches(scheme, PROVIDER_SCHEMES, n=1)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        known = ", ".join(sorted(PROVIDER_SCHEMES))
        raise ValueError(f"unknown provider scheme {scheme!r}{hint}; known: {known}")
    rest = url.split("://", 1)[1]
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
            user, password = (unquote(p) for p in creds.split(":", 1))
        else:
            user = unquote(creds)
    for secret in (password, user if scheme not in ("smtp", "smtps") else None):
        redact.register(secret)
    host: str | None
    port: int | None = None
    path = ""
    if scheme == "outbox":
        host, path = None, unquote(rest)
        if not path:
            raise ValueError("outbox:// needs a folder, for example outbox://out/")
    else:
        parts = urlsplit(f"//{rest}")
        host = parts.hostname
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port in provider URL: {exc}") from None
        path = parts.path
        if scheme in ("smtp", "smtps") and not host:
            raise ValueError(f"{scheme}:// needs a host, for example {scheme}://user:pass@host:587")
        if scheme in _KEY_ONLY_SCHEMES and not user:
            raise ValueError(f"{scheme}:// needs an API key, for example {scheme}://${{API_KEY}}")
    options = _check_options(scheme, parse_qsl(query, keep_blank_values=True))
    return ProviderURL(scheme, user, password, host, port, path, options)


def _check_options(scheme: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The query options with lower-case names, each known to ``scheme`` with a value it takes."""
    known = PROVIDER_OPTIONS[scheme]
    options = {name.lower(): value for name, value in pairs}
    # a session token is as secret as the key beside it: registered before any refusal
    for secret in (v for k, v in options.items() if k in _SECRET_OPTIONS):
        redact.register(secret)
    for name, value in options.items():
        note = f" ({_OPTION_HINTS[scheme, name]})" if (scheme, name) in _OPTION_HINTS else ""
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            takes = f"takes: {', '.join(known)}" if known else "takes no options"
            raise ValueError(f"unknown option {name!r}{hint}; {scheme}:// {takes}{note}")
        allowed = known[name]
        if allowed is not None and value.lower() not in allowed:
            raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}{note}")
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


class Campaign(_Model):
    """A loaded campaign.yml. Paths are absolute; ``${ENV}`` already substituted."""

    name: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from")
    reply_to: str | None = None
    subject: str = Field(min_length=1)
    template: Path
    text_template: Path | None = None
    layout: Path | None = None  # HTML layout a Markdown template is rendered into
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
    tracking: TrackingConfig = TrackingConfig()
    suppress_pull: bool = False
    auto_stop: AutoStopConfig = AutoStopConfig()
    bounce_policy: BouncePolicy = BouncePolicy()
    path: Path = Field(Path("campaign.yml"), exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if any(c in v for c in "\r\n\t\x00"):
            raise ValueError("the campaign name cannot contain control characters")
        return v.strip()

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


def _substitute_env(
    node: yaml.Node, env: Mapping[str, str], missing: list[tuple[str, int]]
) -> None:
    """Replace ``${NAME}`` in every scalar of the composed YAML tree, in place."""
    if isinstance(node, yaml.ScalarNode):
        if isinstance(node.value, str) and "$" in node.value:

            def sub(m: re.Match[str]) -> str:
                if m.group(0) == "$$":
                    return "$"
                name = m.group(1)
                if name not in env:
                    missing.append((name, node.start_mark.line + 1))
                    return ""
                redact.register(env[name])
                return env[name]

            replaced = _ENV_RE.sub(sub, node.value)
            if replaced != node.value:
                # a substituted value is plain text: never re-read as YAML bool/number
                node.value = replaced
                node.tag = "tag:yaml.org,2002:str"
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _substitute_env(child, env, missing)
    elif isinstance(node, yaml.MappingNode):
        for _, child in node.value:
            _substitute_env(child, env, missing)


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
    _substitute_env(root, env, missing)
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
    if isinstance(out.get("attachments"), list):
        out["attachments"] = [fix(v) for v in out["attachments"]]
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
                    folder = url.split("://", 1)[1]
                    p = {**p, "url": "outbox://" + str((base / folder).resolve())}
            fixed.append(p)
        out["providers"] = fixed
    return out


def _check_files(campaign: Campaign, file: Path, root: yaml.Node) -> None:
    problems = []
    wanted: list[tuple[tuple[int | str, ...], Path | None]] = [
        (("template",), campaign.template),
        (("text_template",), campaign.text_template),
        (("layout",), campaign.layout),
        (("audience", "file"), campaign.audience.file),
    ]
    wanted += [(("attachments", i), p) for i, p in enumerate(campaign.attachments)]
    wanted += [(("images", k), p) for k, p in campaign.images.items()]
    for loc, p in wanted:
        if p is not None and not p.is_file():
            line = _line_of(root, loc)
            where = f"{file}:{line}" if line else str(file)
            problems.append(f"{where}: {_fmt_loc(loc)}: no such file: {p}")
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
