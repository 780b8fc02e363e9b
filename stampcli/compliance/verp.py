"""Signed VERP return paths: ``bounces+TOKEN@bounce.example`` per message.

With ``bounces: {return_path: "bounces@bounce.acme.example"}`` each SMTP
message's envelope sender (MAIL FROM) becomes ``bounces+TOKEN@bounce.acme.example``.
A bounce comes back to that address, and its TOKEN names the campaign and the
ledger row the message was for, so the bounce is matched without trusting the
(often rewritten or missing) recipient it reports.

TOKEN is ``<campaign id>-<ledger id>-<mac>``: both ids in base 36 and the first
80 bits of HMAC-SHA256(secret, ``"verp\\n<campaign id>\\n<ledger id>"``) in base
32, all lower case. Some MTAs lower-case local parts, so every part is read
without case; no part uses a character RFC 5321 would need to quote. The
secret comes from the environment (``STAMP_VERP_SECRET`` unless
``bounces.secret_env`` names another variable), as the unsubscribe tokens'
does (:mod:`stampcli.compliance.tokens`): a forged bounce cannot name a row,
so it cannot suppress an arbitrary address.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stampcli.compliance.tokens import MIN_SECRET_LEN, TokenError
from stampcli.errors import ConfigError

if TYPE_CHECKING:
    from stampcli.config import Campaign

DEFAULT_SECRET_ENV = "STAMP_VERP_SECRET"
_MAC_BYTES = 10  # 80 bits: 16 base-32 characters
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = re.compile(r"([0-9a-z]{1,13})-([0-9a-z]{1,13})-([a-z2-7]{16})")
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1
# the return path's own local part: with "+", two ids of up to 6 base-36 characters (2^31
# rows), two dashes and the 16-character signature it stays within MAX_LOCAL
MAX_BASE = 24


@dataclass(frozen=True, slots=True)
class VerpRef:
    """What a genuine token names."""

    campaign_id: int
    ledger_id: int


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def _mac(secret: bytes, campaign_id: int, ledger_id: int) -> str:
    digest = hmac.new(secret, f"verp\n{campaign_id}\n{ledger_id}".encode(), "sha256").digest()
    return base64.b32encode(digest[:_MAC_BYTES]).decode("ascii").lower()


def make_token(secret: str | bytes, campaign_id: int, ledger_id: int) -> str:
    """The token for ledger row ``ledger_id`` of campaign ``campaign_id``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{_b36(campaign_id)}-{_b36(ledger_id)}-{_mac(key, campaign_id, ledger_id)}"


def verify_token(secret: str | bytes, token: str) -> VerpRef:
    """The row a genuine token names; :class:`TokenError` for a malformed or forged one."""
    key = secret.encode() if isinstance(secret, str) else secret
    match = _TOKEN.fullmatch(token.strip().lower())
    if match is None:
        raise TokenError("not a VERP token (expected CAMPAIGN-ROW-SIGNATURE)")
    campaign_id, ledger_id = int(match.group(1), 36), int(match.group(2), 36)
    if not hmac.compare_digest(match.group(3), _mac(key, campaign_id, ledger_id)):
        raise TokenError("the VERP token's signature does not match: forged or another secret")
    return VerpRef(campaign_id, ledger_id)


@dataclass(frozen=True, slots=True)
class Verp:
    """The return path of a campaign: makes and reads ``local+TOKEN@domain`` addresses."""

    local: str  # "bounces", as written
    domain: str  # lower case
    secret: bytes

    @classmethod
    def of(cls, return_path: str, secret: str | bytes) -> Verp:
        local, at, domain = return_path.strip().rpartition("@")
        if not at or not local or not domain or "+" in local:
            raise ConfigError(
                f"bounces.return_path {return_path!r} must be a plain address like "
                "bounces@bounce.example (no '+': stamp adds +TOKEN itself)"
            )
        if len(local) > MAX_BASE:
            raise ConfigError(
                f"bounces.return_path {return_path!r}: its local part may have at most "
                f"{MAX_BASE} characters (with +TOKEN it must stay within SMTP's 64)"
            )
        key = secret.encode() if isinstance(secret, str) else secret
        return cls(local, domain.lower(), key)

    def address(self, campaign_id: int, ledger_id: int) -> str:
        """The envelope sender for one message."""
        return f"{self.local}+{make_token(self.secret, campaign_id, ledger_id)}@{self.domain}"

    def ours(self, address: str) -> bool:
        """Whether ``address`` is at the return path's domain and starts with its local part
        (a token may still be forged: :meth:`read` checks it)."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        low = local.lower()
        base = self.local.lower()
        return domain.lower() == self.domain and (low == base or low.startswith(base + "+"))

    def read(self, address: str) -> VerpRef:
        """The row named by a VERP ``address``; :class:`TokenError` when it names none."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        prefix = self.local.lower() + "+"
        if domain.lower() != self.domain or not local.lower().startswith(prefix):
            raise TokenError(f"{address[:100]!r} is not a VERP address of {self.domain}")
        return verify_token(self.secret, local[len(prefix) :])


def verp_secret(secret_env: str, env: Mapping[str, str] | None = None) -> str:
    """The VERP secret from ``secret_env``; :class:`ConfigError` when unset or too short."""
    env = os.environ if env is None else env
    secret = env.get(secret_env, "")
    if len(secret) < MIN_SECRET_LEN:
        raise ConfigError(
            f"bounces.return_path needs a secret of at least {MIN_SECRET_LEN} characters in "
            f"the environment variable {secret_env} (it signs the VERP tokens)"
        )
    return secret


def campaign_verp(campaign: Campaign, env: Mapping[str, str] | None = None) -> Verp | None:
    """The campaign's VERP return path, None without ``bounces.return_path``;
    :class:`ConfigError` when its secret is missing."""
    bounces = campaign.bounces
    if bounces.return_path is None:
        return None
    try:
        secret = verp_secret(bounces.secret_env, env)
        return Verp.of(bounces.return_path, secret)
    except ConfigError as exc:
        raise ConfigError(f"{campaign.path}: {exc}") from None
