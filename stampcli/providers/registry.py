"""THE provider table: one entry per URL scheme, and nothing else to register.

Each entry says what the scheme is, which module and class implement it
(imported only when a campaign uses it), the ``?options`` its URL takes with
the values each accepts, whether the URL is just the key, which options are
secrets, and what a refusal adds for the usual mix-ups. ``stampcli.config``
checks provider URLs against it; :mod:`stampcli.providers` creates adapters,
suppression pulls and export readers through it. The provider's module holds
everything else (base URL, auth, the send adapter, the suppression pull, the
export columns), so adding a provider is that module plus one entry here.

This module imports nothing from stampcli: the config loader reads it before
any provider code exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Options = Mapping[str, tuple[str, ...] | None]
"""option name -> the values it takes (None: any text)."""

_TLS_MODES = ("starttls", "require", "none")
# smtp's verify= reads only the false words; the true ones are listed too, so
# that a typo such as ``verify=flase`` is refused instead of read as true
_BOOL_WORDS = ("true", "false", "1", "0", "yes", "no", "on", "off")
_REGION: Options = {"region": ("eu", "us")}  # us: the default base URL
_SMTP_COMMON: Options = {"verify": _BOOL_WORDS, "cafile": None, "ehlo": None}


@dataclass(frozen=True, slots=True)
class Scheme:
    """One provider URL scheme."""

    description: str
    module: str  # the provider's module: adapter, suppression pull, export columns
    adapter: str  # the adapter class in ``module``
    # The ``?options`` its adapter and its suppression pull read. Anything else is
    # refused when the URL is parsed: a misspelt option (``?steam=``, ``?regoin=``)
    # would otherwise be silently ignored and the campaign go out on the wrong
    # stream or region. Option names are matched without regard to case.
    options: Options = field(default_factory=dict)
    key_only: bool = False  # the URL is just the key: scheme://KEY (or PUBLIC:PRIVATE)
    secret_options: frozenset[str] = frozenset()  # registered with stampcli.redact
    hints: Mapping[str, str] = field(default_factory=dict)  # option -> what a refusal adds
    # The webhook parser class in ``module`` (``POST /webhooks/<scheme>``); "" = no webhook.
    webhook: str = ""

    @property
    def target(self) -> str:
        """``module:Class`` of the adapter."""
        return f"{self.module}:{self.adapter}"

    @property
    def webhook_target(self) -> str | None:
        """``module:Class`` of the webhook parser, or None when the provider has none."""
        return f"{self.module}:{self.webhook}" if self.webhook else None


def _here(name: str) -> str:
    return f"stampcli.providers.{name}"


SCHEMES: Mapping[str, Scheme] = {
    "smtp": Scheme(
        "SMTP relay with STARTTLS (port 587 by default)",
        _here("smtp"),
        "SMTPAdapter",
        {"tls": _TLS_MODES, **_SMTP_COMMON},
        hints={"tls": "for implicit TLS on port 465 use smtps://"},
    ),
    "smtps": Scheme(
        "SMTP relay with implicit TLS (port 465 by default)",
        _here("smtp"),
        "SMTPAdapter",
        _SMTP_COMMON,  # TLS from the first byte: no tls= to choose
        hints={"tls": "smtps:// is TLS from the first byte; tls= is for smtp://"},
    ),
    "outbox": Scheme(
        "writes one .eml file per recipient into a folder", _here("outbox"), "OutboxAdapter"
    ),
    "sendgrid": Scheme(
        "SendGrid v3 Mail Send",
        _here("sendgrid"),
        "SendGridAdapter",
        _REGION,
        key_only=True,
        webhook="SendGridParser",
    ),
    "mailgun": Scheme(
        "Mailgun messages API", _here("mailgun"), "MailgunAdapter", _REGION, webhook="MailgunParser"
    ),
    "ses": Scheme(
        "Amazon SES v2",
        _here("ses"),
        "SESAdapter",
        {"configuration_set": None, "session_token": None},  # the region is the host
        secret_options=frozenset({"session_token"}),
        webhook="SESParser",
    ),
    "postmark": Scheme(
        "Postmark email API",
        _here("postmark"),
        "PostmarkAdapter",
        {"stream": None},
        key_only=True,
        webhook="PostmarkParser",
    ),
    "resend": Scheme(
        "Resend emails API", _here("resend"), "ResendAdapter", key_only=True, webhook="ResendParser"
    ),
    "mailjet": Scheme(
        "Mailjet Send API v3.1",
        _here("mailjet"),
        "MailjetAdapter",
        key_only=True,
        webhook="MailjetParser",
    ),
    "sparkpost": Scheme(
        "SparkPost transmissions API",
        _here("sparkpost"),
        "SparkPostAdapter",
        _REGION,
        key_only=True,
        webhook="SparkPostParser",
    ),
    "mandrill": Scheme(
        "Mailchimp Transactional (Mandrill)",
        _here("mandrill"),
        "MandrillAdapter",
        key_only=True,
        webhook="MandrillParser",
    ),
    "brevo": Scheme(
        "Brevo transactional email API",
        _here("brevo"),
        "BrevoAdapter",
        key_only=True,
        webhook="BrevoParser",
    ),
}

# The views the config loader reads (stampcli.config re-exports them under its old names).
PROVIDER_SCHEMES: dict[str, str] = {name: s.description for name, s in SCHEMES.items()}
PROVIDER_OPTIONS: Mapping[str, Options] = {name: s.options for name, s in SCHEMES.items()}
KEY_ONLY_SCHEMES = frozenset(name for name, s in SCHEMES.items() if s.key_only)
SECRET_OPTIONS = frozenset(option for s in SCHEMES.values() for option in s.secret_options)
OPTION_HINTS: Mapping[tuple[str, str], str] = {
    (name, option): hint for name, s in SCHEMES.items() for option, hint in s.hints.items()
}
