"""Shared pieces of the webhook tests: real keys and signatures, and what each
provider echoes back of a message stamp's adapter actually built.

``echo(provider, message)`` runs the real adapter's request builder for
``message`` and returns the provider-side custom data as the provider puts it in
its events (SendGrid's top-level custom args, Mailgun's user-variables, ...), so
the parser tests read back exactly what the adapters send.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import functools
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from stampcli.config import ProviderConfig
from stampcli.providers import create_adapter
from stampcli.providers.webhook import string_to_sign
from stampcli.render.message import Message

PROVIDER_URLS = {
    "sendgrid": "sendgrid://KEY",
    "mailgun": "mailgun://KEY@mg.example.com",
    "ses": "ses://AKIDEXAMPLE:SECRET@eu-west-1",
    "postmark": "postmark://KEY",
    "resend": "resend://KEY",
    "mailjet": "mailjet://PUBLIC:PRIVATE",
    "sparkpost": "sparkpost://KEY",
    "mandrill": "mandrill://KEY",
    "brevo": "brevo://KEY",
}


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def echo(provider: str, message: Message) -> dict[str, Any]:
    """The custom data the provider returns in events for ``message`` as stamp sends it."""
    adapter: Any = create_adapter(ProviderConfig.model_validate({"url": PROVIDER_URLS[provider]}))
    if provider == "ses":
        tags = adapter.payload(message)["EmailTags"]
        return {"mail": {"tags": {t["Name"]: [t["Value"]] for t in tags}}}
    call = adapter.build_send([message])
    body = call.json
    if provider == "sendgrid":
        return dict(body["personalizations"][0]["custom_args"])
    if provider == "mailgun":
        variables = {k[2:]: v for k, v in call.data.items() if k.startswith("v:")}
        return {"user-variables": variables, "tags": [call.data["o:tag"]]}
    if provider == "postmark":
        entry = _first(body)
        return {"Metadata": entry["Metadata"], "Tag": entry["Tag"]}
    if provider == "resend":
        entry = _first(body)
        return {"tags": {t["name"]: t["value"] for t in entry["tags"]}}
    if provider == "mailjet":
        entry = body["Messages"][0]
        return {
            "CustomID": entry["CustomID"],
            "Payload": entry["EventPayload"],
            "customcampaign": entry["CustomCampaign"],
        }
    if provider == "sparkpost":
        return {"rcpt_meta": body["metadata"], "campaign_id": body["campaign_id"]}
    if provider == "mandrill":
        headers = email.message_from_string(body["raw_message"])
        return {
            "metadata": json.loads(headers["X-MC-Metadata"]),
            "tags": headers["X-MC-Tags"].split(),
        }
    if provider == "brevo":
        return {"X-Mailin-custom": body["headers"]["X-Mailin-custom"], "tags": body["tags"]}
    raise KeyError(provider)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- SendGrid -----------------------------------------------------------------------------


def ecdsa_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair and the public key as SendGrid shows it (base64 DER SPKI)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sendgrid_headers(
    private: ec.EllipticCurvePrivateKey, body: bytes, stamp: str
) -> dict[str, str]:
    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


# -- SNS ----------------------------------------------------------------------------------

CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"


@functools.cache
def rsa_key(index: int = 0) -> rsa.RSAPrivateKey:
    """RSA keys made once per test run (2048-bit generation takes ~0.1-0.5 s)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_certificate(
    common_name: str = "sns.amazonaws.com",
    *,
    days: int = 30,
    start_days_ago: int = 1,
    index: int = 0,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An RSA key (``index`` picks one of the cached keys) and a self-signed certificate for
    it, valid from yesterday."""
    key = rsa_key(index)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=start_days_ago))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def sns_sign(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "2") -> dict[str, Any]:
    """``message`` with SignatureVersion, SigningCertURL and a real Signature added."""
    signed = {**message, "SignatureVersion": version}
    signed.setdefault("SigningCertURL", CERT_URL)
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    signature = key.sign(string_to_sign(signed), padding.PKCS1v15(), algorithm)
    signed["Signature"] = base64.b64encode(signature).decode()
    return signed


def sns_notification(ses_event: dict[str, Any] | str, message_id: str = "sns-1") -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": ses_event if isinstance(ses_event, str) else json.dumps(ses_event),
        "Timestamp": "2026-11-30T10:00:00.000Z",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


def sns_headers(message: dict[str, Any]) -> dict[str, str]:
    return {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": message["Type"],
        "x-amz-sns-message-id": message["MessageId"],
        "x-amz-sns-topic-arn": message["TopicArn"],
    }
