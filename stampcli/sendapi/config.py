"""``serve.yml``: the pools of the send API and the server's limits.

::

    templates: templates/            # folder of `template:` names (optional)
    admin_key_env: STAMP_ADMIN_KEY   # GET /v1/pools and /v1/providers
    max_body: 10MB                   # larger requests: 413
    sync_deadline: 30s               # ?wait=true answers by then (else 202, still queued)
    lease: 5m                        # a claimed message's sender that dies: unknown after
    reload_every: 2s                 # this file is read again when it changes (0: SIGHUP only)
    pools:
      - name: app
        keys: [<sha256 hex of a key>]   # `stamp api keygen` prints a key and its hash
        key_env: APP_API_KEY            # one more key, from the environment
        from_domains: [acme.example]
        providers:                      # as a campaign's providers:
          - url: "postmark://${POSTMARK_TOKEN}"
          - url: "smtp://${SMTP_USER}:${SMTP_PASS}@smtp.acme.example:587"
        rate: 10/s                      # messages a second this pool may hand in
        daily_quota: 10000              # messages a UTC day

``${NAME}`` is taken from the environment as in campaign.yml. Errors name the file,
the line and the key path (``serve.yml:7: pools[0].keys[0]: ...``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stampcli.config import ProviderConfig
from stampcli.config.loader import _describe, _fmt_loc, _line_of, _substitute_env
from stampcli.config.values import Rate, parse_duration, parse_rate, parse_size
from stampcli.errors import ConfigError
from stampcli.render.headers import idna_domain

_HEX64 = re.compile(r"[0-9a-f]{64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Pool(_Model):
    """One pool: the keys that send as it, the From domains it may use, its providers."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    keys: list[str] = []
    key_env: str | None = None
    from_domains: list[str] = Field(min_length=1)
    providers: list[ProviderConfig] = Field(min_length=1)
    rate: Rate | None = None
    daily_quota: int | None = Field(None, ge=1)

    @field_validator("keys")
    @classmethod
    def _hashes(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            h = item.strip().lower().removeprefix("sha256:")
            if not _HEX64.fullmatch(h):
                raise ValueError(
                    "a key is kept as the SHA-256 hash `stamp api keygen` prints (64 hex "
                    "digits), never as the key itself"
                )
            out.append(h)
        return out

    @field_validator("key_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError(f"{v!r} is not an environment variable name")
        return v

    @field_validator("from_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        return [idna_domain(d) for d in v]

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, v: object) -> Rate | None:
        return None if v is None else parse_rate(v)

    @model_validator(mode="after")
    def _checks(self) -> Pool:
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

    def allows_from(self, domain: str) -> bool:
        return domain.lower() in self.from_domains


class ServeConfig(_Model):
    """A loaded serve.yml; ``templates`` is absolute."""

    pools: list[Pool] = Field(min_length=1)
    templates: Path | None = None
    admin_key_env: str | None = None
    max_body: int = 10_000_000
    sync_deadline: float = 30.0
    # how long a claim holds a message; a sender that dies leaves it `unknown` after this
    lease: float = Field(300.0, gt=0)
    max_batch: int = Field(500, ge=1, le=500)
    # seconds between looks at this file's modification time (0: reloaded on SIGHUP only)
    reload_every: float = Field(2.0, ge=0)
    path: Path = Field(Path("serve.yml"), exclude=True)

    @field_validator("max_body", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return parse_size(v)

    @field_validator("sync_deadline", "lease", "reload_every", mode="before")
    @classmethod
    def _deadline(cls, v: object) -> float:
        return parse_duration(v)

    @model_validator(mode="after")
    def _unique(self) -> ServeConfig:
        names = [p.name for p in self.pools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two pools share the name {dupes[0]!r}")
        if self.lease <= self.sync_deadline:
            raise ValueError("lease must be longer than sync_deadline")
        return self

    def pool(self, name: str) -> Pool | None:
        return next((p for p in self.pools if p.name == name), None)


def load_serve_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> ServeConfig:
    """Read, substitute and validate ``serve.yml``; :class:`ConfigError` lists every problem."""
    file = Path(path)
    env = os.environ if env is None else env
    try:
        text = file.read_text(encoding="utf-8-sig")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: serve.yml is a mapping of keys (pools:, templates:, ...)")
    missing: list[tuple[str, tuple[int | str, ...]]] = []
    data = _substitute_env(data, env, missing)
    if missing:
        raise ConfigError(
            "\n".join(
                f"{file}: {_fmt_loc(loc)}: environment variable {name} is not set"
                for name, loc in missing
            )
        )
    base = file.resolve().parent
    if isinstance(data.get("templates"), str):
        data["templates"] = base / data["templates"]
    data["path"] = file.resolve()
    try:
        config = ServeConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            where = f"{file}:{line}" if line else str(file)
            lines.append(f"{where}: {_fmt_loc(loc)}: {_describe(err)}")
        raise ConfigError("\n".join(lines)) from None
    if config.templates is not None and not config.templates.is_dir():
        raise ConfigError(f"{file}: templates: {config.templates} is not a folder")
    return config
