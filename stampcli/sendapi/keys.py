"""API keys: made at random, kept only as SHA-256 hashes, compared in constant time.

A key is ``stamp_`` and 32 random bytes in URL-safe base64 (256 bits: a hash of
it cannot be reversed by search, so an unsalted SHA-256 is enough and lets the
server find a key without storing it). :class:`KeyRing` maps a presented key to
its pool by comparing its hash with every known hash (``hmac.compare_digest``,
all of them, whether or not one matched), so the time taken says nothing about
which key or how much of it matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from stampcli import redact
from stampcli.sendapi.config import ServeConfig

PREFIX = "stamp_"
MIN_ENV_KEY = 20  # characters a key from key_env / admin_key_env must have


def new_key() -> str:
    """A fresh API key."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key``: what serve.yml keeps."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """Which pool a key belongs to, and whether a key is the admin key."""

    def __init__(self, config: ServeConfig, env: Mapping[str, str]) -> None:
        self._hashes: list[tuple[bytes, str]] = []
        self.missing: list[str] = []  # "pool: VAR" for key_env names not set
        for pool in config.pools:
            for h in pool.keys:
                self._hashes.append((bytes.fromhex(h), pool.name))
            if pool.key_env:
                value = env.get(pool.key_env, "")
                if len(value) >= MIN_ENV_KEY:
                    redact.register(value)
                    self._hashes.append((hashlib.sha256(value.encode()).digest(), pool.name))
                else:
                    self.missing.append(f"{pool.name}: {pool.key_env}")
        admin = env.get(config.admin_key_env, "") if config.admin_key_env else ""
        if admin:
            redact.register(admin)
        self._admin = hashlib.sha256(admin.encode()).digest() if len(admin) >= MIN_ENV_KEY else None

    def pool_of(self, key: str) -> str | None:
        """The pool ``key`` sends as, or None for an unknown key."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: str | None = None
        for known, pool in self._hashes:  # every hash, always: no early exit
            if hmac.compare_digest(digest, known) and found is None:
                found = pool
        return found

    def is_admin(self, key: str) -> bool:
        if self._admin is None:
            return False
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(digest, self._admin)

    @property
    def has_admin(self) -> bool:
        return self._admin is not None

    def __len__(self) -> int:
        return len(self._hashes)
