"""Keeps secrets out of everything stamp writes.

Every value that came from the environment through ``${NAME}``, and every
password or key found in a provider URL, is registered here; ``redact()``
replaces them in any text before it reaches a log line, the ledger, an error
message or a file.

A :class:`Redactor` is one registry of secrets. The module-level functions
(:func:`register`, :func:`redact`, :func:`known`, :func:`clear`) use the
process's own, :data:`DEFAULT`, which is what the CLI, a ``stamp worker`` and the
render workers use: one process, one run. A long-running server that loads
several campaigns keeps a Redactor per campaign or request instead, so one
campaign's secrets neither pile up nor leak into another's output.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

_MIN_SECRET_LEN = 4
FEW_SECRETS = 16  # up to this many, redact() tests each with ``in`` before the regex


class Redactor:
    """A set of secrets and the text they are replaced in; thread-safe to register in."""

    __slots__ = ("_lock", "_pattern", "_secrets", "_state")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        # (pattern, the secrets when few), swapped as one: with a few secrets, ``in``
        # tests go first, and text that holds none (nearly all) is answered without the
        # regex, about 3x faster (a webhook event's raw copy)
        self._state: tuple[re.Pattern[str] | None, tuple[str, ...] | None] = (None, ())

    def register(self, value: str | None) -> None:
        """Remember ``value`` (and its URL-quoted forms) as a secret."""
        if not value or len(value) < _MIN_SECRET_LEN:
            return
        # surrogateescape: an environment value that is not UTF-8 holds surrogates, which
        # strict quoting would refuse with a traceback; this is also how config encodes it
        forms = {
            value,
            quote(value, safe="", errors="surrogateescape"),
            unquote(value, errors="surrogateescape"),
        }
        with self._lock:
            before = len(self._secrets)
            self._secrets.update(f for f in forms if len(f) >= _MIN_SECRET_LEN)
            if len(self._secrets) != before:
                # longest first: a secret that contains another is replaced whole
                ordered = sorted(self._secrets, key=len, reverse=True)
                pattern = re.compile("|".join(re.escape(s) for s in ordered))
                self._state = (pattern, tuple(ordered) if len(ordered) <= FEW_SECRETS else None)
                self._pattern = pattern

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``***``."""
        pattern, few = self._state
        if pattern is None or not text:
            return text
        if few is not None:
            for secret in few:
                if secret in text:
                    return pattern.sub("***", text)
            return text
        return pattern.sub("***", text)

    def known(self) -> frozenset[str]:
        """The registered secrets (for tests that grep output for them)."""
        with self._lock:
            return frozenset(self._secrets)

    def clear(self) -> None:
        """Forget every secret."""
        with self._lock:
            self._secrets.clear()
            self._state = (None, ())
            self._pattern = None


# The process's registry: what the functions below, and so every module of stampcli, use.
DEFAULT = Redactor()


def register(value: str | None) -> None:
    """Remember ``value`` (and its URL-quoted forms) as a secret of this process."""
    DEFAULT.register(value)


def redact(text: str) -> str:
    """``text`` with every secret registered in this process replaced by ``***``."""
    return DEFAULT.redact(text)


def known() -> frozenset[str]:
    """The secrets registered in this process (for tests that grep output for them)."""
    return DEFAULT.known()


def holds_secret(data: bytes, shortest: int = 8) -> bool:
    """Whether ``data`` contains a registered secret of at least ``shortest`` characters.

    Shorter values (a port, "true") turn up by chance in megabytes of a PDF and
    would refuse harmless files (see the config loader's attachment check).
    """
    for secret in known():
        if len(secret) >= shortest and secret.encode("utf-8", "surrogateescape") in data:
            return True
    return False


def clear() -> None:
    """Forget every secret of this process (tests only: the CLI never forgets one)."""
    DEFAULT.clear()
