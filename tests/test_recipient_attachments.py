"""``attachments: ["invoices/{{ customer_id }}.pdf"]``: each recipient's own file, confined."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.config import load_campaign
from stampcli.errors import ConfigError
from stampcli.service.preview import check_campaign
from stampcli.store import campaigns, ledger
from stampcli.store.db import Store

runner = CliRunner()
PDF = b"%PDF-1.4\n% invoice for "


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    (tmp_path / "secret.pdf").write_bytes(b"outside")
    folder = tmp_path / "c"
    (folder / "invoices").mkdir(parents=True)
    (folder / "terms.pdf").write_bytes(b"%PDF-1.4 terms")
    for cid in ("A1", "B2"):
        (folder / "invoices" / f"{cid}.pdf").write_bytes(PDF + cid.encode())
    (folder / "t.html").write_text("<p>Hello {{ first_name }}, your invoice is attached.</p>")
    (folder / "list.csv").write_text(
        "email,first_name,customer_id\n"
        "ann@x.test,Ann,A1\nbob@x.test,Bob,B2\ncy@x.test,Cy,C3\n"
        "dan@x.test,Dan,../../secret\neve@x.test,Eve,\n"
    )
    path = folder / "campaign.yml"
    path.write_text(
        "name: invoices\n"
        'from: "ACME Billing <billing@acme.example>"\n'
        'subject: "Your invoice"\n'
        "template: t.html\n"
        "transactional: true\n"
        "attachments:\n"
        "  - terms.pdf\n"
        '  - "{% if customer_id %}invoices/{{ customer_id }}.pdf{% endif %}"\n'
        "audience:\n  file: list.csv\n"
        "providers:\n  - url: outbox://out\n"
    )
    return path


def _attachments(eml: Path) -> dict[str, bytes]:
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    return {
        part.get_filename(): part.get_content()
        for part in msg.iter_attachments()  # type: ignore[attr-defined]
    }


def test_each_recipient_gets_their_own_file_and_a_missing_one_fails_that_row(
    campaign_file: Path,
) -> None:
    folder = campaign_file.parent
    result = runner.invoke(app, ["send", str(campaign_file), "--yes"])
    assert result.exit_code != 0  # two recipients failed
    by_to = {}
    for eml in (folder / "out" / "invoices").glob("*.eml"):
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        by_to[str(msg["To"])] = _attachments(eml)
    assert by_to["ann@x.test"] == {"terms.pdf": b"%PDF-1.4 terms", "A1.pdf": PDF + b"A1"}
    assert by_to["bob@x.test"]["B2.pdf"] == PDF + b"B2"
    assert by_to["eve@x.test"] == {"terms.pdf": b"%PDF-1.4 terms"}  # no id: no own file
    assert "cy@x.test" not in by_to and "dan@x.test" not in by_to
    store = Store(folder.parent / "stamp.db")  # conftest: STAMP_DB in tmp_path
    cid = campaigns.ensure(store, "invoices").id
    rows = {r.key: f"{r.state} {r.last_error or ''}" for r in ledger.rows(store, cid)}
    assert rows["cy@x.test"].startswith("failed ") and "no such file" in rows["cy@x.test"]
    assert rows["dan@x.test"].startswith("failed ") and "outside" in rows["dan@x.test"]
    assert rows["ann@x.test"].startswith("sent")


def test_check_groups_the_recipients_without_their_file(
    campaign_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = load_campaign(campaign_file)
    result = check_campaign(campaign, workers=0).as_dict()
    (group,) = [e for e in result["errors"] if e["code"] == "missing-attachment"]
    assert group["count"] == 2 and group["rows"] == [4, 5]
    assert "invoices/{{ customer_id }}.pdf" in group["message"]


def test_the_loader_key_cannot_be_written_by_hand(campaign_file: Path) -> None:
    text = campaign_file.read_text() + "attachment_templates: ['/etc/passwd']\n"
    campaign_file.write_text(text)
    with pytest.raises(ConfigError, match="attachment_templates: not a campaign key"):
        load_campaign(campaign_file)
