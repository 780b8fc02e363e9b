"""Which store a command uses: never the working directory by accident.

A campaign's ledger and suppressions must be the same wherever ``stamp`` is run
from (a crontab line without ``cd``, a systemd unit, a shell in ``~``): a fresh
store means everyone is mailed again. So the store follows the file a command
is given, not the current directory:

* a campaign (``send``, ``retry``, ``status``, ``check``, ``preview``,
  ``suppress pull``): ``--db``, else the campaign's ``store:`` key (a path
  relative to the campaign file, or a ``sqlite:`` URL), else ``$STAMP_DB``,
  else ``stamp.db`` beside the campaign file;
* a list (``stamp import FILE``): ``--db``, else ``$STAMP_DB``, else
  ``stamp.db`` beside FILE;
* no file (``lists``, ``suppress add`` ..., ``unsubscribe serve``): ``--db``,
  else ``$STAMP_DB``, else ``./stamp.db``.

Only SQLite stores exist today; a ``postgresql://`` URL is refused with a
message saying so. This module only decides paths; it opens nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stampcli.errors import ConfigError

if TYPE_CHECKING:
    from stampcli.config import Campaign

DEFAULT_NAME = "stamp.db"
ENV = "STAMP_DB"
_POSTGRES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class StoreChoice:
    """The store a command uses, and what chose it (said in notices and errors)."""

    path: Path
    origin: str  # e.g. "--db", "store: in /srv/news/campaign.yml", "$STAMP_DB"

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def describe(self) -> str:
        return f"{self.path} ({self.origin})"


def check_url(value: str) -> str:
    """``value`` if it names a store stamp can open; ValueError saying why not.

    Used by the campaign's ``store:`` key (its validator) and for ``$STAMP_DB``.
    """
    text = value.strip()
    if not text:
        raise ValueError("the store is empty; write a path such as stamp.db")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("the store path contains a control character (a line break, NUL, ...)")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise ValueError("the store path is not valid text (an unpaired surrogate)") from None
    scheme, sep, _ = text.partition("://")
    if not sep:
        scheme, sep, rest = text.partition(":")
        if sep and scheme.lower() == "sqlite":
            if not rest.strip("/"):
                raise ValueError(f"{text!r} names no file; write sqlite:///ABSOLUTE/PATH")
            return text
        return text  # a plain path
    scheme = scheme.lower()
    if scheme in _POSTGRES:
        raise ValueError(
            "PostgreSQL stores are not supported yet (a later version adds them); "
            "use a SQLite file: a path such as stamp.db, or sqlite:///ABSOLUTE/PATH"
        )
    if scheme != "sqlite":
        raise ValueError(
            f"unknown store URL scheme {scheme!r}; a store is a SQLite file: a path such as "
            "stamp.db, or sqlite:///ABSOLUTE/PATH"
        )
    rest = text.split("://", 1)[1]
    if rest and not rest.startswith("/"):
        raise ValueError(
            f"{text!r}: a SQLite store is a local file, not a host; write "
            "sqlite:///ABSOLUTE/PATH (three slashes) or a plain path"
        )
    if not rest.strip("/"):
        raise ValueError(f"{text!r} names no file; write sqlite:///ABSOLUTE/PATH")
    return text


def to_path(value: str, base: Path) -> Path:
    """The file a checked store value names; relative paths resolve against ``base``."""
    text = value.strip()
    if text.lower().startswith("sqlite:"):
        text = text[len("sqlite:") :]
        if text.startswith("//"):
            text = "/" + text.lstrip("/")  # sqlite:///abs/path: the URL's path is absolute
    if text == ":memory:":
        return Path(text)
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path).resolve()


def _env(env: Mapping[str, str] | None) -> str | None:
    value = (os.environ if env is None else env).get(ENV)
    return value or None


def _from_env(value: str) -> StoreChoice:
    try:
        check_url(value)
    except ValueError as exc:
        raise ConfigError(f"${ENV}: {exc}") from None
    return StoreChoice(to_path(value, Path.cwd()), f"${ENV}")


def _from_option(db: Path) -> StoreChoice:
    text = str(db)
    if "://" in text or text.lower().startswith("sqlite:"):
        try:
            check_url(text)
        except ValueError as exc:
            raise ConfigError(f"--db: {exc}") from None
    return StoreChoice(to_path(text, Path.cwd()), "--db")


def for_campaign(
    campaign: Campaign, db: Path | None, env: Mapping[str, str] | None = None
) -> StoreChoice:
    """``--db`` > the campaign's ``store:`` > ``$STAMP_DB`` > ``stamp.db`` beside the file.

    An explicit option wins over the file, as on every command line; the file
    wins over the environment, so one shell can run campaigns of several stores.
    """
    if db is not None:
        return _from_option(db)
    if campaign.store is not None:
        return StoreChoice(to_path(campaign.store, campaign.base_dir), f"store: in {campaign.path}")
    value = _env(env)
    if value is not None:
        return _from_env(value)
    return StoreChoice(campaign.base_dir / DEFAULT_NAME, f"beside {campaign.path}")


def for_file(file: Path, db: Path | None, env: Mapping[str, str] | None = None) -> StoreChoice:
    """``--db`` > ``$STAMP_DB`` > ``stamp.db`` in the folder of ``file`` (a list to import)."""
    if db is not None:
        return _from_option(db)
    value = _env(env)
    if value is not None:
        return _from_env(value)
    folder = file.expanduser().resolve().parent
    return StoreChoice(folder / DEFAULT_NAME, f"beside {file.expanduser().resolve()}")


def standalone(db: Path | None, env: Mapping[str, str] | None = None) -> StoreChoice:
    """``--db`` > ``$STAMP_DB`` > ``./stamp.db``: for commands given no file."""
    if db is not None:
        return _from_option(db)
    value = _env(env)
    if value is not None:
        return _from_env(value)
    return StoreChoice(Path.cwd() / DEFAULT_NAME, "in the current folder")
