"""Signed tokens of stamp's own open and click tracking (``tracking: {own: true}``).

An open pixel is ``BASE/o/MSG.gif`` and a tracked link ``BASE/c/LINK.MSG``:

- ``MSG`` = ``PAYLOAD.SIG``, one per message: ``PAYLOAD`` is base64url of
  ``campaign \\n recipient key \\n issued \\n expires`` (times as hex epoch seconds),
  ``SIG`` the first 12 bytes of HMAC-SHA256 over it with the *message key*;
- ``LINK`` = ``URL.LSIG``, one per link of a campaign: ``URL`` is base64url of the
  link's address, ``LSIG`` the first 12 bytes of HMAC-SHA256 over
  ``campaign \\n url`` with the *link key*.

Both keys are derived from the unsubscribe secret (``STAMP_UNSUBSCRIBE_SECRET``,
:func:`stampcli.compliance.tokens.derive_key`), so ``stamp serve`` needs no second
secret and neither token can pass for an unsubscribe token or for the other.

What this guarantees: a redirect goes only to an address stamp itself put into a
message of the campaign the token names (``LSIG`` binds it to the campaign), and
a hit is only recorded for a recipient stamp mailed (``SIG``). Anyone holding one
message can combine its ``MSG`` with another ``LINK`` of the same campaign; that
reaches an address of that campaign's messages and nothing else: never an open
redirect. The link part is the same for every recipient, so it is computed once
per link and the per-message cost is one HMAC, however many links a message has.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from stampcli.compliance.tokens import TokenError, b64, derive_key, sign, unb64

MAX_TOKEN = 8192  # characters; longer is not a token of ours
_MSG_PURPOSE = "tracking message"
_LINK_PURPOSE = "tracking link"


@dataclass(frozen=True, slots=True)
class Hit:
    """Whom a genuine token names: campaign, recipient key, when it was made and expires."""

    campaign: str
    key: str
    issued: int
    expires: int
    url: str | None = None  # a click's original address


class TrackingSigner:
    """Makes one campaign's tokens (the renderer holds one)."""

    def __init__(self, secret: str | bytes, campaign: str, ttl: float) -> None:
        self.campaign = campaign
        self.ttl = int(ttl)
        self._msg_key = derive_key(secret, _MSG_PURPOSE)
        self._link_key = derive_key(secret, _LINK_PURPOSE)

    def message(self, key: str, issued: float) -> str:
        """``MSG`` for recipient ``key``, issued at ``issued`` (epoch seconds)."""
        at = int(issued)
        payload = b64(f"{self.campaign}\n{key}\n{at:x}\n{at + self.ttl:x}".encode())
        return f"{payload}.{sign(self._msg_key, payload)}"

    def link(self, url: str) -> str:
        """``LINK`` for ``url`` in this campaign (the same for every recipient)."""
        bound = self.campaign + "\n" + url
        return f"{b64(url.encode())}.{sign(self._link_key, bound)}"


def _check(key: bytes, payload: str, sig: str) -> None:
    import hmac

    if not hmac.compare_digest(sig.encode("ascii"), sign(key, payload).encode("ascii")):
        raise TokenError("the token's signature does not match")


def _ascii_parts(token: str, count: int) -> list[str]:
    if len(token) > MAX_TOKEN or not token.isascii():
        raise TokenError("not a tracking token")
    parts = token.split(".")
    if len(parts) != count or not all(parts):
        raise TokenError("not a tracking token (wrong number of parts)")
    return parts


def _message(secret: str | bytes, payload: str, sig: str) -> Hit:
    _check(derive_key(secret, _MSG_PURPOSE), payload, sig)
    try:
        campaign, key, issued, expires = unb64(payload).decode("utf-8").split("\n")
        return Hit(campaign, key, int(issued, 16), int(expires, 16))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TokenError("the token's payload is malformed") from None


def read_open(secret: str | bytes, token: str) -> Hit:
    """Whom a genuine open token (``MSG``) names; :class:`TokenError` otherwise."""
    payload, sig = _ascii_parts(token, 2)
    return _message(secret, payload, sig)


def read_click(secret: str | bytes, token: str) -> Hit:
    """Whom a genuine click token (``LINK.MSG``) names, with the link's address."""
    url_part, link_sig, payload, sig = _ascii_parts(token, 4)
    hit = _message(secret, payload, sig)
    try:
        url = unb64(url_part).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise TokenError("the token's link is malformed") from None
    _check(derive_key(secret, _LINK_PURPOSE), f"{hit.campaign}\n{url}", link_sig)
    if not url.lower().startswith(("https://", "http://")):
        raise TokenError("the token's link is not a web address")  # never signed: belt and braces
    return Hit(hit.campaign, hit.key, hit.issued, hit.expires, url)
