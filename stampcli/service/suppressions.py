"""The suppression list as library calls: add, remove, import a file, list, export, pull.

Addresses are normalised exactly as subscriber lists are, so that what is
suppressed here matches what the audience holds. Functions that change the
list take an open store or a ``StoreChoice``, opened only once the input is
known good (``service.store.opened``). Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from stampcli.audience.address import normalize_keys
from stampcli.config import Campaign
from stampcli.errors import InputError, ProviderError
from stampcli.events.model import Reason
from stampcli.providers import suppression_files as files
from stampcli.providers.pull import PullReport, pull_all
from stampcli.service.store import OnOpen, StoreArg, opened
from stampcli.store import suppressions as sup
from stampcli.store.location import StoreChoice

Suppression = sup.Suppression


@dataclass(frozen=True, slots=True)
class Added:
    addresses: int
    new: int
    reason: str
    scope: str  # "" for every list

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_suppressions(
    store: StoreArg,
    addresses: Sequence[str],
    *,
    reason: str | None = None,
    list_name: str | None = None,
    detail: str | None = None,
    on_open: OnOpen | None = None,
) -> Added:
    """Suppress ``addresses`` (reason ``manual`` by default; ``list_name``: only for that list)."""
    why = sup.check_reason(reason or Reason.MANUAL)
    keys = normalize_keys(addresses)
    items = [Suppression(k, why, "command", list_name or "", detail) for k in keys]
    with opened(store, on_open=on_open) as s:
        new = s.suppressions.add_many(items)
    return Added(len(keys), new, why, list_name or "")


@dataclass(frozen=True, slots=True)
class Removed:
    addresses: int
    removed: int

    @property
    def missing(self) -> int:
        """Addresses that were not suppressed (there)."""
        return self.addresses - self.removed

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "missing": self.missing}


def remove_suppressions(
    store: StoreArg,
    addresses: Sequence[str],
    *,
    list_name: str | None = None,
    on_open: OnOpen | None = None,
) -> Removed:
    """Lift the suppressions of ``addresses`` (every scope, or only ``list_name``'s)."""
    keys = normalize_keys(addresses)
    with opened(store, on_open=on_open) as s:
        removed = s.suppressions.remove(keys, list_name)
    return Removed(len(keys), removed)


@dataclass(frozen=True, slots=True)
class FileImport:
    """What ``import_suppressions`` read and added."""

    file: Path
    format: str
    rows: int
    found: int  # suppressions the file held
    new: int
    skipped_count: int
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row, why), the first ones

    @property
    def already(self) -> int:
        return self.found - self.new

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["file"] = str(self.file)
        data["already"] = self.already
        data["skipped"] = [{"row": r, "reason": why} for r, why in self.skipped]
        return data


def import_suppressions(
    store: StoreArg,
    file: Path,
    *,
    reason: str | None = None,
    list_name: str | None = None,
    on_open: OnOpen | None = None,
) -> FileImport:
    """Import a provider's suppression export, stamp's own, or a plain list of addresses."""
    result = files.read_export(file, reason=reason, scope=list_name or "")
    with opened(store, on_open=on_open) as s:
        new = s.suppressions.add_many(result.items)
    return FileImport(
        file,
        result.format,
        result.rows,
        len(result.items),
        new,
        result.skipped_count,
        list(result.skipped),
    )


def list_suppressions(
    store: StoreArg, *, reason: str | None = None, list_name: str | None = None
) -> list[Suppression]:
    """The suppressions (of ``reason``, in ``list_name``'s scope); none if no store yet."""
    if reason is not None:
        sup.check_reason(reason)
    if isinstance(store, StoreChoice) and not store.exists:
        return []  # nothing is created by reading
    with opened(store, readonly=True) as s:
        return list(s.suppressions.iter_suppressions(reason, list_name))


def suppression_dict(s: Suppression) -> dict[str, Any]:
    """One suppression as ``stamp suppress list --json`` shows it."""
    return {
        "email": s.key,
        "reason": s.reason,
        "source": s.source,
        "scope": s.scope or None,
        "detail": s.detail,
        "created_at": s.created_at,
    }


def export_suppressions(
    store: StoreArg,
    *,
    output: Path | None = None,
    stream: IO[str] | None = None,
    xlsx: bool | None = None,
    reason: str | None = None,
) -> int:
    """Write the suppression list to ``output`` (CSV or, by suffix or ``xlsx``, XLSX) or
    as CSV to ``stream``; the number written. ``stamp suppress import`` reads it back."""
    if xlsx is None:
        xlsx = output is not None and output.suffix.lower() == ".xlsx"
    if xlsx and output is None:
        raise InputError("--format xlsx needs --output FILE.xlsx")
    if output is None and stream is None:
        raise InputError("say where to write the suppression list: a file or a stream")
    items = list_suppressions(store, reason=reason)
    if xlsx:
        assert output is not None
        return files.write_xlsx(items, output)
    if output is None:
        assert stream is not None
        return files.write_csv(items, stream)
    try:
        with output.open("w", encoding="utf-8", newline="") as handle:
            return files.write_csv(items, handle)
    except OSError as exc:
        raise InputError(f"{output}: cannot write it ({exc.strerror})") from None


@dataclass(slots=True)
class PullResult:
    """Per provider: what was fetched and merged; ``error()`` when some could not be."""

    report: PullReport

    @property
    def new(self) -> int:
        return self.report.new

    def error(self) -> ProviderError | None:
        """The error to raise after showing the report, when a provider failed."""
        if not self.report.errors:
            return None
        names = ", ".join(p.provider for p in self.report.errors)
        return ProviderError(
            f"could not fetch every suppression list ({names}); what was fetched is merged"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "providers": [asdict(p) for p in self.report.providers],
            "new": self.new,
            "fetched": self.report.fetched,
        }


def pull_suppressions(
    campaign: Campaign,
    store: StoreArg,
    providers: Sequence[str] | None = None,
    *,
    on_open: OnOpen | None = None,
) -> PullResult:
    """Fetch the campaign's providers' bounces, complaints, unsubscribes and blocks, and merge
    them, so that failing over never mails someone another provider suppressed."""
    with opened(store, on_open=on_open) as s:
        return PullResult(pull_all(campaign, s, providers or None))
