"""Templates see columns by the names segments use; errors say which columns exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_helpers import ENV, SECRET, campaign, renderer, write_campaign
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.render.renderer import MissingVariable, Renderer, template_names

TEMPLATE = (
    "<p>Hi {{ first_name }} ({{ plan }}, {{ Plan }}, {{ contact['First Name'] }},"
    " {{ contact.first_name }}, {{ e_mail_opt_in }})</p>"
    '<a href="{{ unsubscribe_url }}">u</a>'
)


def test_normalised_and_original_names(tmp_path: Path) -> None:
    fields = {"First Name": "Alice", "Plan": "pro", "E-Mail opt-in": "yes"}
    for fast in (True, False):
        c = campaign(tmp_path / str(fast), template=TEMPLATE, subject="{{ first_name }}!")
        r = Renderer(c, env=ENV, fast=fast)
        for _ in range(3):
            m = r.render("alice@example.com", "alice@example.com", fields)
            assert "Hi Alice (pro, pro, Alice, Alice, yes)" in m.html
            assert m.subject == "Alice!"


def test_an_exact_header_keeps_its_name() -> None:
    # a header that already is the name wins, and of two the first, as in segments
    assert template_names(("first_name", "First Name", "Plan", "PLAN", "email")) == (
        ("plan", "Plan"),
    )
    assert template_names(("", "%%")) == ()


def test_missing_variable_lists_the_columns(tmp_path: Path) -> None:
    r = renderer(tmp_path, template="<p>{{ fist_name }}</p>{{ unsubscribe_url }}")
    with pytest.raises(MissingVariable) as info:
        r.render("a@example.com", "a@example.com", {"First Name": "A", "Plan": "pro"})
    assert info.value.columns == ("first_name", "plan")
    assert "the columns are: first_name, plan (did you mean 'first_name'?)" in str(info.value)


def test_check_with_spreadsheet_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    csv = "Email,First Name,Plan\nalice@example.com,Alice,pro\nbob@example.com,Bob,free\n"
    yml = write_campaign(
        tmp_path,
        csv=csv,
        template='<p>Hi {{ first_name }} ({{ plan }})</p><a href="{{ unsubscribe_url }}">u</a>',
        audience={"file": "list.csv", "segment": "first_name == 'Alice' and plan == 'pro'"},
    )
    runner = CliRunner()
    result = runner.invoke(app, ["check", str(yml)])
    assert result.exit_code == 0, result.output
    assert "Checked 1 recipient" in result.output
    yml = write_campaign(
        tmp_path,
        csv=csv,
        template='<p>Hi {{ nickname }}</p><a href="{{ unsubscribe_url }}">u</a>',
    )
    result = runner.invoke(app, ["check", str(yml)])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "missing variable 'nickname'" in out
    assert "the columns are: email, first_name, plan" in out
