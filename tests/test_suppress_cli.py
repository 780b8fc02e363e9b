"""`stamp suppress ...` and `stamp unsubscribe verify` through the real typer app."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from suppression_fakes import KEY, fake_api, sendgrid_state
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.compliance.tokens import make_token

FIXTURES = Path(__file__).parent / "fixtures" / "suppressions"
SECRET = "cli-test-secret-0123456789abcdef"
runner = CliRunner()


def stamp(*args: str, env: dict[str, str] | None = None) -> object:
    return runner.invoke(app, list(args), env=env)


def listed() -> list[dict[str, object]]:
    result = runner.invoke(app, ["suppress", "list", "--json"])
    assert result.exit_code == 0, result.output
    data: list[dict[str, object]] = json.loads(result.stdout)
    return data


def test_add_list_remove_with_scopes() -> None:
    r = runner.invoke(app, ["suppress", "add", "Ann@Example.COM", "bo@example.com"])
    assert r.exit_code == 0 and "2 address(es)" in r.stdout
    r = runner.invoke(
        app, ["suppress", "add", "cy@example.com", "--reason", "complaint", "--list", "news"]
    )
    assert r.exit_code == 0
    rows = {(d["email"], d["reason"], d["scope"]) for d in listed()}
    assert rows == {
        ("ann@example.com", "manual", None),
        ("bo@example.com", "manual", None),
        ("cy@example.com", "complaint", "news"),
    }
    text = runner.invoke(app, ["suppress", "list", "--reason", "complaint"]).stdout
    assert "cy@example.com" in text and "ann@example.com" not in text and "list:news" in text
    r = runner.invoke(app, ["suppress", "remove", "ANN@example.com", "nobody@example.com"])
    assert r.exit_code == 0 and "removed 1" in r.stdout
    assert {d["email"] for d in listed()} == {"bo@example.com", "cy@example.com"}


def test_bad_address_or_reason_changes_nothing() -> None:
    r = runner.invoke(app, ["suppress", "add", "ok@example.com", "not-an-address"])
    assert r.exit_code == 2 and "not-an-address" in r.stderr
    r = runner.invoke(app, ["suppress", "add", "ok@example.com", "--reason", "bounced"])
    assert r.exit_code == 2 and "unknown suppression reason" in r.stderr
    assert listed() == []


def test_list_and_export_do_not_create_a_store() -> None:
    assert listed() == []
    r = runner.invoke(app, ["suppress", "export"])
    assert r.exit_code == 0 and r.stdout.strip() == "email,reason,source,scope,detail,created_at"
    assert not Path(os.environ["STAMP_DB"]).exists()


def test_import_reports_format_counts_and_skipped_rows() -> None:
    r = runner.invoke(app, ["suppress", "import", str(FIXTURES / "sendgrid_spam_reports.csv")])
    assert r.exit_code == 0, r.output
    assert "sendgrid format, 2 row(s): 1 new" in r.stdout
    assert "row 3: no @" in r.stderr
    assert [(d["email"], d["reason"], d["source"]) for d in listed()] == [
        ("complainer@example.com", "complaint", "import:sendgrid_spam_reports.csv")
    ]
    again = runner.invoke(app, ["suppress", "import", str(FIXTURES / "sendgrid_spam_reports.csv")])
    assert "0 new suppression(s), 1 already there" in again.stdout
    missing = runner.invoke(app, ["suppress", "import", "nope.csv"])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_export_csv_and_xlsx_round_trip(tmp_path: Path) -> None:
    runner.invoke(app, ["suppress", "import", str(FIXTURES / "postmark_suppressions.csv")])
    r = runner.invoke(app, ["suppress", "export"])
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 4 and {row["reason"] for row in rows} == {
        "unsubscribed",
        "hard_bounce",
        "complaint",
        "manual",
    }
    out = tmp_path / "s.xlsx"
    r = runner.invoke(app, ["suppress", "export", "--output", str(out)])
    assert r.exit_code == 0 and "wrote 4" in r.stdout
    other_db = str(tmp_path / "other.db")
    r = runner.invoke(app, ["suppress", "import", str(out), "--db", other_db])
    assert r.exit_code == 0 and "stamp format" in r.stdout and "4 new" in r.stdout
    r = runner.invoke(app, ["suppress", "export", "--format", "xlsx"])
    assert r.exit_code == 2 and "--output" in r.stderr


def _campaign(tmp_path: Path, endpoint: str, key: str = KEY) -> Path:
    (tmp_path / "t.html").write_text("<p>hi</p>")
    (tmp_path / "l.csv").write_text("email\na@example.com\n")
    path = tmp_path / "campaign.yml"
    path.write_text(
        "name: news\n"
        "from: News <news@acme.example>\n"
        "subject: Hi\n"
        "template: t.html\n"
        "audience:\n  file: l.csv\n"
        "providers:\n"
        f"  - url: sendgrid://{key}\n"
        f"    endpoint: {endpoint}\n"
        "  - url: outbox://out\n"
    )
    return path


def test_pull_merges_and_reports(tmp_path: Path) -> None:
    with fake_api(sendgrid_state(3)) as base:
        r = runner.invoke(app, ["suppress", "pull", str(_campaign(tmp_path, base))])
    assert r.exit_code == 0, r.output
    assert "sendgrid: 8 fetched" in r.stdout and "outbox: skipped" in r.stdout
    assert "bounce2@example.com" in {d["email"] for d in listed()}


def test_pull_failure_exits_4_without_the_key(tmp_path: Path) -> None:
    key = "sg-secret-key-that-must-not-leak"
    with fake_api(sendgrid_state(1)) as base:
        r = runner.invoke(app, ["suppress", "pull", str(_campaign(tmp_path, base, key))])
    assert r.exit_code == 4
    assert "401" in r.stderr and key not in r.output and key not in r.stderr


@pytest.mark.parametrize("secret_env", ["STAMP_UNSUBSCRIBE_SECRET", "MY_SECRET"])
def test_unsubscribe_verify(secret_env: str) -> None:
    env = {secret_env: SECRET}
    token = make_token(SECRET, "ann@example.com", "november-news")
    extra = [] if secret_env == "STAMP_UNSUBSCRIBE_SECRET" else ["--secret-env", secret_env]
    r = runner.invoke(app, ["unsubscribe", "verify", token, *extra], env=env)
    assert r.exit_code == 0
    assert r.stdout.splitlines() == ["email: ann@example.com", "campaign: november-news"]
    r = runner.invoke(app, ["unsubscribe", "verify", token, "--json", *extra], env=env)
    assert json.loads(r.stdout) == {"email": "ann@example.com", "campaign": "november-news"}
    forged = make_token("some-other-secret-0123456789", "ann@example.com", "november-news")
    r = runner.invoke(app, ["unsubscribe", "verify", forged, *extra], env=env)
    assert r.exit_code == 2 and "bad unsubscribe token" in r.stderr and "forged" in r.stderr
    r = runner.invoke(app, ["unsubscribe", "verify", "garbage", *extra], env=env)
    assert r.exit_code == 2


def test_unsubscribe_verify_needs_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAMP_UNSUBSCRIBE_SECRET", raising=False)
    r = runner.invoke(app, ["unsubscribe", "verify", "a.b"])
    assert r.exit_code == 2 and "STAMP_UNSUBSCRIBE_SECRET is not set" in r.stderr
