"""Providers, one module each, found through the scheme of the provider URL.

A provider's module (``sendgrid.py``, ``ses.py``, ...) holds everything about
it: base URL and auth (class-level on its adapter), the send adapter, its
tracking note, the suppression pull (``fetch_suppressions``) and the columns
of its suppression exports (``EXPORT_FORMATS``). :mod:`.registry` names the
modules; this package reaches them lazily through it, so loading a campaign
imports no provider code, and a send imports only the providers it uses.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from stampcli.providers.registry import SCHEMES, Scheme

if TYPE_CHECKING:
    from stampcli.config import ProviderConfig, TrackingConfig
    from stampcli.providers.base import Adapter
    from stampcli.render.dkim import DkimSigner

__all__ = [
    "SCHEMES",
    "Scheme",
    "adapter_class",
    "create_adapter",
    "provider_module",
    "tracking_warning",
]


def provider_module(scheme: str) -> ModuleType:
    """The module that implements ``scheme`` (imported on first use)."""
    return importlib.import_module(SCHEMES[scheme].module)


def adapter_class(scheme: str) -> type[Adapter]:
    found: type[Adapter] = getattr(provider_module(scheme), SCHEMES[scheme].adapter)
    return found


def create_adapter(
    config: ProviderConfig,
    tracking: TrackingConfig | None = None,
    dkim: DkimSigner | None = None,
) -> Adapter:
    """The adapter for one ``providers:`` entry (``dkim`` used by those that sign)."""
    return adapter_class(config.scheme)(config, tracking=tracking, dkim=dkim)


def tracking_warning(config: ProviderConfig, tracking: TrackingConfig) -> str | None:
    """One sentence when ``tracking`` sets a switch this provider cannot honour, else None.

    Most APIs take open and click tracking per message; the others
    (``Adapter.tracking_switch`` False) say what decides instead in their
    ``tracking_note``, so a switch they cannot honour is said before sending
    rather than silently dropped.
    """
    cls = adapter_class(config.scheme)
    # a provider that tracks nothing honours "off": only asking it to track is a switch
    wanted = (True,) if cls.tracks_nothing else (True, False)
    switches = [
        f"tracking.{name}"
        for name, value in (("opens", tracking.opens), ("clicks", tracking.clicks))
        if value in wanted
    ]
    if not switches or cls.tracking_switch:
        return None
    scheme = config.scheme
    who = config.label if config.label == scheme else f"{config.label} ({scheme}://)"
    verb = "is" if len(switches) == 1 else "are"
    return f"{' and '.join(switches)} {verb} set but {who} {cls.tracking_note(config)}"
