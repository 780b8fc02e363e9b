"""Rules a campaign must meet before it may send: the unsubscribe requirement.

Gmail and Yahoo require bulk mail to carry a one-click unsubscribe (RFC 8058)
and the law in most places requires an easy opt-out. A campaign without an
unsubscribe URL may only send when it says it is transactional.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from stampcli.compliance.tokens import MIN_SECRET_LEN
from stampcli.config import Campaign
from stampcli.errors import ConfigError


def require_unsubscribe(campaign: Campaign, env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` unless ``campaign`` may send bulk mail as configured."""
    if campaign.transactional:
        return
    env = os.environ if env is None else env
    where = f"{campaign.path}: unsubscribe.url"
    unsub = campaign.unsubscribe
    if unsub is None or not unsub.url:
        raise ConfigError(
            f"{where}: a bulk campaign needs a one-click unsubscribe URL (RFC 8058), for "
            "example 'https://example.com/unsubscribe?t={{ unsubscribe_token }}'; "
            "set 'transactional: true' only for mail people cannot opt out of"
        )
    if "{{" not in unsub.url:
        # One fixed URL for everyone cannot tell who asked to leave.
        raise ConfigError(
            f"{where}: the URL is the same for every recipient; put "
            "{{ unsubscribe_token }} (or another per-recipient value) in it"
        )
    if "unsubscribe_token" in unsub.url:
        secret = env.get(unsub.secret_env, "")
        if len(secret) < MIN_SECRET_LEN:
            state = "is not set" if not secret else f"is shorter than {MIN_SECRET_LEN} characters"
            raise ConfigError(
                f"{campaign.path}: unsubscribe.secret_env: the environment variable "
                f"{unsub.secret_env} {state}; unsubscribe tokens are signed with it"
            )
