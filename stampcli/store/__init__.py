"""The store: everything stamp keeps between runs, behind :mod:`stampcli.store.protocols`.

:func:`open_store` is the library's way in: it takes a path or a URL and
returns an object implementing :class:`stampcli.store.protocols.Store`: SQLite
(:mod:`stampcli.store.db` and the modules beside it, one per table) for a
path or ``sqlite:///``, PostgreSQL (:mod:`stampcli.store.postgres`) for
``postgresql://`` or ``postgres://``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from stampcli.errors import StoreError
from stampcli.store import protocols
from stampcli.store.db import Store

_SQLITE = "sqlite://"
_POSTGRES = ("postgresql://", "postgres://")


def open_store(url: str | os.PathLike[str], *, readonly: bool = False) -> protocols.Store:
    """Open the store at ``url``: a file path, ``sqlite:///path/to/stamp.db``, or PostgreSQL.

    ``sqlite:///stamp.db`` is relative to the working directory and
    ``sqlite:////var/lib/stamp.db`` absolute (SQLAlchemy's spelling).
    ``postgresql://user@host:port/db`` (``postgres://`` too, with any libpq
    options after ``?``) opens the PostgreSQL store in that database, creating
    its tables if it has none. Any other scheme is refused with :class:`StoreError`.
    """
    if isinstance(url, str) and url.strip().lower().startswith(_POSTGRES):
        # imported here: a SQLite run never loads psycopg
        from stampcli.store.postgres import PostgresStore

        return PostgresStore(url, readonly=readonly)
    return Store(sqlite_path(url), readonly=readonly)


def sqlite_path(url: str | os.PathLike[str]) -> Path:
    """The database file ``url`` names (see :func:`open_store`); StoreError for other backends."""
    if not isinstance(url, str):
        return Path(url)
    text = url.strip()
    low = text.lower()
    if low.startswith(_POSTGRES):
        raise StoreError(
            f"store {_without_password(text)}: a PostgreSQL URL names no SQLite file "
            "(open it with open_store)"
        )
    if low.startswith(_SQLITE):
        parts = urlsplit(text)
        if parts.netloc or parts.query or parts.fragment:
            raise StoreError(
                f"store {text}: a SQLite URL is sqlite:///relative/path or "
                "sqlite:////absolute/path (three slashes, then the path; no host, no options)"
            )
        path = unquote(parts.path[1:])  # drop the slash that ends "sqlite://"
        if not path:
            raise StoreError(f"store {text}: the URL names no file (sqlite:///stamp.db)")
        return Path(path)
    scheme = urlsplit(text).scheme
    if "://" in text and len(scheme) > 1:  # a one-letter "scheme" is a Windows drive
        raise StoreError(
            f"store {_without_password(text)}: unknown kind of store {scheme!r}; "
            "use a SQLite file (a path, or sqlite:///path/to/stamp.db) or postgresql://"
        )
    if not text:
        raise StoreError("store: no path given (a file, or sqlite:///path/to/stamp.db)")
    return Path(text)


def _without_password(url: str) -> str:
    """``url`` with any password replaced, so that an error message never shows it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{netloc[1]}").geturl()


# mypy checks here that the SQLite store implements every protocol.
def _implements(store: Store) -> protocols.Store:
    return store


__all__ = ["Store", "open_store", "protocols", "sqlite_path"]
