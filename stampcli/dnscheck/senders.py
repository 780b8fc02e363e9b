"""What each provider needs in the sender's DNS: its SPF include and how it aligns.

From ``../shared/reference/dns.md`` (each fact sourced there). ``spf`` is the
include name(s) a provider's documentation gives (any one of them counts);
empty where the provider asks for none (Postmark). ``return_path_own`` says
the provider's default envelope sender is its own domain, so SPF at the From
domain matters only when a custom return-path is set up on it, and DMARC
relies on DKIM. SMTP relays of the ESPs are recognised by their host names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sender:
    label: str
    spf: tuple[str, ...]
    return_path_own: bool = True


ESPS: dict[str, Sender] = {
    "sendgrid": Sender("SendGrid", ("sendgrid.net",)),
    "mailgun": Sender("Mailgun", ("mailgun.org", "eu.mailgun.org")),
    "ses": Sender("Amazon SES", ("amazonses.com",)),
    "postmark": Sender("Postmark", ()),
    "resend": Sender("Resend", ("amazonses.com",)),
    "mailjet": Sender("Mailjet", ("spf.mailjet.com",)),
    "sparkpost": Sender("SparkPost", ("sparkpostmail.com", "_spf.sparkpostmail.com")),
    "mandrill": Sender("Mandrill", ("spf.mandrillapp.com", "mandrillapp.com")),
    "brevo": Sender("Brevo", ("spf.brevo.com", "spf.sendinblue.com")),
}

# an SMTP relay host (suffix) -> the ESP behind it
RELAYS: dict[str, str] = {
    "sendgrid.net": "sendgrid",
    "mailgun.org": "mailgun",
    "amazonaws.com": "ses",
    "postmarkapp.com": "postmark",
    "resend.com": "resend",
    "mailjet.com": "mailjet",
    "sparkpostmail.com": "sparkpost",
    "mandrillapp.com": "mandrill",
    "brevo.com": "brevo",
    "sendinblue.com": "brevo",
}


def relay_esp(host: str) -> str | None:
    """The ESP scheme whose SMTP relay ``host`` is, or None (a relay of one's own)."""
    host = host.lower().rstrip(".")
    for suffix, scheme in RELAYS.items():
        if host == suffix or host.endswith("." + suffix):
            return scheme
    return None
