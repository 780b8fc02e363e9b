"""Delivery events from providers' webhooks: verify each request, parse it into
normalised ``DeliveryEvent`` objects.

``PROVIDERS`` maps each route label (``POST /webhooks/<label>``) to its parser
class; ``Parser.env`` names the environment variables it needs, so a server
can answer 404 for a route whose secrets are not configured
(``missing_env``) and build the others with ``Parser.from_env(os.environ)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from stampcli.inbound.base import WebhookParser
from stampcli.inbound.brevo import BrevoParser
from stampcli.inbound.errors import WebhookAuthError, WebhookPayloadError
from stampcli.inbound.mailgun import MailgunParser
from stampcli.inbound.mailjet import MailjetParser
from stampcli.inbound.mandrill import MandrillParser
from stampcli.inbound.model import (
    BounceKind,
    DeliveryEvent,
    EventType,
    ParseResult,
    Rejection,
    normalise_message_id,
)
from stampcli.inbound.postmark import PostmarkParser
from stampcli.inbound.resend import ResendParser
from stampcli.inbound.sendgrid import SendGridParser
from stampcli.inbound.ses import SESParser
from stampcli.inbound.sparkpost import SparkPostParser

PROVIDERS: dict[str, type[WebhookParser]] = {
    cls.provider: cls
    for cls in (
        SendGridParser,
        MailgunParser,
        SESParser,
        PostmarkParser,
        ResendParser,
        MailjetParser,
        SparkPostParser,
        MandrillParser,
        BrevoParser,
    )
}


def missing_env(label: str, env: Mapping[str, str]) -> list[str]:
    """The variables provider ``label`` needs that ``env`` lacks or has empty ([] = ready)."""
    return [name for name in PROVIDERS[label].env if not env.get(name, "").strip()]


def configured(env: Mapping[str, str]) -> list[str]:
    """The labels whose secrets are all present in ``env``."""
    return [label for label in PROVIDERS if not missing_env(label, env)]


__all__ = [
    "PROVIDERS",
    "BounceKind",
    "DeliveryEvent",
    "EventType",
    "ParseResult",
    "Rejection",
    "WebhookAuthError",
    "WebhookParser",
    "WebhookPayloadError",
    "configured",
    "missing_env",
    "normalise_message_id",
]
