"""campaign.yml -> a checked, frozen :class:`Campaign`.

One module per job: :mod:`.values` (rates, durations, sizes),
:mod:`.provider_url` (provider URLs, checked against
:mod:`stampcli.providers.registry`), :mod:`.model` (the pydantic models) and
:mod:`.loader` (YAML, ``${NAME}``, .env, located errors, path resolution and
file confinement). The names are re-exported here, so
``from stampcli.config import Campaign, load_campaign`` is the way in
(:func:`campaign_from_data` builds a campaign from a mapping, for the send API).
"""

from __future__ import annotations

from stampcli.config.loader import campaign_from_data, load_campaign, load_dotenv
from stampcli.config.model import (
    AudienceConfig,
    AutoStopConfig,
    BouncesConfig,
    Campaign,
    LimitsConfig,
    ProviderConfig,
    ThrottleConfig,
    TimeoutConfig,
    TrackingConfig,
    UnsubscribeConfig,
)
from stampcli.config.provider_url import ProviderURL, parse_provider_url
from stampcli.config.values import Rate, parse_duration, parse_rate, parse_size
from stampcli.providers.registry import PROVIDER_OPTIONS, PROVIDER_SCHEMES

__all__ = [
    "PROVIDER_OPTIONS",
    "PROVIDER_SCHEMES",
    "AudienceConfig",
    "AutoStopConfig",
    "BouncesConfig",
    "Campaign",
    "LimitsConfig",
    "ProviderConfig",
    "ProviderURL",
    "Rate",
    "ThrottleConfig",
    "TimeoutConfig",
    "TrackingConfig",
    "UnsubscribeConfig",
    "campaign_from_data",
    "load_campaign",
    "load_dotenv",
    "parse_duration",
    "parse_provider_url",
    "parse_rate",
    "parse_size",
]
