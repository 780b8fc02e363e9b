"""The normalised event model, its value checks, and the provider registry."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from inbound_helpers import ecdsa_key

from stampcli import redact
from stampcli.events.model import (
    MAX_RAW,
    TAG_CAMPAIGN,
    TAG_RECIPIENT,
    BounceKind,
    EventRejected,
    EventType,
    address,
    clean_text,
    content_id,
    looks_auto_reply,
    make_event,
    normalise_message_id,
    raw_json,
    timestamp,
    token,
)
from stampcli.providers.webhook import (
    MAX_BODY,
    WebhookPayloadError,
    check_body,
    configured,
    labels,
    missing_env,
    parser_class,
)


def test_tag_names_are_what_the_renderer_sends() -> None:
    # stampcli/render/renderer.py builds Message.tags as {"campaign": ..., "recipient": key}
    from provider_fakes import sample_message

    assert set(sample_message().tags) == {TAG_CAMPAIGN, TAG_RECIPIENT}
    renderer = Path(__file__).parents[1] / "stampcli" / "render" / "renderer.py"
    source = renderer.read_text(encoding="utf-8")
    assert '{"campaign": c.name, "recipient": key}' in source


def test_registry_lists_nine_providers_and_their_env() -> None:
    assert {label: cls.env for label, cls in ((lb, parser_class(lb)) for lb in labels())} == {
        "sendgrid": ("SENDGRID_WEBHOOK_PUBLIC_KEY",),
        "mailgun": ("MAILGUN_WEBHOOK_SIGNING_KEY",),
        "ses": ("SES_SNS_TOPIC_ARNS",),
        "postmark": ("STAMP_WEBHOOK_USER", "STAMP_WEBHOOK_PASSWORD"),
        "resend": ("RESEND_WEBHOOK_SECRET",),
        "mailjet": ("STAMP_WEBHOOK_USER", "STAMP_WEBHOOK_PASSWORD"),
        "sparkpost": ("STAMP_WEBHOOK_USER", "STAMP_WEBHOOK_PASSWORD"),
        "mandrill": ("MANDRILL_WEBHOOK_KEY", "STAMP_PUBLIC_URL"),
        "brevo": ("STAMP_WEBHOOK_USER", "STAMP_WEBHOOK_PASSWORD"),
    }
    assert all(cls.provider == label for label, cls in ((lb, parser_class(lb)) for lb in labels()))


def test_missing_env_and_configured() -> None:
    env = {
        "MAILGUN_WEBHOOK_SIGNING_KEY": "k" * 20,
        "STAMP_WEBHOOK_USER": "u",
        "MANDRILL_WEBHOOK_KEY": " ",
    }
    assert missing_env("mailgun", env) == []
    assert missing_env("postmark", env) == ["STAMP_WEBHOOK_PASSWORD"]
    assert missing_env("mandrill", env) == ["MANDRILL_WEBHOOK_KEY", "STAMP_PUBLIC_URL"]
    assert configured(env) == ["mailgun"]
    env["STAMP_WEBHOOK_PASSWORD"] = "p" * 12
    assert configured(env) == ["mailgun", "postmark", "mailjet", "sparkpost", "brevo"]


def test_from_env_registers_secrets_for_redaction() -> None:
    _, public = ecdsa_key()
    parser_class("sendgrid").from_env({"SENDGRID_WEBHOOK_PUBLIC_KEY": public})
    parser_class("postmark").from_env(
        {"STAMP_WEBHOOK_USER": "hookuser", "STAMP_WEBHOOK_PASSWORD": "hook-password"}
    )
    assert {public, "hookuser", "hook-password"} <= redact.known()


def test_message_id_normalisation() -> None:
    assert (
        normalise_message_id("sendgrid", "XBg2anf2TqCy6WXKQFhieQ.filter0905p1-3.0")
        == "XBg2anf2TqCy6WXKQFhieQ"
    )
    assert normalise_message_id("sendgrid", "XBg2anf2TqCy6WXKQFhieQ") == "XBg2anf2TqCy6WXKQFhieQ"
    assert normalise_message_id("mailgun", "<2016.1@example.org>") == "2016.1@example.org"
    assert normalise_message_id("mailgun", "2016.1@example.org") == "2016.1@example.org"
    assert normalise_message_id("mandrill", "1773449.19b42ef8") == "19b42ef8"
    assert (
        normalise_message_id("brevo", "<2017.5787683@relay.example>")
        == "2017.5787683@relay.example"
    )
    assert normalise_message_id("postmark", "883953f4-6105") == "883953f4-6105"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        (" <bob@x.example> ", "bob@x.example"),
        (["c@d.example"], "c@d.example"),
    ],
)
def test_address_normalised(value: object, expected: str) -> None:
    assert address(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "ann",
        "@example.com",
        "ann@",
        "a b@example.com",
        "a@b.example\r\nBcc: x@y",
        "a@b,c@d",
        ["a@b.example", "c@d.example"],
        5,
        "x" * 400 + "@a.example",
    ],
)
def test_address_rejected(value: object) -> None:
    with pytest.raises(EventRejected):
        address(value)


def test_timestamps() -> None:
    assert timestamp(1764000000) == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
    assert timestamp("1764000000") == timestamp(1764000000.0)
    assert timestamp(1764000000123, millis=True).microsecond == 123000
    assert timestamp("2026-11-30T10:00:00.000Z") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert timestamp("2026-11-30T11:00:00+01:00") == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert timestamp("2026-11-30T10:00:00").tzinfo is UTC  # naive: taken as UTC
    for bad in (
        None,
        "",
        "soon",
        -5,
        1e300,
        float("nan"),
        True,
        "9" * 16,
        "1900-01-01T00:00:00Z",
        [1],
    ):
        with pytest.raises(EventRejected):
            timestamp(bad)


def test_clean_text_and_token() -> None:
    assert clean_text("a\r\nb\tc\x00d\u2028e", 100) == "a b c d e"
    assert clean_text("x" * 50, 10) == "x" * 9 + "…"
    assert clean_text(550, 10) == "550"
    assert clean_text({"a": 1}, 10) is None and clean_text("  \r\n", 10) is None
    assert token(12345, "id") == "12345"
    with pytest.raises(EventRejected, match="not text"):
        token(["x"], "id")
    with pytest.raises(EventRejected, match="no id"):
        token(None, "id", required=True)


def test_auto_reply_detection() -> None:
    for text in (
        "Auto-Reply: away",
        "Automatic reply: Out of Office",
        "autoresponder",
        "I am on vacation",
        "OOTO",
    ):
        assert looks_auto_reply(text), text
    for other in ("550 5.1.1 user unknown", "mailbox full", None, 5):
        assert not looks_auto_reply(other)


def test_make_event_turns_auto_reply_bounces_into_auto_replied() -> None:
    when = datetime(2026, 11, 30, tzinfo=UTC)
    got = make_event(
        "x",
        EventType.BOUNCED,
        {},
        recipient="a@b.example",
        occurred_at=when,
        bounce_kind=BounceKind.HARD,
        auto_reply=True,
    )
    assert got.type is EventType.AUTO_REPLIED and got.bounce_kind is None and got.auto_reply
    opened = make_event(
        "x",
        EventType.OPENED,
        {},
        recipient="a@b.example",
        occurred_at=when,
        bounce_kind=BounceKind.HARD,
    )
    assert opened.bounce_kind is None  # only bounces and deferrals carry a kind
    with pytest.raises(dataclasses.FrozenInstanceError):
        opened.recipient = "other@b.example"  # type: ignore[misc]


def test_raw_json_redacts_and_caps() -> None:
    redact.register("very-secret-value")
    raw = json.loads(
        raw_json({"Token": "t", "nested": [{"signature": "s", "x": "very-secret-value"}]})
    )
    assert raw == {"Token": "***", "nested": [{"signature": "***", "x": "***"}]}
    big = raw_json({"x": "y" * (MAX_RAW * 2)})
    assert len(big) < MAX_RAW + 100 and "truncated" in json.loads(big)


def test_content_id_is_stable_and_order_free() -> None:
    assert content_id({"a": 1, "b": 2}) == content_id({"b": 2, "a": 1})
    assert content_id({"a": 1}) != content_id({"a": 2})


def test_oversized_body_refused_before_parsing() -> None:
    with pytest.raises(WebhookPayloadError, match="more than"):
        check_body(
            "sendgrid",
            {"Content-Type": "application/json"},
            b"[" + b" " * MAX_BODY + b"]",
            ("application/json",),
        )
