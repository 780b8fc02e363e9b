"""Writing a report's HTML page or workbook to a file, whole or not at all.

The file is written beside its target under a temporary name and moved into
place, so a failed write never leaves half a report where the last good one
was. A path that cannot be written is an :class:`~stampcli.errors.InputError`
naming the path and the reason (exit 2), raised before anything is drawn
when the folder is missing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from stampcli.errors import InputError
from stampcli.reports import html, sections, xlsx
from stampcli.reports.formats import when
from stampcli.service.report import CampaignReport, CampaignsReport


def check_writable(path: Path) -> None:
    """Refuse early a path whose folder is missing or not writable, or that is a folder."""
    folder = path.expanduser().resolve().parent
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the report")
    if not folder.is_dir():
        raise InputError(f"{path}: cannot write the report (no folder {folder})")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{path}: cannot write the report (the folder {folder} is not writable)")


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path = path.expanduser()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InputError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def _meta(r: CampaignReport) -> list[str]:
    lines = [f"store: {r.store}", f"sent {when(r.first_send)} to {when(r.last_send)} UTC"]
    if r.paused_reason:
        lines.append(f"paused: {r.paused_reason}")
    return lines


def campaign_html(r: CampaignReport) -> str:
    flags = [(f.level, line) for f, line in zip(r.flags, sections.flags_text(r.flags), strict=True)]
    notes = [n for n in r.notes if n.startswith("no delivery events")]
    return html.page(
        f"Report: {r.campaign}",
        _meta(r),
        sections.campaign_sections(r),
        flags=flags,
        notes=notes,
        generated_at=r.generated_at,
    )


def campaigns_html(r: CampaignsReport) -> str:
    since = f", first sent since {when(r.since)} UTC" if r.since is not None else ""
    return html.page(
        "Report: all campaigns",
        [f"store: {r.store}{since}"],
        sections.campaigns_sections(r),
        generated_at=r.generated_at,
    )


def write_html(path: Path, r: CampaignReport | CampaignsReport) -> None:
    text = campaign_html(r) if isinstance(r, CampaignReport) else campaigns_html(r)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    _atomic(path, write)


def write_xlsx(path: Path, r: CampaignReport | CampaignsReport) -> None:
    if isinstance(r, CampaignReport):
        parts = sections.campaign_sections(r)
        about = [("campaign", r.campaign), *(("", line) for line in _meta(r))]
        about += [("flag", line) for line in sections.flags_text(r.flags)]
        about += [("note", n) for n in r.notes]
    else:
        parts = sections.campaigns_sections(r)
        about = [("report", "all campaigns"), ("store", r.store)]
    about.append(("made", f"{when(r.generated_at)} UTC"))
    _atomic(path, lambda tmp: xlsx.write(tmp, parts, about))
