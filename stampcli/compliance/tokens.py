"""Signed one-click unsubscribe tokens.

A token names a campaign and an address and carries an HMAC-SHA256 over both,
keyed with a secret from the environment (``STAMP_UNSUBSCRIBE_SECRET`` unless
the campaign's ``unsubscribe.secret_env`` names another variable). Any website
can verify one without stamp::

    payload, sig = token.split(".")
    expected = base64url(HMAC_SHA256(secret, payload.encode("ascii")))   # no '=' padding
    ok = constant_time_equal(sig, expected)
    email, campaign = base64url_decode(payload).decode("utf-8").split("\\n", 1)

where ``payload = base64url(email + "\\n" + campaign)`` without padding, and
``email`` is the recipient key (the normalised address in lower case).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
from dataclasses import dataclass

from stampcli.errors import StampError

DEFAULT_SECRET_ENV = "STAMP_UNSUBSCRIBE_SECRET"
MIN_SECRET_LEN = 16


class TokenError(StampError, ValueError):
    """A token is malformed, forged or tampered with."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    email: str
    campaign: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    return hmac.new(secret, digestmod="sha256")


def _mac(secret: bytes, payload: str) -> str:
    # a copy of the keyed state skips hashing the key again: ~1 us less a recipient
    mac = _keyed(secret).copy()
    mac.update(payload.encode("ascii"))
    return _b64(mac.digest())


def make_token(secret: str | bytes, email: str, campaign: str) -> str:
    """The token for ``email`` (a recipient key) in ``campaign``."""
    key = secret.encode() if isinstance(secret, str) else secret
    payload = _b64(f"{email}\n{campaign}".encode())
    return f"{payload}.{_mac(key, payload)}"


def verify_token(secret: str | bytes, token: str) -> Unsubscribe:
    """The address and campaign a genuine token names; :class:`TokenError` otherwise."""
    key = secret.encode() if isinstance(secret, str) else secret
    token = token.strip()
    if token.count(".") != 1 or len(token) > 4096:
        raise TokenError("not an unsubscribe token (expected PAYLOAD.SIGNATURE)")
    payload, sig = token.split(".")
    if not payload.isascii() or not sig.isascii():
        raise TokenError("not an unsubscribe token (non-ASCII characters)")
    if not hmac.compare_digest(sig, _mac(key, payload)):
        raise TokenError("the token's signature does not match: forged, tampered or another secret")
    try:
        email, campaign = _unb64(payload).decode("utf-8").split("\n", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TokenError("the token's payload is malformed") from None
    return Unsubscribe(email, campaign)


def b64(data: bytes) -> str:
    """URL-safe base64 without padding (the encoding every stamp token uses)."""
    return _b64(data)


def unb64(text: str) -> bytes:
    """The bytes of :func:`b64` text; ``binascii.Error`` for text that is not."""
    return _unb64(text)


def derive_key(secret: str | bytes, purpose: str) -> bytes:
    """A key for one purpose, derived from the secret (HMAC-SHA256 of the purpose).

    Tokens of different kinds are signed with different keys, so one kind can never
    pass for another (a tracking token as an unsubscribe token, say).
    """
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"stamp {purpose}".encode(), "sha256").digest()


def sign(key: bytes, payload: str, size: int = 12) -> str:
    """The first ``size`` bytes of HMAC-SHA256(``key``, ``payload``), base64url."""
    mac = _keyed(key).copy()
    mac.update(payload.encode("utf-8"))
    return _b64(mac.digest()[:size])
