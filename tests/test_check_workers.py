"""``stamp check`` renders a big audience in the render workers, with the same report."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_helpers import ENV, write_campaign

from stampcli.config import load_campaign
from stampcli.service.check_run import SEQUENTIAL_UP_TO
from stampcli.service.preview import check_campaign

TEMPLATE = """<html><body><p>Hi {{ first_name }},</p>
{% if plan == 'pro' %}<p>{{ pro_perk }}</p>{% endif %}
{% for i in range(n | int) %}.{% endfor %}
<img src="https://acme.example/logo.png">
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""


def _csv(rows: int, *, huge_at: int | None = None) -> str:
    lines = ["email,first_name,plan,n"]
    for i in range(rows):
        plan = "pro" if i % 97 == 0 else "free"
        n = 10**6 if i == huge_at else 2
        lines.append(f"user{i}@example.com,User {i},{plan},{n}")
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():  # the render workers inherit the environment
        monkeypatch.setenv(name, value)


def _reports(tmp_path: Path, csv: str) -> tuple[dict[str, object], dict[str, object]]:
    path = write_campaign(tmp_path / "c", template=TEMPLATE, csv=csv)
    campaign = load_campaign(path, env=ENV)
    pooled = check_campaign(campaign, workers=2).as_dict()
    alone = check_campaign(campaign, workers=0).as_dict()
    return pooled, alone


def test_pooled_check_reports_what_a_check_in_one_process_does(tmp_path: Path) -> None:
    pooled, alone = _reports(tmp_path, _csv(SEQUENTIAL_UP_TO + 700))
    assert pooled == alone
    assert pooled["recipients"] == SEQUENTIAL_UP_TO + 700
    errors = {e["code"]: e for e in pooled["errors"]}  # type: ignore[attr-defined]
    missing = errors["missing-variable"]
    assert missing["count"] == len(range(0, SEQUENTIAL_UP_TO + 700, 97))
    assert missing["rows"][:2] == [2, 99]  # spreadsheet rows, in audience order
    assert any(w["code"] == "img-alt" for w in pooled["warnings"])  # type: ignore[attr-defined]


def test_a_template_error_stops_the_pooled_check_at_the_same_row(tmp_path: Path) -> None:
    pooled, alone = _reports(tmp_path, _csv(SEQUENTIAL_UP_TO + 500, huge_at=2300))
    assert pooled == alone
    assert pooled["unchecked"] == SEQUENTIAL_UP_TO + 500 - 2301
    assert pooled["rendered"] == 2300 - len(range(0, 2300, 97))  # the pro rows lack pro_perk
