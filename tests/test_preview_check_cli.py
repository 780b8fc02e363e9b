"""``stamp preview`` and ``stamp check`` through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import webbrowser
from pathlib import Path

import pytest
from render_helpers import SECRET, parse, write_campaign
from typer.testing import CliRunner

from stampcli.cli.app import app

runner = CliRunner()
CSV = "email,first_name\nada@example.com,Ada\nbob@example.com,Bob\nnot-an-address,X\n"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)


def test_preview_text_to_terminal(tmp_path: Path) -> None:
    yml = write_campaign(tmp_path, csv=CSV)
    result = runner.invoke(app, ["preview", str(yml)])
    assert result.exit_code == 0, result.output
    assert "Subject: Ada, what's new" in result.output and "Hi Ada," in result.output
    assert SECRET not in result.output


def test_preview_row_and_email_and_formats(tmp_path: Path) -> None:
    yml = write_campaign(tmp_path, csv=CSV)
    out = tmp_path / "m.eml"
    result = runner.invoke(app, ["preview", str(yml), "--row", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert parse(out.read_bytes())["To"] == "bob@example.com"
    html = tmp_path / "m.html"
    result = runner.invoke(
        app, ["preview", str(yml), "--email", "BOB@example.com", "-o", str(html)]
    )
    assert result.exit_code == 0 and "Hi Bob," in html.read_text()
    result = runner.invoke(app, ["preview", str(yml), "--format", "eml"])
    assert result.exit_code == 0 and "Message-ID: <" in result.output
    result = runner.invoke(app, ["preview", str(yml), "--email", "nobody@example.com"])
    assert result.exit_code == 2 and "nobody@example.com" in result.output
    result = runner.invoke(app, ["preview", str(yml), "--row", "4"])
    assert result.exit_code == 2 and "row 4" in result.output


def test_preview_open_uses_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    png = (Path(__file__).resolve().parent.parent / "templates/images/logo.png").read_bytes()
    yml = write_campaign(
        tmp_path,
        template="<img src='cid:logo' alt='L'><a href='{{ unsubscribe_url }}'>u</a>",
        files={"logo.png": png},
        images={"logo": "logo.png"},
        csv=CSV,
    )
    out = tmp_path / "p.html"
    result = runner.invoke(app, ["preview", str(yml), "--open", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert opened == [out.resolve().as_uri()]
    assert "data:image/png;base64," in out.read_text()


def test_preview_open_without_a_browser_says_where_the_file_is(tmp_path: Path) -> None:
    yml = write_campaign(tmp_path, csv=CSV)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "BROWSER": "false",  # a "browser" that fails, as none does on a server
        "TMPDIR": str(temp),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "STAMP_UNSUBSCRIBE_SECRET": SECRET,
    }
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run(
        [sys.executable, "-m", "stampcli", "preview", str(yml), "--open"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "opened" not in done.stdout
    [page] = temp.glob("stamp-preview-*.html")
    assert f"is at {page.resolve()}" in done.stdout
    assert "Hi Ada," in page.read_text()


def test_check_clean_campaign(tmp_path: Path) -> None:
    yml = write_campaign(tmp_path, csv=CSV)
    result = runner.invoke(app, ["check", str(yml)])
    assert result.exit_code == 0, result.output
    assert "Checked 2 recipients" in result.output and "0 errors" in result.output
    assert "row 4" in result.output  # the rejected address is listed as a warning


def test_check_reports_errors_and_warnings(tmp_path: Path) -> None:
    template = (
        "<p>Hi {{ first_name }} {{ nickname }}</p><img src='https://acme.example/x.png'>"
        "<a href='http://192.0.2.7/offer'>offer</a><script>alert(1)</script>"
        "<form action='https://acme.example'></form><img src='cid:missing' alt='m'>"
        + "<p>"
        + "x" * (103 * 1024)
        + "</p>"
    )
    csv = 'email,first_name,nickname\nada@example.com,Ada,A\nbob@example.com,"Bo\nb",B\n'
    csv += "cy@example.com,Cy,\n"
    yml = write_campaign(tmp_path, template=template, csv=csv, subject="{{ first_name }}")
    (tmp_path / "list.csv").write_text(csv)
    result = runner.invoke(app, ["check", str(yml)])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "header injection: the Subject header" in out and "row 3" in out
    assert "no unsubscribe link in the body" in out
    assert "image without alt text: https://acme.example/x.png" in out
    assert "link to a raw IP address: http://192.0.2.7/offer" in out
    assert "contains a script" in out and "<form>" in out
    assert "over 102 KB" in out
    assert "cid:missing" in out


def test_check_missing_variable(tmp_path: Path) -> None:
    csv = "email,first_name\nada@example.com,Ada\n"
    yml = write_campaign(tmp_path, csv=csv, template="<p>{{ nickname }}</p>{{ unsubscribe_url }}")
    result = runner.invoke(app, ["check", str(yml)])
    assert result.exit_code == 2
    assert "missing variable 'nickname'" in result.output


def test_check_without_secret_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAMP_UNSUBSCRIBE_SECRET")
    yml = write_campaign(tmp_path, csv=CSV)
    result = runner.invoke(app, ["check", str(yml)])
    assert result.exit_code == 2 and "STAMP_UNSUBSCRIBE_SECRET" in result.output


def test_preview_eml_to_stdout_is_the_exact_bytes(tmp_path: Path) -> None:
    # The message bytes, CRLF and all; no terminal markup or ":name:" emoji replacement.
    yml = write_campaign(tmp_path, csv=CSV, subject="[Update] {{ first_name }} :smile: news")
    result = runner.invoke(app, ["preview", str(yml), "--format", "eml"])
    assert result.exit_code == 0, result.output
    raw = result.stdout_bytes
    assert b"\r\nSubject: [Update] Ada :smile: news\r\n" in raw
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert parse(raw)["Subject"] == "[Update] Ada :smile: news"
    text = runner.invoke(app, ["preview", str(yml)])
    assert "Subject: [Update] Ada :smile: news" in text.output
