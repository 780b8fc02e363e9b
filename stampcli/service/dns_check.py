"""``stamp check --dns``: the DNS pre-flight of a campaign (stampcli.dnscheck.preflight)."""

from __future__ import annotations

import dns.resolver

from stampcli.config import Campaign
from stampcli.dnscheck.lookup import Lookup
from stampcli.dnscheck.preflight import DnsReport, Finding, preflight

__all__ = ["DnsReport", "Finding", "dns_preflight"]


def dns_preflight(
    campaign: Campaign,
    *,
    server: str | None = None,
    timeout: float = 3.0,
    budget: float = 30.0,
    resolver: dns.resolver.Resolver | None = None,
) -> DnsReport:
    """What the DNS says about ``campaign``'s sender: SPF, DKIM, DMARC, MX, alignment.

    ``server`` (``HOST[:PORT]``) asks that DNS server instead of the system's
    resolver; each question waits at most ``timeout`` seconds and all of them
    together ``budget``. Never raises for a DNS failure: unanswered questions
    are findings.
    """
    lookup = Lookup(resolver, server=server, timeout=timeout, budget=budget)
    return preflight(campaign, lookup)
