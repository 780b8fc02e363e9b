"""Which store a command uses: never the working directory by accident.

A campaign's ledger and suppressions must be the same wherever ``stamp`` is run
from (a crontab line without ``cd``, a systemd unit, a shell in ``~``): a fresh
store means everyone is mailed again. So the store follows the file a command
is given, not the current directory:

* a campaign (``send``, ``retry``, ``status``, ``check``, ``preview``,
  ``suppress pull``, ``events pull``, ``queue add``): ``--db``, else the
  campaign's ``store:`` key (a path relative to the campaign file, a
  ``sqlite:`` URL or a ``postgresql://`` URL), else ``$STAMP_DB``, else
  ``stamp.db`` beside the campaign file;
* a list (``stamp import FILE``): ``--db``, else ``$STAMP_DB``, else
  ``stamp.db`` beside FILE;
* no file (``lists``, ``suppress add`` ..., ``serve``, ``worker``, ``status``
  without a campaign): ``--db``, else ``$STAMP_DB``, else ``./stamp.db``.

Each of them may name a SQLite file or a PostgreSQL database
(``postgresql://`` or ``postgres://``). A :class:`StoreChoice` is what was
chosen and why; it opens nothing until :meth:`StoreChoice.open`, and a
password in a URL is registered with :mod:`stampcli.redact` as soon as the
URL is read, so no message shows it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stampcli import redact
from stampcli.errors import ConfigError

if TYPE_CHECKING:
    from stampcli.config import Campaign
    from stampcli.store.protocols import Store

DEFAULT_NAME = "stamp.db"
ENV = "STAMP_DB"
_POSTGRES = ("postgresql", "postgres")
# what --db and the library take: a path, a sqlite: URL or a postgresql:// URL
DbArg = str | os.PathLike[str] | None


@dataclass(frozen=True, slots=True)
class StoreChoice:
    """The store a command uses, and what chose it (said in notices and errors).

    A SQLite store has its ``path``; a PostgreSQL one its ``url`` (``path`` is
    None). The URL may hold a password: print :attr:`location` or
    :meth:`describe`, never ``url`` (it is left out of the repr too).
    """

    path: Path | None
    origin: str  # e.g. "--db", "store: in /srv/news/campaign.yml", "$STAMP_DB"
    url: str | None = field(default=None, repr=False)

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    @property
    def location(self) -> str:
        """Where the store is, for messages: the file, or the URL without its password."""
        if self.path is not None:
            return str(self.path)
        return without_password(self.url or "")

    @property
    def exists(self) -> bool:
        """Whether the store is there already (for a database: whether stamp made its tables).

        A database that cannot be reached counts as there: opening it says why.
        """
        if self.path is not None:
            return self.path.exists()
        from stampcli.store.postgres.db import holds_store  # psycopg: only for PostgreSQL

        return holds_store(self.url or "")

    def describe(self) -> str:
        return f"{self.location} ({self.origin})"

    @property
    def target(self) -> str | Path:
        """What :func:`stampcli.store.open_store` opens: the file, or the URL (secret inside)."""
        if self.url is not None:
            return self.url
        return self.path if self.path is not None else Path(DEFAULT_NAME)

    def open(self, *, readonly: bool = False) -> Store:
        """Open the chosen store (read-only: never created)."""
        from stampcli.store import open_store

        return open_store(self.target, readonly=readonly)


def without_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, so that no message shows it."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed port, say: show no more than the scheme
        return url.split("://", 1)[0] + "://..."
    if password is None:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}").geturl()


def _postgres_url(text: str) -> str:
    """A checked ``postgresql://`` URL (its password registered as a secret)."""
    try:
        parts = urlsplit(text)
        password = parts.password
        parts.port  # noqa: B018  (a bad port raises here, not when connecting)
    except ValueError as exc:
        raise ValueError(
            f"{without_password(text)} is not a valid PostgreSQL URL ({exc})"
        ) from None
    redact.register(password)
    if not (parts.netloc or parts.path.strip("/") or parts.query):
        raise ValueError(
            f"{without_password(text)} names no server or database; write "
            "postgresql://USER@HOST:PORT/DATABASE"
        )
    return text


