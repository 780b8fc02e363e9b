"""The send API for tests: a serve.yml of pools over local provider fakes, and the real
app under uvicorn on 127.0.0.1 (``serve_helpers.running``)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from serve_helpers import running

from stampcli.sendapi.config import load_serve_config
from stampcli.sendapi.keys import hash_key, new_key
from stampcli.server.run import Built, build
from stampcli.store import open_store

ADMIN_KEY = "admin-key-0123456789abcdef"


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    tmp_path: Path,
    providers: Sequence[Mapping[str, Any]],
    *,
    key: str,
    pool: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    data: dict[str, Any] = {
        "admin_key_env": "STAMP_ADMIN_KEY",
        "sync_deadline": "10s",
        "pools": [
            {
                "name": "app",
                "keys": [hash_key(key)],
                "from_domains": ["acme.example"],
                "providers": [dict(p) for p in providers],
                **(pool or {}),
            }
        ],
        **(extra or {}),
    }
    path = tmp_path / "serve.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def build_api(tmp_path: Path, config: Path, db: str | None = None) -> Built:
    store_url = db or str(tmp_path / "stamp.db")
    open_store(store_url).close()
    env = {"STAMP_ADMIN_KEY": ADMIN_KEY}
    return build(store_url, env, serve_config=load_serve_config(config, env))


@contextlib.contextmanager
def api_server(
    tmp_path: Path,
    providers: Sequence[Mapping[str, Any]],
    *,
    pool: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    db: str | None = None,
) -> Iterator[tuple[str, str, Built]]:
    """(base URL, the pool's API key, the built app) while the server runs."""
    key = new_key()
    config = write_config(tmp_path, providers, key=key, pool=pool, extra=extra)
    built = build_api(tmp_path, config, db)
    with running(built) as url:
        yield url, key, built


def message(to: str = "ann@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "from": "ACME <hello@acme.example>",
        "to": to,
        "subject": "Your receipt",
        "html": "<style>p{color:red}</style><p>Thanks, <b>Ann</b>!</p>",
        **extra,
    }


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
