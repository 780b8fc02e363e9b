"""`stamp send` through a dead provider and a healthy one: failover shows in the JSON log."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from typer.testing import CliRunner

from stampcli.cli.app import app


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_failover_to_the_next_provider_is_counted(tmp_path: Path) -> None:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    rows = "\n".join(f"u{i}@example.com,U{i}" for i in range(30))
    (tmp_path / "list.csv").write_text("email,first_name\n" + rows + "\n")
    campaign = tmp_path / "campaign.yml"
    campaign.write_text(
        "name: failover\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi {{ first_name }}"\n'
        "template: t.html\n"
        "transactional: true\n"
        "audience:\n  file: list.csv\n"
        "throttle:\n  backoff: 10ms\n"
        "providers:\n"
        f"  - url: smtp://127.0.0.1:{closed_port()}?tls=none\n"
        "    name: relay\n"
        "    timeout: {connect: 2s, read: 2s}\n"
        "  - url: outbox://out\n"
        "    name: backup\n"
    )
    result = CliRunner().invoke(
        app,
        ["send", str(campaign), "--yes", "--log-format", "json", "--db", str(tmp_path / "s.db")],
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["counts"]["sent"] == 30
    assert summary["per_provider"]["backup"]["sent"] == 30
    assert summary["per_provider"]["relay"].get("failovers", 0) >= 1
    assert any(e["event"] == "provider" and e["provider"] == "relay" for e in events)
    assert len(list((tmp_path / "out").rglob("*.eml"))) == 30
