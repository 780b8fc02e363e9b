"""Amazon SES events through SNS: signed envelopes, both SES formats (events.md section 3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from inbound_helpers import (
    TOPIC,
    echo,
    pem,
    rsa_certificate,
    sns_headers,
    sns_notification,
    sns_sign,
)
from provider_fakes import sample_message

from stampcli.events.model import BounceKind, EventType
from stampcli.providers.ses import SESParser
from stampcli.providers.webhook import WebhookAuthError, WebhookPayloadError

MAIL = {
    "timestamp": "2026-11-30T09:59:58.000Z",
    "messageId": "0102018c2f2e3a4b-11111111-2222-3333-4444-555555555555-000000",
    "source": "news@acme.example",
    "destination": ["ann@example.com"],
    "commonHeaders": {"messageId": "<7b025fec3c847993035a03f2@acme.example>"},
}


def ses_event(event_type: str, detail: dict[str, Any] | None = None, **mail: Any) -> dict[str, Any]:
    tags = echo("ses", sample_message())["mail"]["tags"]
    data: dict[str, Any] = {"eventType": event_type, "mail": {**MAIL, "tags": tags, **mail}}
    if detail is not None:
        data[event_type[0].lower() + event_type[1:].replace(" ", "")] = detail
    return data


class Fetch:
    def __init__(self, pem_bytes: bytes) -> None:
        self.pem, self.calls = pem_bytes, 0

    def __call__(self, url: str) -> bytes:
        self.calls += 1
        return self.pem


@pytest.fixture
def signer() -> Any:
    return rsa_certificate()


@pytest.fixture
def parser(signer: Any) -> SESParser:
    _, cert = signer
    return SESParser.from_env(
        {"SES_SNS_TOPIC_ARNS": f"{TOPIC}, arn:aws:sns:us-east-1:1:x"},
        fetch_certificate=Fetch(pem(cert)),
    )


def request(message: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    return sns_headers(message), json.dumps(message).encode()


def run(parser: SESParser, signer: Any, ses: dict[str, Any] | str, version: str = "2") -> Any:
    key, _ = signer
    headers, body = request(sns_sign(sns_notification(ses), key, version))
    parser.verify(headers, body)
    return parser.parse(headers, body)


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_delivery_parsed(parser: SESParser, signer: Any, version: str) -> None:
    detail = {
        "timestamp": "2026-11-30T10:00:01.000Z",
        "recipients": ["Ann@Example.com"],
        "smtpResponse": "250 2.6.0 ok",
    }
    result = run(parser, signer, ses_event("Delivery", detail), version)
    [got] = result.events
    assert got.type is EventType.DELIVERED
    assert got.event_id == "sns-1"
    assert got.recipient == "ann@example.com"
    assert got.campaign == "november-news" and got.recipient_key == "ann@example.com"
    assert got.message_id == MAIL["messageId"]
    assert got.message_id_header == "<7b025fec3c847993035a03f2@acme.example>"
    assert got.occurred_at.isoformat() == "2026-11-30T10:00:01+00:00"
    assert got.reason == "250 2.6.0 ok"
    assert result.topic_arn == TOPIC


def test_unlisted_topic_and_forgery_refused(parser: SESParser, signer: Any) -> None:
    key, _ = signer
    other = {**sns_notification("{}"), "TopicArn": "arn:aws:sns:eu-west-1:999:attacker"}
    headers, body = request(sns_sign(other, key))
    with pytest.raises(WebhookAuthError, match="SES_SNS_TOPIC_ARNS"):
        parser.verify(headers, body)
    forged = sns_sign(sns_notification(ses_event("Delivery", {"recipients": ["a@b.example"]})), key)
    forged["Message"] = forged["Message"].replace("Delivery", "Bounce")
    with pytest.raises(WebhookAuthError, match="does not match"):
        parser.verify(*request(forged))
    unsigned = sns_notification("{}")
    with pytest.raises(WebhookAuthError):
        parser.verify(*request(unsigned))


def test_bounce_fans_out_per_recipient(parser: SESParser, signer: Any) -> None:
    detail = {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "timestamp": "2026-11-30T10:00:02.000Z",
        "bouncedRecipients": [
            {
                "emailAddress": "ann@example.com",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            },
            {"emailAddress": "bob@example.com", "diagnosticCode": "smtp; 550 mailbox gone"},
        ],
    }
    ann, bob = run(parser, signer, ses_event("Bounce", detail)).events
    assert (ann.type, ann.bounce_kind) == (EventType.BOUNCED, BounceKind.HARD)
    assert ann.reason == "smtp; 550 5.1.1 user unknown" and bob.recipient == "bob@example.com"
    assert ann.event_id != bob.event_id and ann.event_id.startswith("sns-1/")


@pytest.mark.parametrize(
    ("event_type", "detail", "kind", "bounce"),
    [
        ("Send", {}, EventType.SENT, None),
        ("Reject", {"reason": "Bad content"}, EventType.REJECTED, None),
        (
            "Bounce",
            {
                "bounceType": "Transient",
                "bounceSubType": "MailboxFull",
                "bouncedRecipients": [{"emailAddress": "ann@example.com"}],
            },
            EventType.BOUNCED,
            "soft",
        ),
        (
            "Bounce",
            {
                "bounceType": "Permanent",
                "bounceSubType": "OnAccountSuppressionList",
                "bouncedRecipients": [{"emailAddress": "ann@example.com"}],
            },
            EventType.DROPPED,
            None,
        ),
        (
            "Complaint",
            {
                "complaintFeedbackType": "abuse",
                "complainedRecipients": [{"emailAddress": "ann@example.com"}],
            },
            EventType.COMPLAINED,
            None,
        ),
        (
            "DeliveryDelay",
            {
                "delayType": "MailboxFull",
                "delayedRecipients": [{"emailAddress": "ann@example.com"}],
            },
            EventType.DEFERRED,
            "soft",
        ),
        (
            "Open",
            {"userAgent": "Mozilla/5.0", "timestamp": "2026-11-30T11:00:00Z"},
            EventType.OPENED,
            None,
        ),
        ("Click", {"link": "https://acme.example/x", "userAgent": "UA"}, EventType.CLICKED, None),
        ("Rendering Failure", {"errorMessage": "missing var"}, EventType.FAILED, None),
        (
            "Subscription",
            {"newTopicPreferences": {"unsubscribeAll": True}},
            EventType.UNSUBSCRIBED,
            None,
        ),
    ],
)
def test_each_event_type(
    parser: SESParser,
    signer: Any,
    event_type: str,
    detail: dict[str, Any],
    kind: EventType,
    bounce: str | None,
) -> None:
    [got] = run(parser, signer, ses_event(event_type, detail)).events
    assert got.type is kind
    assert got.bounce_kind == (BounceKind(bounce) if bounce else None)
    if event_type == "Click":
        assert got.url == "https://acme.example/x" and got.user_agent == "UA"


def test_identity_notification_format(parser: SESParser, signer: Any) -> None:
    # older identity notifications: notificationType, no tags
    ses = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": "ann@example.com"}],
            "timestamp": "2026-11-30T10:00:00Z",
        },
        "mail": MAIL,
    }
    [got] = run(parser, signer, ses).events
    assert got.type is EventType.BOUNCED and got.bounce_kind is BounceKind.HARD
    assert got.campaign is None and got.message_id == MAIL["messageId"]


def test_ooto_simulator_and_auto_reply_bounce(parser: SESParser, signer: Any) -> None:
    detail = {"recipients": ["ooto@simulator.amazonses.com"]}
    [ooto] = run(
        parser, signer, ses_event("Delivery", detail, destination=["ooto@simulator.amazonses.com"])
    ).events
    assert ooto.type is EventType.DELIVERED and ooto.auto_reply
    undetermined = {
        "bounceType": "Undetermined",
        "bouncedRecipients": [
            {"emailAddress": "ann@example.com", "diagnosticCode": "Automatic reply: out of office"}
        ],
    }
    [auto] = run(parser, signer, ses_event("Bounce", undetermined)).events
    assert auto.type is EventType.AUTO_REPLIED and auto.bounce_kind is None


def test_subscription_confirmation_gives_the_checked_url(parser: SESParser, signer: Any) -> None:
    key, _ = signer
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=2336"
    confirmation = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic ...",
        "SubscribeURL": url,
        "Timestamp": "2026-11-30T10:00:00.000Z",
    }
    headers, body = request(sns_sign(confirmation, key))
    parser.verify(headers, body)
    result = parser.parse(headers, body)
    assert result.subscribe_url == url and result.events == () and result.topic_arn == TOPIC
    bad = sns_sign({**confirmation, "SubscribeURL": "https://evil.example/confirm"}, key)
    headers, body = request(bad)
    parser.verify(headers, body)  # signed by SNS, but the URL is not SNS's
    with pytest.raises(WebhookPayloadError, match="SNS host"):
        parser.parse(headers, body)


def test_validation_note_and_unknown_event(parser: SESParser, signer: Any) -> None:
    note = run(parser, signer, "Successfully validated SNS topic for Amazon SES event publishing.")
    assert note.events == () and note.ignored == 1
    unknown = run(parser, signer, {"eventType": "Teleport", "mail": MAIL})
    assert "unknown event type 'Teleport'" in unknown.rejected[0].reason
    none = run(parser, signer, ses_event("Delivery", {"recipients": []}))
    assert "names no recipient" in none.rejected[0].reason


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not an SNS message"),
        (b'{"Type": "Notification", "Message": 5}', "Message is not text"),
        (b'{"Type": "Notification", "Message": "{broken"}', "SNS Message is not valid JSON"),
        (b'{"Type": "Other"}', "unknown SNS message Type"),
    ],
)
def test_bad_requests(parser: SESParser, body: bytes, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        parser.parse({"Content-Type": "text/plain; charset=UTF-8"}, body)


def test_from_env_needs_a_fetcher() -> None:
    with pytest.raises(TypeError, match="fetch_certificate"):
        SESParser.from_env({"SES_SNS_TOPIC_ARNS": TOPIC})
    with pytest.raises(KeyError, match="SES_SNS_TOPIC_ARNS"):
        SESParser.from_env({}, fetch_certificate=Fetch(b""))
