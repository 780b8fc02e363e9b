"""The contact: one subscriber row after normalisation, as every later stage sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Contact:
    key: str  # identity for dedupe, ledger and suppression: the normalised address, lower case
    email: str  # the address to send to: trimmed, domain lower-cased and IDNA-encoded
    fields: dict[str, Any] = field(default_factory=dict)  # every column, header names trimmed
    row: int = 0  # row number in the source file (the header is row 1), 0 if none

    @property
    def domain(self) -> str:
        return self.key.rsplit("@", 1)[-1]
