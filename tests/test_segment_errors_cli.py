"""Rows a segment cannot evaluate: check, send and status say so; erring on all refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stampcli.cli.app import app

runner = CliRunner()
NAME = "seg-news"


def campaign(tmp_path: Path, segment: str) -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    (tmp_path / "list.csv").write_text(
        "email,first_name,seats\nann@x.test,Ann,3\nbob@x.test,Bob,4\ncy@x.test,Cy,9\n"
    )
    path = tmp_path / "campaign.yml"
    path.write_text(
        f"name: {NAME}\n"
        'from: "ACME News <news@acme.example>"\n'
        'subject: "{{ first_name }}, what is new"\n'
        "template: t.html\n"
        "transactional: true\n"
        f'audience:\n  file: list.csv\n  segment: "{segment}"\n'
        "providers:\n  - url: outbox://out\n"
    )
    return path


# Ann matches before the comparison; for Bob and Cy, text > number cannot be evaluated
PARTLY = "first_name == 'Ann' or seats > 5"


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_check_fails_on_rows_the_segment_cannot_evaluate(tmp_path: Path) -> None:
    result = invoke("check", str(campaign(tmp_path, PARTLY)))
    assert result.exit_code == 2, result.output
    assert "1 error" in result.stdout
    assert "could not be evaluated for 2 recipients" in result.stdout
    assert "first error" in result.stdout


def test_check_passes_a_segment_that_evaluates(tmp_path: Path) -> None:
    result = invoke("check", str(campaign(tmp_path, "seats | int > 3")))
    assert result.exit_code == 0, result.output
    assert "could not be evaluated" not in result.stdout


def test_send_and_status_show_the_count_and_the_first_error(tmp_path: Path) -> None:
    path = campaign(tmp_path, PARTLY)
    result = invoke("send", str(path), "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    events = lines(result.stdout)
    planned = next(e for e in events if e["event"] == "planned")
    assert planned["added"] == 1 and planned["segment_errors"] == 2
    assert planned["first_segment_error"]
    notices = [e["message"] for e in events if e["event"] == "notice"]
    assert any("could not be evaluated for 2 recipients" in m for m in notices)

    result = invoke("status", str(path))
    assert result.exit_code == 0, result.output
    assert "could not be evaluated for 2 recipients" in result.stdout
    status = json.loads(invoke("status", str(path), "--json").stdout)
    assert status["segment_errors"] == 2 and status["first_segment_error"]

    # a rerun does not read the unchanged audience again, and status still knows
    again = invoke("send", str(path), "--yes", "--log-format", "json")
    assert again.exit_code == 0, again.output
    assert json.loads(invoke("status", str(path), "--json").stdout)["segment_errors"] == 2


def test_a_segment_that_errs_on_every_row_refuses_to_send(tmp_path: Path) -> None:
    path = campaign(tmp_path, "seats > 5")
    result = invoke("send", str(path), "--yes", "--log-format", "json")
    assert result.exit_code == 2, result.output
    assert "cannot be evaluated for any of the 3 recipients" in result.stderr
    assert "first error" in result.stderr
    assert not list((tmp_path / "out").glob("*.eml"))
    status = json.loads(invoke("status", str(path), "--json").stdout)
    assert status["total"] == 0 and status["last_run"]["reason"] == "refused"


def test_the_confirmation_shows_the_segment_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stampcli.cli.send_cmd.is_interactive", lambda: True)
    result = runner.invoke(app, ["send", str(campaign(tmp_path, PARTLY))], input="n\n")
    assert result.exit_code == 0, result.output
    assert "could not be evaluated for 2 recipients" in result.output
    assert "Send 1 messages now?" in result.output
