"""Provider adapters, one module each, found by the scheme of the provider URL."""

from __future__ import annotations

import importlib

from stampcli.adapters.base import Adapter, CheckReport, CheckStep, Outcome, Result
from stampcli.config import ProviderConfig, TrackingConfig

# scheme -> "module:Class"; imported only when a campaign uses it
REGISTRY: dict[str, str] = {
    "smtp": "stampcli.adapters.smtp:SMTPAdapter",
    "smtps": "stampcli.adapters.smtp:SMTPAdapter",
    "outbox": "stampcli.adapters.outbox:OutboxAdapter",
    "sendgrid": "stampcli.adapters.sendgrid:SendGridAdapter",
    "mailgun": "stampcli.adapters.mailgun:MailgunAdapter",
    "ses": "stampcli.adapters.ses:SESAdapter",
    "postmark": "stampcli.adapters.postmark:PostmarkAdapter",
    "resend": "stampcli.adapters.resend:ResendAdapter",
    "mailjet": "stampcli.adapters.mailjet:MailjetAdapter",
    "sparkpost": "stampcli.adapters.sparkpost:SparkPostAdapter",
    "mandrill": "stampcli.adapters.mandrill:MandrillAdapter",
    "brevo": "stampcli.adapters.brevo:BrevoAdapter",
}


def adapter_class(scheme: str) -> type[Adapter]:
    module, _, cls = REGISTRY[scheme].partition(":")
    found: type[Adapter] = getattr(importlib.import_module(module), cls)
    return found


def create_adapter(config: ProviderConfig, tracking: TrackingConfig | None = None) -> Adapter:
    """The adapter for one ``providers:`` entry."""
    return adapter_class(config.scheme)(config, tracking=tracking)


__all__ = [
    "REGISTRY",
    "Adapter",
    "CheckReport",
    "CheckStep",
    "Outcome",
    "Result",
    "adapter_class",
    "create_adapter",
]
