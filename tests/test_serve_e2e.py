"""A real send through the local SendGrid fake, then its events through ``stamp serve``:
signed as SendGrid signs them, matched back to the ledger rows the send wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from inbound_helpers import ecdsa_key, sendgrid_headers
from provider_fakes import SendGridFake
from serve_helpers import event_rows, running
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.server.run import build
from stampcli.store.db import Store

PEOPLE = [f"u{i}@example.com" for i in range(4)]


def test_events_of_a_real_send_are_matched_end_to_end(tmp_path: Path) -> None:
    private, public = ecdsa_key()
    db = tmp_path / "stamp.db"
    with SendGridFake() as fake:
        (tmp_path / "t.html").write_text("<p>Hi {{ first_name }}</p>")
        (tmp_path / "list.csv").write_text(
            "email,first_name\n" + "".join(f"{a},U\n" for a in PEOPLE)
        )
        campaign = tmp_path / "campaign.yml"
        campaign.write_text(
            "name: news\n"
            'from: "News <news@acme.example>"\n'
            'subject: "Hi"\n'
            "template: t.html\n"
            "transactional: true\n"
            "audience:\n  file: list.csv\n"
            "providers:\n"
            f'  - url: "{fake.provider_url()}"\n'
            f'    endpoint: "{fake.url}"\n'
        )
        result = CliRunner().invoke(app, ["send", str(campaign), "--yes", "--db", str(db)])
        assert result.exit_code == 0, result.output
        accepted = {a: fake.accepted[a][0] for a in PEOPLE}
    now = int(time.time())
    events = []
    for n, address in enumerate(PEOPLE):
        got = accepted[address]
        events.append(
            {
                "email": address,
                "timestamp": now,
                "event": "bounce" if n == 0 else "delivered",
                "type": "bounce",
                "reason": "550 5.1.1 no such user",
                "sg_event_id": f"ev-{n}",
                "sg_message_id": f"{got.message_id}.filterdrecv-5645d9c87f-mwh5k-1-{n}",
                **got.fields["personalization"]["custom_args"],
            }
        )
    body = json.dumps(events).encode()
    built = build(db, {"SENDGRID_WEBHOOK_PUBLIC_KEY": public})
    with running(built) as url:
        answer = httpx.post(
            f"{url}/webhooks/sendgrid",
            content=body,
            headers=sendgrid_headers(private, body, str(now)),
        )
        assert answer.status_code == 200, answer.text
    rows = event_rows(db)
    assert len(rows) == 4
    assert all(r["ledger_id"] is not None and r["matched_by"] == "metadata" for r in rows)
    assert {r["recipient"]: r["type"] for r in rows}[PEOPLE[0]] == "bounced"
    with Store(db) as store:
        assert store.suppressions.get(PEOPLE[0]) is not None  # the hard bounce suppressed it
        assert store.suppressions.get(PEOPLE[1]) is None
