"""The shared half of every provider's webhook: the parser contract, the body readers,
the request errors and the signature checks. Each provider's parser lives in its own
module (``stampcli.providers.<name>``) and is registered in its ``Scheme`` entry.

All signature schemes live together so that they stack and share the replay
cache and the body readers; each provider's parsing is in its own module.

The contract every provider's webhook parser keeps, and the body readers they share.

A parser is built once per server from its secrets (``from_env``) and then
answers two questions per request, as django-anymail's webhook views do:

- ``verify(headers, body)``: is this request really from the provider? Raises
  ``WebhookAuthError``; it runs on the raw body bytes, before anything is parsed
  for use (signatures cover the exact bytes).
- ``parse(headers, body) -> ParseResult``: the normalised events. A request that
  cannot be read at all raises ``WebhookPayloadError``; one bad event of a batch
  becomes a ``Rejection`` and the others are kept.

Secrets live in the parser object, never in what ``parse`` returns: the raw
copies are redacted and error messages never quote credentials.

The two ways a provider's webhook request can fail before any event is used.

``WebhookAuthError``: the request is not provably from the provider (bad, missing,
stale or replayed signature; wrong basic-auth credentials; an SNS topic or
certificate we do not accept). The server answers 401/403 and stores nothing.

``WebhookPayloadError``: the request as a whole cannot be read (not JSON, wrong
content type, too large, not UTF-8, the wrong shape). One bad event in an
otherwise good batch is not this: it becomes a ``Rejection`` in the
``ParseResult`` and the good events are kept.

Messages name the provider and the field at fault and never contain a secret
or more than a short, sanitised excerpt of what was received.

The signature and credential checks providers' webhooks are verified with.

Each raises ``WebhookAuthError`` (never returns False) with a message that names
what failed and never the secret, the expected signature or the credentials.
Every comparison of a secret-derived value is constant-time.

- ``check_basic_auth``: HTTP Basic credentials in the URL (Postmark, Mailjet,
  SparkPost, Brevo: providers that do not sign).
- ``MailgunSignature``: HMAC-SHA256 over timestamp + token, a staleness window
  and a replay cache of seen tokens.
- ``SendGridSignature``: ECDSA P-256 / SHA-256 over timestamp + raw body.
- ``SvixSignature``: Resend's Svix (Standard Webhooks) HMAC, via the ``svix`` package.
- ``mandrill_signature`` / ``check_mandrill``: HMAC-SHA1 over URL + sorted POST params.
- ``SNSVerifier``: Amazon SNS message signatures (v1 SHA1, v2 SHA256) against the
  signing certificate fetched from an SNS host, a topic allow-list, and the
  SubscribeURL of a SubscriptionConfirmation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

import orjson

from stampcli import redact
from stampcli.errors import StampError
from stampcli.events.model import DeliveryEvent, EventRejected, ParseResult, Rejection
from stampcli.providers.registry import SCHEMES

if TYPE_CHECKING:
    # cryptography (~0.2 s to import) is loaded by the checks that use it, so that a send,
    # which imports the provider modules, does not pay for it
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa


class WebhookAuthError(StampError, PermissionError):
    """The webhook request failed authentication (signature, credentials, topic, replay)."""


class WebhookPayloadError(StampError, ValueError):
    """The webhook request body cannot be used at all (syntax, content type, size, shape)."""


MAX_BODY = 25 * 1024 * 1024  # a Mandrill batch of 1,000 events or a SparkPost batch fits
MAX_EVENTS = 10_000  # more events than any provider batches in one request

Headers = Mapping[str, str]
Clock = Callable[[], float]


def lower_headers(headers: Headers) -> dict[str, str]:
    """``headers`` with lower-case names (HTTP names are case-insensitive)."""
    return {k.lower(): v for k, v in headers.items()}


def media_type(headers: Headers) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    value = lower_headers(headers).get("content-type", "")
    return value.split(";", 1)[0].strip().lower()


def check_body(provider: str, headers: Headers, body: bytes, types: Sequence[str]) -> None:
    """Refuse an empty or oversized body, or one whose Content-Type is not in ``types``."""
    if len(body) > MAX_BODY:
        raise WebhookPayloadError(
            f"{provider} webhook: the body is {len(body):,} bytes, more than {MAX_BODY:,}"
        )
    if not body.strip():
        raise WebhookPayloadError(f"{provider} webhook: the body is empty")
    got = media_type(headers)
    if got not in types:
        shown = redact.redact(got[:60]) if got else "none"
        raise WebhookPayloadError(
            f"{provider} webhook: Content-Type {shown!r} is not {' or '.join(types)}"
        )


def load_json(provider: str, data: bytes | str, what: str = "the body") -> Any:
    """``data`` parsed as JSON, or a ``WebhookPayloadError`` naming the provider."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position only ("... line 1 column 3 (char 2)")
        raise WebhookPayloadError(f"{provider} webhook: {what} is not valid JSON ({exc})") from None


