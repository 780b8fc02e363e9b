"""What happens to the campaign's ``tracking:`` switches at each provider.

Most APIs take open and click tracking per message (SendGrid, Mailgun,
Postmark, Mailjet, SparkPost, Mandrill): their adapters pass the switches on.
The others cannot (``Adapter.tracking_switch`` is False): Resend tracks per
sending domain and Brevo per account, SES through the event destinations of
a configuration set, and SMTP relays and the outbox send the message exactly
as rendered. A switch such a provider cannot honour is said before sending,
naming what decides instead, rather than silently dropped.
"""

from __future__ import annotations

from stampcli.adapters import adapter_class
from stampcli.config import ProviderConfig, TrackingConfig

_NO_SWITCH = "has no per-message tracking switch"
_AS_RENDERED = (
    f"{_NO_SWITCH}; the message goes out as rendered "
    "(a provider's SMTP relay applies its account settings)"
)
# scheme -> what decides tracking there instead (SES: see _ses)
_INSTEAD: dict[str, str] = {
    "resend": f"{_NO_SWITCH}; the domain's settings apply",
    "brevo": f"{_NO_SWITCH}; the account's settings apply",
    "smtp": _AS_RENDERED,
    "smtps": _AS_RENDERED,
    "outbox": "only writes files; nothing is tracked",
}
_DEFAULT = f"{_NO_SWITCH}; the provider's own settings apply"


def _ses(config: ProviderConfig) -> str:
    name = config.parsed.options.get("configuration_set")
    if name:
        return f"{_NO_SWITCH}; the configuration set {name!r} decides"
    return (
        f"{_NO_SWITCH} and no ?configuration_set=NAME is given, so only the sending "
        "identity's default configuration set, if it has one, can track"
    )


def tracking_warning(config: ProviderConfig, tracking: TrackingConfig) -> str | None:
    """One sentence when ``tracking`` sets a switch this provider cannot honour, else None."""
    # the outbox never tracks: only asking it to is a switch it cannot honour
    wanted = (True,) if config.scheme == "outbox" else (True, False)
    switches = [
        f"tracking.{name}"
        for name, value in (("opens", tracking.opens), ("clicks", tracking.clicks))
        if value in wanted
    ]
    if not switches or adapter_class(config.scheme).tracking_switch:
        return None
    scheme = config.scheme
    who = config.label if config.label == scheme else f"{config.label} ({scheme}://)"
    why = _ses(config) if scheme == "ses" else _INSTEAD.get(scheme, _DEFAULT)
    verb = "is" if len(switches) == 1 else "are"
    return f"{' and '.join(switches)} {verb} set but {who} {why}"
