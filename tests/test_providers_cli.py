"""``stamp providers check`` against local provider fakes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from provider_fakes import FakeServer, MandrillFake, PostmarkFake, ResendFake, SendGridFake
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.errors import ExitCode

runner = CliRunner()


@pytest.fixture
def fakes() -> Iterator[list[FakeServer]]:
    servers: list[FakeServer] = [SendGridFake(), PostmarkFake(), ResendFake(), MandrillFake()]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def write_campaign(tmp_path: Path, providers: list[tuple[str, str]]) -> Path:
    (tmp_path / "t.html").write_text("<p>hi</p>")
    (tmp_path / "list.csv").write_text("email\nann@example.com\n")
    entries = "".join(
        f'  - url: "{url}"\n    endpoint: "{endpoint}"\n    timeout: {{connect: 2, read: 1}}\n'
        for url, endpoint in providers
    )
    path = tmp_path / "campaign.yml"
    path.write_text(
        "name: check-test\n"
        'from: "ACME <news@acme.example>"\n'
        "subject: hi\n"
        "template: t.html\n"
        "audience:\n  file: list.csv\n"
        f"providers:\n{entries}"
    )
    return path


def dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_all_ok(tmp_path: Path, fakes: list[FakeServer]) -> None:
    path = write_campaign(tmp_path, [(f.provider_url(), f.url) for f in fakes])
    result = runner.invoke(app, ["providers", "check", str(path)])
    assert result.exit_code == 0, result.output
    for scheme in ("sendgrid", "postmark", "resend", "mandrill"):
        assert scheme in result.output
    for fake in fakes:  # keys never printed
        assert fake.provider_url().split("://")[1][:8] not in result.output


def test_some_fail_exit_1(tmp_path: Path, fakes: list[FakeServer]) -> None:
    providers = [(f.provider_url(), f.url) for f in fakes[:2]]
    providers.append(("resend://re_wrong_key_123", fakes[2].url))
    path = write_campaign(tmp_path, providers)
    result = runner.invoke(app, ["providers", "check", "--json", str(path)])
    assert result.exit_code == ExitCode.PERMANENT_FAILURES, result.output
    reports = json.loads(result.output)
    assert [r["ok"] for r in reports] == [True, True, False]
    assert "API key is invalid" in reports[2]["detail"]
    assert "re_wrong_key_123" not in result.output
    assert reports[2]["url"].startswith("resend://***")


def test_none_ok_exit_4(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, [("sendgrid://SG.k", dead_endpoint())])
    result = runner.invoke(app, ["providers", "check", str(path)])
    assert result.exit_code == ExitCode.ALL_PROVIDERS_DOWN, result.output
    assert "FAILED" in result.output


def test_bad_campaign_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["providers", "check", str(tmp_path / "missing.yml")])
    assert result.exit_code == ExitCode.BAD_INPUT


def test_provider_text_is_shown_literally_not_as_markup(
    tmp_path: Path, fakes: list[FakeServer]
) -> None:
    # A provider's answer is data: "[default]" or "[/]" in it must neither vanish nor crash.
    postmark = next(f for f in fakes if isinstance(f, PostmarkFake))
    postmark.fail("reply", status=200, body={"Name": "ACME [default] [/] prod"})
    path = write_campaign(tmp_path, [(postmark.provider_url(), postmark.url)])
    result = runner.invoke(app, ["providers", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "[default]" in result.output and "[/]" in result.output


def test_tracking_a_provider_cannot_honour_is_a_warning_not_a_failure(
    tmp_path: Path, fakes: list[FakeServer]
) -> None:
    sendgrid, _, resend, _ = fakes
    path = write_campaign(tmp_path, [(f.provider_url(), f.url) for f in (sendgrid, resend)])
    path.write_text(path.read_text() + "tracking: {clicks: true}\n")
    result = runner.invoke(app, ["providers", "check", "--json", str(path)])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.output)
    assert [r["ok"] for r in reports] == [True, True]
    assert reports[0]["warnings"] == []  # SendGrid takes the switch with each message
    assert reports[1]["warnings"] == [
        "tracking.clicks is set but resend has no per-message tracking switch; "
        "the domain's settings apply"
    ]
    table = runner.invoke(app, ["providers", "check", str(path)])
    assert table.exit_code == 0, table.output
    # the steps cell wraps: read its words without the table's borders
    words = " ".join(table.output.replace("│", " ").split())
    assert "warning: tracking.clicks is set but resend has no per-message" in words


def test_no_tracking_warning_without_tracking(tmp_path: Path, fakes: list[FakeServer]) -> None:
    path = write_campaign(tmp_path, [(fakes[2].provider_url(), fakes[2].url)])
    result = runner.invoke(app, ["providers", "check", "--json", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["warnings"] == []