def check_url(value: str) -> str:
    """``value`` if it names a store stamp can open; ValueError saying why not.

    Used by the campaign's ``store:`` key (its validator), ``--db`` and ``$STAMP_DB``.
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
        return _postgres_url(text)
    if scheme != "sqlite":
        raise ValueError(
            f"unknown store URL scheme {scheme!r}; a store is a SQLite file (a path such as "
            "stamp.db, or sqlite:///ABSOLUTE/PATH) or a PostgreSQL database "
            "(postgresql://USER@HOST/DATABASE)"
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


def is_postgres(value: str) -> bool:
    """Whether a checked store value is a PostgreSQL URL."""
    return value.strip().partition("://")[0].lower() in _POSTGRES and "://" in value


def to_path(value: str, base: Path) -> Path:
    """The file a checked SQLite store value names; relative paths resolve against ``base``."""
    text = value.strip()
    if text.lower().startswith("sqlite:"):
        text = text[len("sqlite:") :]
        if text.startswith("//"):
            text = "/" + text.lstrip("/")  # sqlite:///abs/path: the URL's path is absolute
    if text == ":memory:":
        return Path(text)
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path).resolve()


def choose(value: str, base: Path, origin: str) -> StoreChoice:
    """The store a checked value names (``base``: what a relative path is relative to)."""
    if is_postgres(value):
        return StoreChoice(None, origin, value.strip())
    return StoreChoice(to_path(value, base), origin)


def _env(env: Mapping[str, str] | None) -> str | None:
    value = (os.environ if env is None else env).get(ENV)
    return value or None


def _from_env(value: str) -> StoreChoice:
    try:
        check_url(value)
    except ValueError as exc:
        raise ConfigError(f"${ENV}: {exc}") from None
    return choose(value, Path.cwd(), f"${ENV}")


def _from_option(db: str | os.PathLike[str]) -> StoreChoice:
    text = os.fspath(db)
    if "://" in text or text.lower().startswith("sqlite:") or not text.strip():
        try:
            check_url(text)
        except ValueError as exc:
            raise ConfigError(f"--db: {exc}") from None
    return choose(text, Path.cwd(), "--db")


def for_campaign(
    campaign: Campaign, db: DbArg, env: Mapping[str, str] | None = None
) -> StoreChoice:
    """``--db`` > the campaign's ``store:`` > ``$STAMP_DB`` > ``stamp.db`` beside the file.

    An explicit option wins over the file, as on every command line; the file
    wins over the environment, so one shell can run campaigns of several stores
    (and a ``$STAMP_DB`` left set in a profile never sends a campaign from a store
    its file does not name).
    """
    if db is not None:
        return _from_option(db)
    if campaign.store is not None:
        return choose(campaign.store, campaign.base_dir, f"store: in {campaign.path}")
    value = _env(env)
    if value is not None:
        return _from_env(value)
    return StoreChoice(campaign.base_dir / DEFAULT_NAME, f"beside {campaign.path}")


def for_file(file: Path, db: DbArg, env: Mapping[str, str] | None = None) -> StoreChoice:
    """``--db`` > ``$STAMP_DB`` > ``stamp.db`` in the folder of ``file`` (a list to import)."""
    if db is not None:
        return _from_option(db)
    value = _env(env)
    if value is not None:
        return _from_env(value)
    folder = file.expanduser().resolve().parent
    return StoreChoice(folder / DEFAULT_NAME, f"beside {file.expanduser().resolve()}")


def standalone(db: DbArg, env: Mapping[str, str] | None = None) -> StoreChoice:
    """``--db`` > ``$STAMP_DB`` > ``./stamp.db``: for commands given no file."""
    if db is not None:
        return _from_option(db)
    value = _env(env)
    if value is not None:
        return _from_env(value)
    return StoreChoice(Path.cwd() / DEFAULT_NAME, "in the current folder")
