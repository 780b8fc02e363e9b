"""The shared webhook verifiers, with real keys, certificates and signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from inbound_helpers import (
    CERT_URL,
    TOPIC,
    basic,
    ecdsa_key,
    pem,
    rsa_certificate,
    sendgrid_headers,
    sns_headers,
    sns_notification,
    sns_sign,
)
from svix.webhooks import Webhook

from stampcli.errors import StampError
from stampcli.providers.webhook import (
    MailgunSignature,
    ReplayCache,
    SendGridSignature,
    SNSVerifier,
    SvixSignature,
    WebhookAuthError,
    check_basic_auth,
    check_mandrill,
    mandrill_signature,
    sns_url,
)

NOW = 1_764_000_000.0


def test_errors_are_stamp_errors() -> None:
    assert issubclass(WebhookAuthError, StampError)


# -- basic auth ---------------------------------------------------------------------------


def test_basic_auth_accepts_the_configured_pair() -> None:
    check_basic_auth("postmark", basic("hook", "s3cret-pass"), "hook", "s3cret-pass")
    check_basic_auth(
        "postmark", {"authorization": basic("hook", "a:b")["Authorization"]}, "hook", "a:b"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("hook", "wrong"),
        basic("other", "s3cret-pass"),
        {"Authorization": "Bearer s3cret-pass"},
        {"Authorization": "Basic not-base64!!"},
        {"Authorization": "Basic " + base64.b64encode(b"hooks3cret-pass").decode()},
    ],
)
def test_basic_auth_refuses(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookAuthError) as info:
        check_basic_auth("postmark", headers, "hook", "s3cret-pass")
    assert "s3cret-pass" not in str(info.value)


# -- Mailgun ------------------------------------------------------------------------------


def mailgun_signature(key: str, stamp: str, token: str) -> dict[str, str]:
    digest = hmac.new(key.encode(), f"{stamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": stamp, "token": token, "signature": digest}


def test_mailgun_signature_accepted_once_then_refused_as_replay() -> None:
    check = MailgunSignature("key-abc123", clock=lambda: NOW)
    sig = mailgun_signature("key-abc123", str(int(NOW)), "t" * 50)
    check.check(sig)
    with pytest.raises(WebhookAuthError, match="replay"):
        check.check(sig)


def test_mailgun_signature_refuses_forged_stale_and_future() -> None:
    check = MailgunSignature("key-abc123", clock=lambda: NOW)
    with pytest.raises(WebhookAuthError, match="does not match"):
        check.check(mailgun_signature("another-key", str(int(NOW)), "t1"))
    with pytest.raises(WebhookAuthError, match="from now"):
        check.check(mailgun_signature("key-abc123", str(int(NOW) - 301), "t2"))
    with pytest.raises(WebhookAuthError, match="from now"):
        check.check(mailgun_signature("key-abc123", str(int(NOW) + 301), "t3"))
    with pytest.raises(WebhookAuthError, match="missing"):
        check.check({"timestamp": str(int(NOW)), "token": "t4"})
    with pytest.raises(WebhookAuthError, match="no signature"):
        check.check(None)
    check.check(mailgun_signature("key-abc123", str(int(NOW) - 299), "t5"))


def test_replay_cache_is_bounded_and_forgets_after_ttl() -> None:
    clock = [0.0]
    cache = ReplayCache(ttl=10, size=3, clock=lambda: clock[0])
    assert cache.add("a") and not cache.add("a")
    assert cache.add("b") and cache.add("c") and cache.add("d")  # "a" pushed out by size
    assert cache.add("a")
    clock[0] = 11
    assert cache.add("d")  # expired


# -- SendGrid -----------------------------------------------------------------------------


def test_sendgrid_signature_real_key() -> None:
    private, public = ecdsa_key()
    check = SendGridSignature(public, clock=lambda: NOW)
    body = b'[{"email":"ann@example.com","event":"delivered"}]'
    check.check(sendgrid_headers(private, body, str(int(NOW))), body)
    with pytest.raises(WebhookAuthError, match="does not match"):
        check.check(sendgrid_headers(private, body, str(int(NOW))), body + b" ")
    other, _ = ecdsa_key()
    with pytest.raises(WebhookAuthError, match="does not match"):
        check.check(sendgrid_headers(other, body, str(int(NOW))), body)
    with pytest.raises(WebhookAuthError, match="from now"):
        check.check(sendgrid_headers(private, body, str(int(NOW) - 600)), body)
    with pytest.raises(WebhookAuthError, match="unsigned"):
        check.check({"Content-Type": "application/json"}, body)
    headers = sendgrid_headers(private, body, str(int(NOW)))
    headers["X-Twilio-Email-Event-Webhook-Signature"] = "%%%"
    with pytest.raises(WebhookAuthError, match="does not match"):
        check.check(headers, body)


def test_sendgrid_key_must_be_p256() -> None:
    with pytest.raises(WebhookAuthError, match="not a base64 public key"):
        SendGridSignature("not a key")
    _, cert = rsa_certificate()
    from cryptography.hazmat.primitives import serialization

    rsa_der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(WebhookAuthError, match="P-256"):
        SendGridSignature(base64.b64encode(rsa_der).decode())


# -- Svix ---------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def svix_headers(
    body: bytes, *, secret: str = SECRET, when: datetime | None = None
) -> dict[str, str]:
    when = when or datetime.now(UTC)
    return {
        "svix-id": "msg_2W2D3qXLS5fOaPja1GDg7rF2CwB",
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": Webhook(secret).sign(
            "msg_2W2D3qXLS5fOaPja1GDg7rF2CwB", when, body.decode()
        ),
    }


def test_svix_signature() -> None:
    check = SvixSignature(SECRET)
    body = b'{"type":"email.delivered"}'
    check.check(svix_headers(body), body)
    with pytest.raises(WebhookAuthError, match="no matching signature"):
        check.check(svix_headers(body), body.replace(b"delivered", b"bounced"))
    other = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
    with pytest.raises(WebhookAuthError, match="no matching signature"):
        check.check(svix_headers(body, secret=other), body)
    old = datetime.fromtimestamp(datetime.now(UTC).timestamp() - 600, UTC)
    with pytest.raises(WebhookAuthError, match="too old"):
        check.check(svix_headers(body, when=old), body)
    with pytest.raises(WebhookAuthError, match="unsigned"):
        check.check({}, body)
    broken = {**svix_headers(body), "svix-signature": "garbage"}
    with pytest.raises(WebhookAuthError, match="malformed"):
        check.check(broken, body)


def test_svix_secret_checked_at_setup() -> None:
    with pytest.raises(WebhookAuthError, match="RESEND_WEBHOOK_SECRET"):
        SvixSignature("whsec_")


# -- Mandrill -----------------------------------------------------------------------------


def test_mandrill_signature_known_value() -> None:
    # computed independently: base64(HMAC-SHA1(key, url + "mandrill_events" + value))
    url = "https://hooks.example.com/webhooks/mandrill"
    params = [("mandrill_events", "[]")]
    expected = base64.b64encode(
        hmac.new(b"mkey", (url + "mandrill_events[]").encode(), hashlib.sha1).digest()
    ).decode()
    assert mandrill_signature("mkey", url, params) == expected
    # keys are sorted before signing
    assert mandrill_signature("mkey", url, [("b", "2"), ("a", "1")]) == mandrill_signature(
        "mkey", url, [("a", "1"), ("b", "2")]
    )
    check_mandrill("mkey", url, {"X-Mandrill-Signature": expected}, params)
    with pytest.raises(WebhookAuthError, match="does not match"):
        check_mandrill("mkey", url + "/", {"X-Mandrill-Signature": expected}, params)
    with pytest.raises(WebhookAuthError, match="unsigned"):
        check_mandrill("mkey", url, {}, params)


# -- SNS ----------------------------------------------------------------------------------


class Fetcher:
    def __init__(self, pem_bytes: bytes) -> None:
        self.pem = pem_bytes
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.pem


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signature_versions(version: str) -> None:
    key, cert = rsa_certificate()
    fetch = Fetcher(pem(cert))
    verifier = SNSVerifier([TOPIC], fetch)
    message = sns_sign(sns_notification({"eventType": "Delivery"}), key, version)
    verifier.check(sns_headers(message), message)
    verifier.check(sns_headers(message), message)
    assert fetch.calls == [CERT_URL]  # cached
    forged = {**message, "Message": json.dumps({"eventType": "Bounce"})}
    with pytest.raises(WebhookAuthError, match="does not match"):
        verifier.check(sns_headers(forged), forged)


def test_sns_subject_is_signed_when_present() -> None:
    key, cert = rsa_certificate()
    verifier = SNSVerifier([TOPIC], Fetcher(pem(cert)))
    message = sns_sign({**sns_notification("{}"), "Subject": "hello"}, key)
    verifier.check({}, message)
    with pytest.raises(WebhookAuthError):
        verifier.check({}, {**message, "Subject": "changed"})


def test_sns_refuses_other_key_topic_version_and_type_mismatch() -> None:
    key, cert = rsa_certificate()
    other_key, _ = rsa_certificate(index=1)
    verifier = SNSVerifier([TOPIC], Fetcher(pem(cert)))
    message = sns_sign(sns_notification("{}"), other_key)
    with pytest.raises(WebhookAuthError, match="does not match"):
        verifier.check({}, message)
    wrong_topic = sns_sign({**sns_notification("{}"), "TopicArn": TOPIC + "-other"}, key)
    with pytest.raises(WebhookAuthError, match="SES_SNS_TOPIC_ARNS"):
        verifier.check({}, wrong_topic)
    good = sns_sign(sns_notification("{}"), key)
    with pytest.raises(WebhookAuthError, match="SignatureVersion"):
        verifier.check({}, {**good, "SignatureVersion": "3"})
    with pytest.raises(WebhookAuthError, match="disagree"):
        verifier.check({"x-amz-sns-message-type": "SubscriptionConfirmation"}, good)
    with pytest.raises(WebhookAuthError, match="not base64"):
        verifier.check({}, {**good, "Signature": "***"})


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
        "https://user@sns.eu-west-1.amazonaws.com/cert.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
        "https://sns.amazonaws.com/cert.pem",
        "https://127.0.0.1/cert.pem",
    ],
)
def test_sns_cert_url_must_be_https_on_an_sns_host(url: str) -> None:
    key, cert = rsa_certificate()
    fetch = Fetcher(pem(cert))
    verifier = SNSVerifier([TOPIC], fetch)
    message = sns_sign({**sns_notification("{}"), "SigningCertURL": url}, key)
    with pytest.raises(WebhookAuthError, match="SNS host"):
        verifier.check({}, message)
    assert fetch.calls == []  # never fetched


def test_sns_accepts_region_hosts() -> None:
    for url in (
        "https://sns.us-east-1.amazonaws.com/a.pem",
        "https://sns.ap-southeast-2.amazonaws.com/a.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/a.pem",
        "https://sns.us-gov-west-1.amazonaws.com/a.pem",
    ):
        assert sns_url(url, "SigningCertURL") == url


def test_sns_certificate_must_be_sns_unless_trusted_by_constructor() -> None:
    key, cert = rsa_certificate("stamp test certificate")
    message = sns_sign(sns_notification("{}"), key)
    with pytest.raises(WebhookAuthError, match="not an SNS signing certificate"):
        SNSVerifier([TOPIC], Fetcher(pem(cert))).check({}, message)
    SNSVerifier([TOPIC], Fetcher(pem(cert)), trusted_certificates=[cert]).check({}, message)


def test_sns_regional_certificate_name_accepted() -> None:
    key, cert = rsa_certificate("sns.eu-west-1.amazonaws.com")
    message = sns_sign(sns_notification("{}"), key)
    SNSVerifier([TOPIC], Fetcher(pem(cert))).check({}, message)
    _, lookalike = rsa_certificate("sns.amazonaws.com.evil.example")
    with pytest.raises(WebhookAuthError, match="not an SNS signing certificate"):
        SNSVerifier([TOPIC], Fetcher(pem(lookalike))).check({}, message)


def test_sns_expired_or_unreadable_certificate() -> None:
    key, cert = rsa_certificate(days=-1, start_days_ago=10)
    message = sns_sign(sns_notification("{}"), key)
    with pytest.raises(WebhookAuthError, match="not valid now"):
        SNSVerifier([TOPIC], Fetcher(pem(cert))).check({}, message)
    with pytest.raises(WebhookAuthError, match="cannot get"):
        SNSVerifier([TOPIC], Fetcher(b"<html>not a cert</html>")).check({}, message)

    def down(url: str) -> bytes:
        raise OSError("connection refused")

    with pytest.raises(WebhookAuthError, match="cannot get"):
        SNSVerifier([TOPIC], down).check({}, message)


def test_sns_subscribe_url_checked() -> None:
    verifier = SNSVerifier([TOPIC], Fetcher(b""))
    good = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc"
    assert verifier.subscribe_url({"TopicArn": TOPIC, "SubscribeURL": good}) == good
    other_region = good.replace("eu-west-1", "us-east-1")
    with pytest.raises(WebhookAuthError, match="region"):
        verifier.subscribe_url({"TopicArn": TOPIC, "SubscribeURL": other_region})
    with pytest.raises(WebhookAuthError, match="SNS host"):
        verifier.subscribe_url({"TopicArn": TOPIC, "SubscribeURL": "https://evil.example/"})
