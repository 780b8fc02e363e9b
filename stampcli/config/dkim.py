"""The ``dkim:`` section of a campaign and its private key.

``dkim: {domain, selector, key_file | key_env}`` names the signing domain
(``d=``), the selector (``s=``, the key's DNS name is
``SELECTOR._domainkey.DOMAIN``) and where the private key comes from: a PEM
file (relative to the campaign file) or an environment variable holding the
PEM text (or, for Ed25519, the 32-byte seed in base64 as ``dknewkey`` writes
it). The key type decides the algorithm: RSA (at least 1024 bits, 2048
recommended) signs ``rsa-sha256``, Ed25519 ``ed25519-sha256`` (RFC 8463).

The key is parsed once here with ``cryptography`` (the loader calls
:func:`load_key` so a key that does not parse is refused when the campaign
is loaded, naming the key); its text is registered as a secret, so no log or
error message can show it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from stampcli import redact
from stampcli.errors import ConfigError

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_MIN_RSA_BITS = 1024  # what receivers accept at all; below it verifiers refuse the key


class DkimConfig(BaseModel):
    """``dkim:`` in campaign.yml: sign SMTP and outbox messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: str
    selector: str
    key_file: Path | None = None
    key_env: str | None = None

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        name = v.strip().rstrip(".").lower()
        labels = name.split(".")
        if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
            raise ValueError(f"{v!r} is not a domain name (like acme.example)")
        return name

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        # a selector may itself have dots (s1.eu): each part is a DNS label
        if not all(_LABEL.match(label) for label in v.split(".")):
            raise ValueError(f"{v!r} is not a DKIM selector (letters, digits, '-', '_')")
        return v

    @model_validator(mode="after")
    def _one_key(self) -> DkimConfig:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("give exactly one of dkim.key_file or dkim.key_env")
        return self

    @property
    def record_name(self) -> str:
        """The DNS name of the public key's TXT record."""
        return f"{self.selector}._domainkey.{self.domain}"


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A parsed private key and what its DNS record must say."""

    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def algorithm(self) -> bytes:
        """The ``a=`` tag this key signs with."""
        return (
            b"ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else b"rsa-sha256"
        )

    @property
    def key_type(self) -> str:
        """The ``k=`` tag of its DNS record."""
        return "ed25519" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa"

    @property
    def public_b64(self) -> str:
        """The ``p=`` value its DNS record must hold."""
        public = self.key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raw = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return base64.b64encode(raw).decode("ascii")

    def dns_record(self) -> str:
        """The TXT record to publish at ``selector._domainkey.domain``."""
        return f"v=DKIM1; k={self.key_type}; p={self.public_b64}"


def parse_key(data: bytes) -> DkimKey:
    """A key from PEM (RSA PKCS#1 or PKCS#8, Ed25519 PKCS#8) or an Ed25519 seed in base64.

    Raises ValueError saying what is wrong, never quoting the key.
    """
    text = data.strip()
    if b"-----BEGIN" not in text:
        try:
            seed = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            seed = b""
        if len(seed) != 32:
            raise ValueError(
                "not a PEM private key (-----BEGIN ... PRIVATE KEY-----) nor an Ed25519 "
                "seed (32 bytes in base64)"
            )
        return DkimKey(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except TypeError:  # cryptography's answer to a key that needs a password
        raise ValueError("the private key is encrypted; give it without a passphrase") from None
    except (ValueError, binascii.Error):
        raise ValueError("the PEM private key does not parse") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(
                f"the RSA key has {key.key_size} bits; receivers refuse fewer than "
                f"{_MIN_RSA_BITS} (use 2048)"
            )
        return DkimKey(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return DkimKey(key)
    raise ValueError(f"a {type(key).__name__} cannot sign DKIM; use an RSA or Ed25519 key")


def load_key(config: DkimConfig, environ: Mapping[str, str] | None = None) -> DkimKey:
    """The key ``config`` names; ConfigError naming ``dkim.key_file``/``dkim.key_env``."""
    env = os.environ if environ is None else environ
    if config.key_env is not None:
        where = f"dkim.key_env: {config.key_env}"
        value = env.get(config.key_env)
        if not value:
            raise ConfigError(f"{where}: the environment variable is not set")
        redact.register(value)
        data = value.replace("\\n", "\n").encode("utf-8", "surrogateescape")
    else:
        assert config.key_file is not None  # one of the two, by the model
        where = f"dkim.key_file: {config.key_file}"
        try:
            data = config.key_file.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such file") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it ({exc.strerror})") from None
        redact.register(data.decode("utf-8", "replace").strip())
    try:
        return parse_key(data)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
