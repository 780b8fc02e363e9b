"""What is left of a person after ``stamp forget``: the hash of their address.

Erasure (GDPR article 17) removes the address from every list, ledger snapshot
and event, but the person must still never be mailed again, so a suppression
is kept under ``sha256:<hex of the normalised address>``. Suppression look-ups
hash the keys they are asked about whenever the store holds such an entry.
The hash is unsalted on purpose: it must match the same address whatever
machine, store or secret later imports it (a salt kept in the environment
that changed would quietly let the person be mailed again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

PREFIX = "sha256:"
# the first key after every "sha256:..." one, for a prefix look-up on the primary key
PREFIX_END = "sha256;"


def hashed(key: str) -> str:
    """The suppression key that stands for a forgotten ``key`` (a normalised address)."""
    return PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_hashed(key: str) -> bool:
    return key.startswith(PREFIX)


def hashes(keys: Iterable[str]) -> dict[str, str]:
    """``{hashed key: key}`` for ``keys`` that are addresses (not hashes already)."""
    return {hashed(k): k for k in keys if not k.startswith(PREFIX)}
