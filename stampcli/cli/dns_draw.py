"""Drawing the DNS pre-flight of ``stamp check --dns`` (stampcli.dnscheck.preflight)."""

from __future__ import annotations

from rich.markup import escape

from stampcli.cli.common import console
from stampcli.service.dns_check import DnsReport

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", "ok": "green"}


def print_dns_report(report: DnsReport) -> None:
    errors, warnings = len(report.errors), len(report.warnings)
    console.print(
        f"DNS of {escape(report.domain)}: {errors} error{'s' if errors != 1 else ''}, "
        f"{warnings} warning{'s' if warnings != 1 else ''}",
        soft_wrap=True,
    )
    for f in report.findings:
        style = _STYLE[f.severity]
        line = f"[{style}]{f.severity:<7}[/] [bold]{escape(f.check)}[/]: {escape(f.message)}"
        if f.fix and f.severity in ("error", "warning"):
            line += f"\n          [dim]fix: {escape(f.fix)}[/]"
        console.print(line, soft_wrap=True)