def json_body(
    provider: str, headers: Headers, body: bytes, types: Sequence[str] = ("application/json",)
) -> Any:
    """The body as JSON after the size and Content-Type checks."""
    check_body(provider, headers, body, types)
    return load_json(provider, body)


def form_body(provider: str, headers: Headers, body: bytes) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body as (name, value) pairs, in order."""
    check_body(provider, headers, body, ("application/x-www-form-urlencoded",))
    try:
        text = body.decode("ascii")  # form encoding is ASCII: anything else is percent-encoded
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=100
        )
    except (UnicodeDecodeError, ValueError) as exc:
        reason = "is not ASCII" if isinstance(exc, UnicodeDecodeError) else "is not a valid form"
        raise WebhookPayloadError(f"{provider} webhook: the form body {reason}") from None


def as_list(provider: str, data: Any, *, single_ok: bool) -> list[Any]:
    """A batch as a list: a JSON array, or (``single_ok``) one event object."""
    if isinstance(data, list):
        if len(data) > MAX_EVENTS:
            raise WebhookPayloadError(
                f"{provider} webhook: {len(data):,} events in one request, more than {MAX_EVENTS:,}"
            )
        return data
    if single_ok and isinstance(data, dict):
        return [data]
    shape = "a JSON array or object" if single_ok else "a JSON array"
    raise WebhookPayloadError(
        f"{provider} webhook: the body is {type(data).__name__}, not {shape} of events"
    )


def text_field(item: Mapping[str, Any], name: str) -> str | None:
    """``item[name]`` when it is non-empty text, else None."""
    value = item.get(name)
    return value if isinstance(value, str) and value else None


def obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (for optional nested objects)."""
    return value if isinstance(value, Mapping) else {}


class WebhookParser(ABC):
    """One provider's webhook: verify the request, then parse its events."""

    provider: ClassVar[str]  # the registry label and route name
    env: ClassVar[tuple[str, ...]]  # the environment variables from_env needs

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock

    @classmethod
    @abstractmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        """The parser configured from ``env`` (raises ``KeyError`` naming a missing variable)."""

    @abstractmethod
    def verify(self, headers: Headers, body: bytes) -> None:
        """Raise ``WebhookAuthError`` unless the request is authentic."""

    @abstractmethod
    def items(self, headers: Headers, body: bytes) -> list[Any]:
        """The request's events as provider objects (raises ``WebhookPayloadError``)."""

    @abstractmethod
    def events(self, item: Mapping[str, Any], headers: Headers) -> list[DeliveryEvent]:
        """The normalised events of one provider event ([] = nothing for stamp);
        raises ``EventRejected`` when the event cannot be used."""

    def parse(self, headers: Headers, body: bytes) -> ParseResult:
        """Every usable event of the request; bad ones counted and described."""
        headers = lower_headers(headers)
        events: list[DeliveryEvent] = []
        rejected: list[Rejection] = []
        ignored = 0
        for index, item in enumerate(self.items(headers, body)):
            try:
                if not isinstance(item, Mapping):
                    raise EventRejected(f"is {type(item).__name__}, not a JSON object")
                got = self.events(item, headers)
            except EventRejected as exc:
                rejected.append(Rejection(index, f"{self.provider} event {index}: {exc}"))
                continue
            if got:
                events.extend(got)
            else:
                ignored += 1
        return ParseResult(tuple(events), tuple(rejected), ignored)


