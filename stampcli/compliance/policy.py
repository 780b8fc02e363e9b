"""Rules a campaign must meet before it may send: the unsubscribe requirement.

Gmail and Yahoo require bulk mail to carry a one-click unsubscribe (RFC 8058)
and the law in most places requires an easy opt-out. A campaign without an
unsubscribe URL may only send when it says it is transactional.

:func:`unsubscribe_secret` is the one check of the secret the unsubscribe
tokens are signed with, used by a send and by the renderer (preview, check,
test sends) alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from stampcli.compliance.tokens import DEFAULT_SECRET_ENV, MIN_SECRET_LEN
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
        unsubscribe_secret(campaign, env, used_by="unsubscribe.url")


def unsubscribe_secret(
    campaign: Campaign, env: Mapping[str, str] | None = None, *, used_by: str | None
) -> str | None:
    """The secret ``campaign``'s unsubscribe tokens are signed with; None if it is unset or
    too short and nothing uses a token.

    ``used_by`` names what uses ``{{ unsubscribe_token }}`` (``unsubscribe.url``, the
    template, ...), None for nothing: then a missing secret is no error.
    """
    env = os.environ if env is None else env
    unsub = campaign.unsubscribe
    secret_env = unsub.secret_env if unsub else DEFAULT_SECRET_ENV
    secret = env.get(secret_env, "")
    if len(secret) >= MIN_SECRET_LEN:
        return secret
    if used_by is None:
        return None
    state = "is not set" if not secret else f"is shorter than {MIN_SECRET_LEN} characters"
    raise ConfigError(
        f"{campaign.path}: {used_by} uses {{{{ unsubscribe_token }}}}, which is signed with "
        f"the secret in the environment variable {secret_env} (unsubscribe.secret_env), "
        f"but {secret_env} {state}. Set it to a long random value that your unsubscribe "
        f"page also knows, e.g. export {secret_env}=\"$(python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')\" (or put it in the .env file next to the "
        "campaign file); keep it the same for the whole campaign."
    )
