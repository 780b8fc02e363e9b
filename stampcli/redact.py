"""Keeps secrets out of everything stamp writes.

Every value that came from the environment through ``${NAME}``, and every
password or key found in a provider URL, is registered here; ``redact()``
replaces them in any text before it reaches a log line, the ledger, an error
message or a file.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote

_MIN_SECRET_LEN = 4
_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(value: str | None) -> None:
    """Remember ``value`` (and its URL-quoted forms) as a secret."""
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    global _pattern
    # surrogateescape: an environment value that is not UTF-8 holds surrogates, which
    # strict quoting would refuse with a traceback; this is also how config encodes it
    forms = {
        value,
        quote(value, safe="", errors="surrogateescape"),
        unquote(value, errors="surrogateescape"),
    }
    with _lock:
        before = len(_secrets)
        _secrets.update(f for f in forms if len(f) >= _MIN_SECRET_LEN)
        if len(_secrets) != before:
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub("***", text)


def known() -> frozenset[str]:
    """The registered secrets (for tests that grep output for them)."""
    with _lock:
        return frozenset(_secrets)


def clear() -> None:
    """Forget every secret (tests only)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None