def require(env: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """The values of ``names`` in ``env``, each registered as a secret; ``KeyError`` names the
    first one missing or empty."""
    values = []
    for name in names:
        value = env.get(name, "")
        if not value.strip():
            raise KeyError(name)
        redact.register(value)
        values.append(value.strip())
    return values


class BasicAuthParser(WebhookParser):
    """A provider that does not sign its webhooks: HTTP Basic credentials in the URL."""

    env = ("STAMP_WEBHOOK_USER", "STAMP_WEBHOOK_PASSWORD")

    def __init__(self, user: str, password: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._user, self._password = user, password

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Self:
        user, password = require(env, cls.env)
        return cls(user, password, **options)

    def verify(self, headers: Headers, body: bytes) -> None:
        check_basic_auth(self.provider, headers, self._user, self._password)


# -- the signature checks ----------------------------------------------------------------

MAX_AGE = 300  # seconds: the staleness window for signed timestamps (both directions)


def _same(a: str | bytes, b: str | bytes) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def _fresh(provider: str, stamp: str, clock: Clock, max_age: float) -> None:
    try:
        when = float(stamp)
    except ValueError:
        raise WebhookAuthError(
            f"{provider} webhook: the signature timestamp is not a number"
        ) from None
    if not abs(clock() - when) <= max_age:  # `not <=` also refuses NaN
        raise WebhookAuthError(
            f"{provider} webhook: the signature timestamp is more than {max_age:.0f} s "
            "from now (stale or replayed request, or a wrong clock)"
        )


# -- HTTP Basic ---------------------------------------------------------------------------


def check_basic_auth(provider: str, headers: Mapping[str, str], user: str, password: str) -> None:
    """Refuse unless the Authorization header carries exactly ``user``:``password``."""
    value = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise WebhookAuthError(f"{provider} webhook: no HTTP Basic credentials")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookAuthError(f"{provider} webhook: malformed HTTP Basic credentials") from None
    got_user, sep, got_password = given.partition(b":")
    # both compared every time: the answer's timing says nothing about which one was wrong
    user_ok = _same(got_user, user.encode())
    password_ok = _same(got_password, password.encode())
    if not (sep and user_ok and password_ok):
        raise WebhookAuthError(f"{provider} webhook: wrong HTTP Basic credentials")


# -- Mailgun ------------------------------------------------------------------------------


class ReplayCache:
    """The tokens seen in the last ``ttl`` seconds, at most ``size`` of them (oldest dropped).

    In memory and per process: it stops a captured request being replayed against
    this process within the staleness window. A deployment with several processes
    (or a restart inside the window) also relies on the store, which dedupes events
    on (provider, event id); Mailgun's event id is this token.
    """

    def __init__(self, *, ttl: float = MAX_AGE, size: int = 100_000, clock: Clock = time.time):
        self.ttl, self.size, self.clock = ttl, size, clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, value: str) -> bool:
        """Remember ``value``; False when it was already seen (a replay)."""
        now = self.clock()
        with self._lock:
            while self._seen:
                oldest, when = next(iter(self._seen.items()))
                if now - when <= self.ttl and len(self._seen) < self.size:
                    break
                del self._seen[oldest]
            if value in self._seen:
                return False
            self._seen[value] = now
            return True


class MailgunSignature:
    """Mailgun's body ``signature`` object: hex HMAC-SHA256(key, timestamp + token)."""

    def __init__(self, key: str, *, max_age: float = MAX_AGE, clock: Clock = time.time):
        self._key = key.encode()
        self.max_age, self.clock = max_age, clock
        # entries live twice the window: a token is refused as replayed while it could be fresh
        self.seen = ReplayCache(ttl=2 * max_age, clock=clock)

    def check(self, signature: Any) -> None:
        if not isinstance(signature, Mapping):
            raise WebhookAuthError("mailgun webhook: no signature object in the body")
        parts = [signature.get(k) for k in ("timestamp", "token", "signature")]
        if not all(isinstance(p, str) and 0 < len(p) <= 512 for p in parts):
            raise WebhookAuthError(
                "mailgun webhook: signature timestamp, token or signature missing"
            )
        stamp, token_, given = (str(p) for p in parts)
        expected = hmac.new(self._key, f"{stamp}{token_}".encode(), hashlib.sha256).hexdigest()
        if not _same(expected, given.lower()):
            raise WebhookAuthError("mailgun webhook: the signature does not match")
        _fresh("mailgun", stamp, self.clock, self.max_age)
        if not self.seen.add(token_):
            raise WebhookAuthError(
                "mailgun webhook: this signature token was already used (replay)"
            )


# -- SendGrid -----------------------------------------------------------------------------

SENDGRID_SIGNATURE = "x-twilio-email-event-webhook-signature"
SENDGRID_TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


class SendGridSignature:
    """SendGrid's Signed Event Webhook: ECDSA P-256 over timestamp + raw body, SHA-256."""

    def __init__(self, public_key: str, *, max_age: float = MAX_AGE, clock: Clock = time.time):
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        # the "verification key" SendGrid shows: base64 DER SubjectPublicKeyInfo
        try:
            key = load_der_public_key(base64.b64decode("".join(public_key.split()), validate=True))
        except (binascii.Error, ValueError):
            raise WebhookAuthError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 public key (copy the verification "
                "key from SendGrid's Event Webhook settings)"
            ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise WebhookAuthError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA P-256 public key")
        self._key = key
        self.max_age, self.clock = max_age, clock

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        lower = {k.lower(): v for k, v in headers.items()}
        signature, stamp = lower.get(SENDGRID_SIGNATURE, ""), lower.get(SENDGRID_TIMESTAMP, "")
        if not signature or not stamp:
            raise WebhookAuthError("sendgrid webhook: unsigned (no signature or timestamp header)")
        try:
            der = base64.b64decode(signature.strip(), validate=True)
            self._key.verify(der, stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            raise WebhookAuthError("sendgrid webhook: the signature does not match") from None
        _fresh("sendgrid", stamp, self.clock, self.max_age)


# -- Resend (Svix) ------------------------------------------------------------------------


class SvixSignature:
    """Svix / Standard Webhooks: HMAC-SHA256 over id.timestamp.body, ±5 minutes (svix's own)."""

    def __init__(self, secret: str):
        # imported here: svix loads its whole API client (~1 s); only Resend needs it
        from svix.webhooks import Webhook, WebhookVerificationError

        self._error = WebhookVerificationError
        try:
            self._hook = Webhook(secret)
        except Exception:  # svix raises binascii.Error, EmptyWebhookSecretError, RuntimeError
            raise WebhookAuthError(
                "RESEND_WEBHOOK_SECRET is not a Svix signing secret (whsec_...)"
            ) from None

    def check(self, headers: Mapping[str, str], body: bytes) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        if not all(lower.get(f"svix-{h}") for h in ("id", "timestamp", "signature")):
            raise WebhookAuthError("resend webhook: unsigned (no svix-id/-timestamp/-signature)")
        # "v1,<base64>" entries separated by spaces; said here, as svix releases differ in
        # whether a list without one is "malformed" or "no matching signature"
        if not any(
            part.startswith("v1,") and len(part) > 3 for part in lower["svix-signature"].split()
        ):
            raise WebhookAuthError("resend webhook: malformed signature headers (no v1,... entry)")
        try:
            self._hook.verify(body, lower)
        except self._error as exc:
            raise WebhookAuthError(f"resend webhook: {str(exc).lower()}") from None
        except ValueError:  # a malformed signature list, bad base64, a body that is not UTF-8
            raise WebhookAuthError("resend webhook: malformed signature headers or body") from None


# -- Mandrill -----------------------------------------------------------------------------


def mandrill_signature(key: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """base64 HMAC-SHA1(key, url + each POST key and value, keys sorted)."""
    signed = url + "".join(k + v for k, v in sorted(params, key=lambda kv: kv[0]))
    digest = hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def check_mandrill(
    key: str, url: str, headers: Mapping[str, str], params: Sequence[tuple[str, str]]
) -> None:
    """Refuse unless X-Mandrill-Signature is the signature of ``params`` posted to ``url``."""
    given = {k.lower(): v for k, v in headers.items()}.get("x-mandrill-signature", "")
    if not given:
        raise WebhookAuthError("mandrill webhook: unsigned (no X-Mandrill-Signature header)")
    if not _same(mandrill_signature(key, url, params), given.strip()):
        raise WebhookAuthError(
            "mandrill webhook: the signature does not match (is STAMP_PUBLIC_URL the URL "
            "configured in Mandrill?)"
        )


# -- Amazon SNS ---------------------------------------------------------------------------

# sns.<region>.amazonaws.com (and the China partition's .amazonaws.com.cn)
SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com(?:\.cn)?")
SNS_CERT_NAMES = frozenset({"sns.amazonaws.com"})
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_KEYS["UnsubscribeConfirmation"] = _SIGNED_KEYS["SubscriptionConfirmation"]
_HASHES = {"1": "SHA1", "2": "SHA256"}  # SignatureVersion -> the hashes class name

Fetcher = Callable[[str], bytes]


def sns_url(value: object, what: str) -> str:
    """``value`` when it is an https URL on an SNS host (no credentials, no odd port)."""
    if not isinstance(value, str) or len(value) > 2048:
        raise WebhookAuthError(f"ses webhook: no {what}")
    parts = urlsplit(value)
    if (
        parts.scheme != "https"
        or parts.username is not None
        or parts.port not in (None, 443)
        or not SNS_HOST.fullmatch(parts.hostname or "")
        or any(c in value for c in "\\\r\n\t ")
    ):
        raise WebhookAuthError(f"ses webhook: the {what} is not an https URL on an SNS host")
    return value


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed: key and value lines of the signed keys, in byte order."""
    keys = _SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise WebhookAuthError("ses webhook: unknown SNS message Type")
    lines = []
    for key in keys:
        value = message.get(key)
        if value is None and key == "Subject":
            continue  # signed only when present
        if not isinstance(value, str):
            raise WebhookAuthError(f"ses webhook: the SNS message has no {key}")
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode()


def certificate_names(cert: x509.Certificate) -> set[str]:
    """The subject common names and DNS subject-alternative names of ``cert``, lower case."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = {str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    return names | {n.lower() for n in san.get_values_for_type(x509.DNSName)}


class SNSVerifier:
    """Checks SNS HTTP(S) messages: signature, certificate, topic.

    ``fetch(url) -> PEM bytes`` is injected (the server passes an httpx one with a short
    timeout); certificates are cached by URL. A certificate is used only when it is
    currently valid, names ``sns.amazonaws.com`` or ``sns.<region>.amazonaws.com`` (subject
    or subject-alternative name) and has an RSA key.

    ``trusted_certificates``: extra certificates accepted whatever their subject, for
    tests that sign with their own key. It exists only as this constructor argument: no
    request, header or environment variable can add to it.
    """

    def __init__(
        self,
        topics: Collection[str],
        fetch: Fetcher,
        *,
        trusted_certificates: Collection[x509.Certificate] = (),
        clock: Clock = time.time,
    ):
        from cryptography.hazmat.primitives import hashes

        self.topics = frozenset(topics)
        self.fetch = fetch
        self._trusted = frozenset(c.fingerprint(hashes.SHA256()) for c in trusted_certificates)
        self.clock = clock
        self._certs: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def check(self, headers: Mapping[str, str], message: Mapping[str, Any]) -> None:
        """Refuse unless ``message`` (the decoded SNS body) is signed by SNS for a listed topic."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        lower = {k.lower(): v for k, v in headers.items()}
        kind = message.get("Type")
        if lower.get("x-amz-sns-message-type", kind) != kind:
            raise WebhookAuthError("ses webhook: the SNS message type header and body disagree")
        topic = message.get("TopicArn")
        if not isinstance(topic, str) or topic not in self.topics:
            raise WebhookAuthError(
                "ses webhook: the SNS topic is not one of SES_SNS_TOPIC_ARNS "
                f"({str(topic)[:200]!r})"
            )
        version = str(message.get("SignatureVersion", ""))
        name = _HASHES.get(version)
        if name is None:
            raise WebhookAuthError(f"ses webhook: unsupported SNS SignatureVersion {version[:8]!r}")
        signed = string_to_sign(message)
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookAuthError("ses webhook: the SNS signature is not base64") from None
        key = self.certificate_key(sns_url(message.get("SigningCertURL"), "SigningCertURL"))
        try:
            key.verify(signature, signed, padding.PKCS1v15(), getattr(hashes, name)())
        except InvalidSignature:
            raise WebhookAuthError("ses webhook: the SNS signature does not match") from None

    def certificate_key(self, url: str) -> rsa.RSAPublicKey:
        """The public key of the signing certificate at ``url`` (fetched once, then cached)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import rsa

        with self._lock:
            cached = self._certs.get(url)
        if cached is not None:
            return cached
        try:
            pem = self.fetch(url)
            cert = x509.load_pem_x509_certificate(pem)
        except WebhookAuthError:
            raise
        except Exception as exc:  # the fetcher's network errors, or a body that is no PEM
            raise WebhookAuthError(
                f"ses webhook: cannot get the SNS signing certificate ({type(exc).__name__})"
            ) from None
        now = datetime.fromtimestamp(self.clock(), UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise WebhookAuthError("ses webhook: the SNS signing certificate is not valid now")
        if cert.fingerprint(hashes.SHA256()) not in self._trusted and not any(
            name in SNS_CERT_NAMES or SNS_HOST.fullmatch(name) for name in certificate_names(cert)
        ):
            raise WebhookAuthError("ses webhook: the certificate is not an SNS signing certificate")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookAuthError("ses webhook: the SNS signing certificate has no RSA key")
        with self._lock:
            if len(self._certs) > 100:  # SNS rotates certificates rarely; never grow unbounded
                self._certs.clear()
            self._certs[url] = key
        return key

    def subscribe_url(self, message: Mapping[str, Any]) -> str:
        """The SubscribeURL of a verified SubscriptionConfirmation, checked like the cert URL
        and required to be in the topic's own region."""
        url = sns_url(message.get("SubscribeURL"), "SubscribeURL")
        region = str(message.get("TopicArn", "")).split(":")[3:4]
        host = urlsplit(url).hostname or ""
        if not region or host.split(".")[1] != region[0]:
            raise WebhookAuthError("ses webhook: the SubscribeURL is not in the topic's region")
        return url


# -- the registry ---------------------------------------------------------------------------


def labels() -> tuple[str, ...]:
    """The providers that receive webhooks (``POST /webhooks/<label>``), in registry order."""
    return tuple(name for name, scheme in SCHEMES.items() if scheme.webhook)


def parser_class(label: str) -> type[WebhookParser]:
    """The webhook parser of provider ``label`` (its module imported on first use)."""
    scheme = SCHEMES[label]
    if not scheme.webhook:
        raise KeyError(label)
    found: type[WebhookParser] = getattr(importlib.import_module(scheme.module), scheme.webhook)
    return found


def missing_env(label: str, env: Mapping[str, str]) -> list[str]:
    """The variables provider ``label`` needs that ``env`` lacks or has empty ([] = ready)."""
    return [name for name in parser_class(label).env if not env.get(name, "").strip()]


def configured(env: Mapping[str, str]) -> list[str]:
    """The labels whose secrets are all present in ``env``."""
    return [label for label in labels() if not missing_env(label, env)]
