"""``stamp send``, ``status`` and ``retry`` through the CLI: exit codes, JSON lines, --yes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from provider_fakes import ResendFake, SendGridFake
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.store import campaigns, ledger, locks, testing
from stampcli.store.db import Store

runner = CliRunner()
NAME = "november-news"


@pytest.fixture
def campaign_file(tmp_path: Path) -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    (tmp_path / "list.csv").write_text(
        "email,first_name\nann@x.test,Ann\nbob@x.test,Bob\ncy@x.test,Cy\nnot-an-address,X\n"
    )
    path = tmp_path / "campaign.yml"
    path.write_text(
        f"name: {NAME}\n"
        'from: "ACME News <news@acme.example>"\n'
        'subject: "{{ first_name }}, what is new"\n'
        "template: t.html\n"
        "transactional: true\n"
        "audience:\n  file: list.csv\n"
        "providers:\n  - url: outbox://out\n"
    )
    return path


def db(tmp_path: Path) -> Store:
    return Store(tmp_path / "stamp.db")


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_send_without_a_terminal_needs_yes(campaign_file: Path) -> None:
    result = invoke("send", str(campaign_file))
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert not (campaign_file.parent / "stamp.db").exists()  # nothing planned or sent


def test_retry_needs_to_know_what(campaign_file: Path) -> None:
    result = invoke("retry", str(campaign_file), "--yes")
    assert result.exit_code == 2 and "--failed" in result.stderr


def test_a_locked_campaign_exits_5_naming_the_holder(campaign_file: Path, tmp_path: Path) -> None:
    with db(tmp_path) as store:
        cid = campaigns.ensure(store, NAME).id
        locks.acquire(store, cid, "mailhost.invalid:4242:beef")
    result = invoke("send", str(campaign_file), "--yes", "--log-format", "json")
    assert result.exit_code == 5
    assert "mailhost.invalid:4242:beef" in result.stderr


def test_a_paused_campaign_exits_6(campaign_file: Path, tmp_path: Path) -> None:
    with db(tmp_path) as store:
        campaigns.pause(store, campaigns.ensure(store, NAME).id, "hard bounces reached 7%")
    result = invoke("send", str(campaign_file), "--yes", "--log-format", "json")
    assert result.exit_code == 6
    assert "hard bounces reached 7%" in result.stderr and "--unpause" in result.stderr


def test_changed_content_exits_2_and_names_the_flag(campaign_file: Path, tmp_path: Path) -> None:
    with db(tmp_path) as store:
        row = campaigns.ensure(store, NAME)
        campaigns.check_content(store, row, "an older hash", allow_changed=False)
        ledger.insert(store, row.id, [ledger.NewRow("ann@x.test", "ann@x.test", "{}")])
        (r,) = ledger.read_pending(store, row.id, after_id=0, limit=1)
        ledger.claim(store, [ledger.Claim(r.id, "<m>")])
        ledger.record(store, [ledger.Outcome(r.id, "sent", provider="outbox")])
    result = invoke("send", str(campaign_file), "--yes", "--log-format", "json")
    assert result.exit_code == 2 and "--allow-changed" in result.stderr


def test_status_of_a_campaign_never_sent(campaign_file: Path) -> None:
    result = invoke("status", str(campaign_file), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["campaign"] == NAME and data["exists"] is False
    result = invoke("status", str(campaign_file))
    assert result.exit_code == 0 and "not sent yet" in result.stdout


def test_status_reports_counts_errors_and_lock(campaign_file: Path, tmp_path: Path) -> None:
    with db(tmp_path) as store:
        cid = campaigns.ensure(store, NAME).id
        keys = ["a@x.test", "b@x.test", "c@x.test"]
        ledger.insert(store, cid, [ledger.NewRow(k, k, "{}") for k in keys])
        rows = ledger.read_pending(store, cid, after_id=0, limit=10)
        ledger.claim(store, [ledger.Claim(r.id, f"<{r.id}>") for r in rows[:2]])
        ledger.record(
            store,
            [
                ledger.Outcome(rows[0].id, "sent", provider="smtp"),
                ledger.Outcome(rows[1].id, "failed", provider="smtp", last_error="550 5.1.1 gone"),
            ],
        )
        locks.acquire(store, cid, "mailhost.invalid:1:ab")
        run = campaigns.start_run(store, cid)
        campaigns.finish_run(
            store,
            run,
            3,
            {
                "reason": "limit",
                "providers": [
                    {"name": "smtp", "state": "closed", "sent": 1, "failovers": 0},
                    {"name": "api", "state": "open", "failed": 4, "failovers": 4},
                ],
            },
        )
    data = json.loads(invoke("status", str(campaign_file), "--json").stdout)
    assert data["counts"]["sent"] == 1 and data["counts"]["failed"] == 1
    assert data["left"] == 1 and data["total"] == 3
    assert data["per_provider"] == {"smtp": {"failed": 1, "sent": 1}}
    assert data["last_errors"][0]["error"] == "550 5.1.1 gone"
    assert data["lock"]["owner"] == "mailhost.invalid:1:ab"
    assert data["last_run"]["exit_code"] == 3 and data["last_run"]["providers"][0]["name"] == "smtp"
    text = invoke("status", str(campaign_file)).stdout
    assert "550 5.1.1 gone" in text and "mailhost.invalid:1:ab" in text and "exit 3" in text
    assert "api: open, 4 failed, 4 failovers" in text and "smtp: closed, 1 sent" in text


needs_router = pytest.mark.skipif(
    not (Path(__file__).parents[1] / "stampcli/delivery/router.py").exists(),
    reason="the router has not landed yet",
)


@needs_router
def test_send_json_lines_and_rerun_sends_nothing(campaign_file: Path, tmp_path: Path) -> None:
    result = invoke("send", str(campaign_file), "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    kinds = [line["event"] for line in lines]
    # the first send creates the store, and says so before anything else
    assert kinds[0] == "notice" and lines[0]["message"].startswith("NEW STORE: ")
    assert kinds[1] == "planned" and "start" in kinds and kinds[-1] == "summary"
    assert "progress" not in kinds  # no line per message or tick
    planned = lines[1]
    assert planned["added"] == 3 and planned["rejected"] == 1
    summary = lines[-1]
    assert summary["exit_code"] == 0 and summary["counts"]["sent"] == 3
    assert len(list((tmp_path / "out").rglob("*.eml"))) == 3
    again = invoke("send", str(campaign_file), "--yes", "--log-format", "json")
    assert again.exit_code == 0
    assert json_lines(again.stdout)[-1]["run_counts"] == {}


@needs_router
def test_limit_stops_with_work_left(campaign_file: Path) -> None:
    result = invoke("send", str(campaign_file), "--yes", "--limit", "2", "--log-format", "json")
    assert result.exit_code == 3
    summary = json_lines(result.stdout)[-1]
    assert summary["reason"] == "limit" and summary["counts"]["sent"] == 2
    assert summary["counts"]["pending"] == 1


@needs_router
def test_dry_run_leaves_the_real_campaign_alone(
    campaign_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # a dry run starts afresh each time
        result = invoke("send", str(campaign_file), "--dry-run", "--log-format", "json")
        assert result.exit_code == 0, result.output
        assert json_lines(result.stdout)[-1]["counts"]["sent"] == 3
    assert len(list((tmp_path / "outbox-dry-run").rglob("*.eml"))) == 3
    assert not (tmp_path / "out").exists()
    status = json.loads(invoke("status", str(campaign_file), "--json").stdout)
    assert status["exists"] is False


@needs_router
def test_retry_unknown_sends_them_again(campaign_file: Path, tmp_path: Path) -> None:
    assert invoke("send", str(campaign_file), "--yes", "--log-format", "json").exit_code == 0
    with db(tmp_path) as store:
        testing.set_ledger(
            store, campaigns.ensure(store, NAME).id, key="bob@x.test", state="unknown"
        )
    status = json.loads(invoke("status", str(campaign_file), "--json").stdout)
    assert status["counts"]["unknown"] == 1
    result = invoke("retry", str(campaign_file), "--unknown", "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    assert lines[0] == {"event": "retry", "states": ["unknown"], "moved": 1}
    assert lines[-1]["run_counts"] == {"sent": 1}


def test_bulk_campaign_without_unsubscribe_is_refused(campaign_file: Path) -> None:
    campaign_file.write_text(campaign_file.read_text().replace("transactional: true\n", ""))
    result = invoke("send", str(campaign_file), "--yes")
    assert result.exit_code == 2
    assert "unsubscribe" in result.output
    assert not (campaign_file.parent / "out").exists()


@needs_router
def test_retry_unknown_right_after_a_crash_resends_the_rows_left_sending(
    campaign_file: Path, tmp_path: Path
) -> None:
    assert invoke("send", str(campaign_file), "--yes", "--log-format", "json").exit_code == 0
    with db(tmp_path) as store:  # a run died with bob in flight, its lock left behind
        cid = campaigns.ensure(store, NAME).id
        testing.set_ledger(store, cid, key="bob@x.test", state="sending")
        locks.acquire(store, cid, "mailhost.invalid:1:ab", stale_after=0.0)
        testing.age_lock(store, cid, 3600)
    result = invoke("retry", str(campaign_file), "--unknown", "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    assert lines[0] == {"event": "retry", "states": ["unknown"], "moved": 1}
    assert lines[-1]["run_counts"] == {"sent": 1}
    assert lines[-1]["counts"]["unknown"] == 0


@needs_router
def test_retry_declined_at_the_prompt_leaves_unknown_rows_alone(
    campaign_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("send", str(campaign_file), "--yes", "--log-format", "json").exit_code == 0
    with db(tmp_path) as store:
        testing.set_ledger(
            store, campaigns.ensure(store, NAME).id, key="bob@x.test", state="unknown"
        )
    monkeypatch.setattr("stampcli.cli.send_cmd.is_interactive", lambda: True)
    result = runner.invoke(app, ["retry", str(campaign_file), "--unknown"], input="n\n")
    assert result.exit_code == 0, result.output
    assert "Send 1 messages now?" in result.output and "nothing sent" in result.output
    assert f"store: {tmp_path / 'stamp.db'}" in result.output  # which ledger is asked about
    status = json.loads(invoke("status", str(campaign_file), "--json").stdout)
    assert status["counts"]["unknown"] == 1 and status["counts"]["pending"] == 0


def test_the_confirmation_shows_a_rendered_subject_and_every_count(
    campaign_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(listing.read_text() + "ANN@x.test,Ann again\n")
    monkeypatch.setattr("stampcli.cli.send_cmd.is_interactive", lambda: True)
    result = runner.invoke(app, ["send", str(campaign_file)], input="n\n")
    assert result.exit_code == 0, result.output
    assert "subject: Ann, what is new (for ann@x.test;" in result.output
    assert "{{ first_name }}, what is new" in result.output  # the template, named as such
    assert "1 rejected rows, 1 duplicates" in result.output
    assert "Send 3 messages now?" in result.output and "nothing sent" in result.output


# --------------------------------------------------------------------------- tracking


def tracked_campaign(tmp_path: Path, providers: str, tracking: str = "") -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    (tmp_path / "list.csv").write_text("email,first_name\nann@x.test,Ann\nbob@x.test,Bob\n")
    path = tmp_path / "campaign.yml"
    path.write_text(
        "name: tracked\n"
        'from: "ACME News <news@acme.example>"\n'
        "subject: hi\n"
        "template: t.html\n"
        "transactional: true\n"
        "audience:\n  file: list.csv\n" + tracking + "providers:\n" + providers
    )
    return path


def warnings_in(stdout: str) -> list[str]:
    """The warnings but the one every first send of a store gives (NEW STORE: ...)."""
    return [
        line["message"]
        for line in json_lines(stdout)
        if line["event"] == "notice"
        and line["level"] == "warning"
        and not line["message"].startswith("NEW STORE: ")
    ]


@needs_router
def test_a_tracking_switch_the_provider_cannot_honour_is_a_warning(tmp_path: Path) -> None:
    path = tracked_campaign(tmp_path, "  - url: outbox://out\n", "tracking: {opens: true}\n")
    result = invoke("send", str(path), "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    assert warnings_in(result.stdout) == [
        "tracking.opens is set but outbox only writes files; nothing is tracked"
    ]
    kinds = [line["event"] for line in json_lines(result.stdout)]
    assert kinds.index("notice") < kinds.index("start")  # said before sending
    assert json_lines(result.stdout)[-1]["counts"]["sent"] == 2  # and the send goes on
    rich = invoke("send", str(path), "--yes", "--log-format", "rich")
    assert rich.exit_code == 0, rich.output
    assert "warning: tracking.opens is set but outbox only writes files" in rich.stdout


@needs_router
def test_no_tracking_warning_when_tracking_is_unset(tmp_path: Path) -> None:
    path = tracked_campaign(tmp_path, "  - url: outbox://out\n")
    result = invoke("send", str(path), "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    assert warnings_in(result.stdout) == []
    rich = invoke("send", str(path), "--yes", "--log-format", "rich")
    assert "tracking" not in rich.stdout


@needs_router
def test_only_the_provider_without_a_tracking_switch_is_named(tmp_path: Path) -> None:
    with SendGridFake() as sendgrid, ResendFake() as resend:
        providers = (
            f'  - url: "{sendgrid.provider_url()}"\n    endpoint: "{sendgrid.url}"\n'
            f'  - url: "{resend.provider_url()}"\n    endpoint: "{resend.url}"\n'
            "    name: backup\n"
        )
        path = tracked_campaign(tmp_path, providers, "tracking: {opens: false, clicks: false}\n")
        result = invoke("send", str(path), "--yes", "--log-format", "json")
        assert result.exit_code == 0, result.output
        assert warnings_in(result.stdout) == [
            "tracking.opens and tracking.clicks are set but backup (resend://) has no "
            "per-message tracking switch; the domain's settings apply"
        ]
        # SendGrid honours the switches: they travel with every message
        body = sendgrid.accepted["ann@x.test"][0].fields
        assert body["tracking_settings"]["open_tracking"] == {"enable": False}
        assert not resend.accepted
