"""``check_providers``: can every provider of a campaign be reached and used?

Each provider's adapter runs its own ``check()`` (an authenticated read-only
call for HTTP APIs, connect/EHLO/AUTH for SMTP) concurrently with the others;
nothing is sent. Beside each report: a warning when the campaign's
``tracking:`` switches are ones the provider cannot honour (they do not fail
the check). Nothing here prints; the CLI draws the result and picks the exit code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from stampcli import redact
from stampcli.config import Campaign, ProviderConfig, TrackingConfig
from stampcli.providers import create_adapter, tracking_warning
from stampcli.providers.base import CheckReport, CheckStep

GRACE = 5.0  # seconds beyond a provider's own connect + read timeouts


async def check_provider(config: ProviderConfig, tracking: TrackingConfig) -> CheckReport:
    """One provider's report; never raises (a broken adapter is a failed check)."""
    try:
        adapter = create_adapter(config, tracking)
    except Exception as exc:
        detail = redact.redact(f"cannot set up the adapter: {type(exc).__name__}: {exc}")
        return CheckReport(config.label, False, [CheckStep("setup", False, detail)], detail)
    limit = config.timeout.connect + config.timeout.read + GRACE
    try:
        async with adapter:
            return await asyncio.wait_for(adapter.check(), limit)
    except TimeoutError:
        detail = f"no answer within {limit:.0f} s"
    except Exception as exc:
        detail = redact.redact(f"check failed: {type(exc).__name__}: {exc}")
    return CheckReport(config.label, False, [CheckStep("check", False, detail)], detail)


async def check_all(providers: list[ProviderConfig], tracking: TrackingConfig) -> list[CheckReport]:
    """Every provider's report, checked concurrently, in the campaign's order."""
    return list(await asyncio.gather(*(check_provider(p, tracking) for p in providers)))


def tracking_warnings(campaign: Campaign) -> list[str | None]:
    """Per provider, in the campaign's order: what it says about ``tracking:`` it cannot honour."""
    return [tracking_warning(p, campaign.tracking.for_providers()) for p in campaign.providers]


@dataclass(frozen=True, slots=True)
class ProviderCheck:
    """One provider's check, with its redacted URL and tracking warning."""

    provider: ProviderConfig
    report: CheckReport
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "provider": r.provider,
            "url": self.provider.parsed.redacted,
            "ok": r.ok,
            "detail": r.detail,
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in r.steps],
            "warnings": [self.warning] if self.warning else [],
        }


@dataclass(frozen=True, slots=True)
class ProvidersCheck:
    """Every provider of a campaign, checked."""

    campaign: str
    checks: list[ProviderCheck] = field(default_factory=list)

    @property
    def ready(self) -> int:
        return sum(c.report.ok for c in self.checks)

    @property
    def ok(self) -> bool:
        """Every provider is ready."""
        return self.ready == len(self.checks)

    @property
    def none_ready(self) -> bool:
        """No provider is ready: the campaign could not send at all."""
        return self.ready == 0

    def as_dict(self) -> list[dict[str, Any]]:
        """The JSON of `stamp providers check --json`: one object per provider."""
        return [c.as_dict() for c in self.checks]


async def check_providers(campaign: Campaign) -> ProvidersCheck:
    """Check every provider of ``campaign`` at once; nothing is sent."""
    reports = await check_all(list(campaign.providers), campaign.tracking)
    warnings = tracking_warnings(campaign)
    checks = [
        ProviderCheck(p, r, w)
        for p, r, w in zip(campaign.providers, reports, warnings, strict=True)
    ]
    return ProvidersCheck(campaign.name, checks)
