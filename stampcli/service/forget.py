"""``stamp forget``: erase a person from the store, keeping only a hashed suppression.

For a GDPR erasure request: every list membership goes, ledger snapshots and
delivery events lose the address (they keep the counts a campaign's report is
made of), and a global ``forgotten`` suppression under the hash of the address
(:mod:`stampcli.compliance.erasure`) makes sure that a later import of the
same address is never mailed. Nothing outside the store is touched: rejects
files, outbox ``.eml`` files and the provider's own logs are the user's to
clear (``stamp forget`` says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from stampcli.audience.address import normalize_keys
from stampcli.compliance import erasure
from stampcli.records import Forgotten
from stampcli.service.store import StoreArg, opened

SOURCE = "stamp forget"


@dataclass(frozen=True, slots=True)
class ForgetResult:
    """What was erased for one address (by its hash: the address is not repeated)."""

    hashed: str
    erased: Forgotten

    def as_dict(self) -> dict[str, object]:
        return {"suppression": self.hashed, **asdict(self.erased)}


def forget(store: StoreArg, addresses: Sequence[str]) -> list[ForgetResult]:
    """Erase each of ``addresses`` (InputError naming every invalid one, before any)."""
    keys = list(dict.fromkeys(normalize_keys(addresses)))
    out: list[ForgetResult] = []
    with opened(store) as s:
        for key in keys:
            hashed = erasure.hashed(key)
            out.append(ForgetResult(hashed, s.contacts.forget(key, hashed, SOURCE)))
    return out
