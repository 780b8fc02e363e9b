"""Crash safety end to end: ``stamp send`` subprocesses against a recording SMTP server.

A run killed with SIGKILL part-way and run again delivers every recipient
exactly once, as the server counts, apart from the rows reported ``unknown``
(in flight at the kill: delivered at most once). A second run of the same
campaign is refused with exit 5 while the first holds the lock, and SIGINT
stops a run with exit 3 and no ``unknown`` row.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_server import SMTPTestServer

N = 1500
RATE = "400/s"  # slow enough to stop part-way, fast enough for a quick test


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(tls="none") as srv:
        yield srv


def addresses() -> list[str]:
    return [f"user{i}@example.test" for i in range(N)]


def write_campaign(tmp_path: Path, url: str, rate: str = RATE) -> Path:
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    rows = "\n".join(f"{a},U{i}" for i, a in enumerate(addresses()))
    (tmp_path / "list.csv").write_text("email,first_name\n" + rows + "\n")
    path = tmp_path / "campaign.yml"
    path.write_text(
        "name: kill-test\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi {{ first_name }}"\n'
        "template: t.html\n"
        "transactional: true\n"
        "audience:\n  file: list.csv\n"
        f"providers:\n  - url: {json.dumps(url)}\n    rate: {rate}\n"
    )
    return path


def stamp(tmp_path: Path, campaign: Path, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "stampcli", "send", str(campaign), "--yes"]
    args += ["--log-format", "json", "--db", str(tmp_path / "stamp.db"), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(server: SMTPTestServer, accepted: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while server.accepted < accepted:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.01)


def ledger_states(tmp_path: Path) -> dict[str, str]:
    with sqlite3.connect(tmp_path / "stamp.db") as conn:
        return dict(conn.execute("SELECT key, state FROM ledger").fetchall())


def summary_of(out: str) -> dict[str, object]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["event"] == "summary", out
    return lines[-1]


def test_sigkill_then_resume_delivers_everyone_once(tmp_path: Path, server: SMTPTestServer) -> None:
    campaign = write_campaign(tmp_path, server.url("smtp", tls="none"))
    first = stamp(tmp_path, campaign)
    wait_for(server, 400, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    at_kill = ledger_states(tmp_path)
    assert 0 < list(at_kill.values()).count("sent") < N

    second = stamp(tmp_path, campaign)
    out, err = second.communicate(timeout=60)
    summary = summary_of(out)
    states = ledger_states(tmp_path)
    unknown = {k for k, s in states.items() if s == "unknown"}
    assert second.returncode == (1 if unknown else 0), err
    assert summary["counts"] == {**dict.fromkeys(summary["counts"], 0), "sent": N - len(unknown),
                                 "unknown": len(unknown)}  # fmt: skip
    # in flight at the kill: `sending` then, `unknown` now, and never sent twice
    assert unknown == {k for k, s in at_kill.items() if s == "sending"}
    for address in addresses():
        if address in unknown:
            assert server.count(address) <= 1, address
        else:
            assert server.count(address) == 1, address
    assert server.accepted <= N


def test_second_run_is_locked_out_and_sigint_stops_cleanly(
    tmp_path: Path, server: SMTPTestServer
) -> None:
    # slower: the first run must still be sending when the second one has started up
    campaign = write_campaign(tmp_path, server.url("smtp", tls="none"), rate="100/s")
    first = stamp(tmp_path, campaign)
    wait_for(server, 50, first)
    second = stamp(tmp_path, campaign)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 5, err
    assert "another run" in err

    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 3, err
    summary = summary_of(out)
    assert summary["reason"] == "stopped"
    states = ledger_states(tmp_path)
    values = list(states.values())
    assert values.count("unknown") == 0 and values.count("sending") == 0
    sent = {k for k, s in states.items() if s == "sent"}
    assert 50 <= len(sent) < N
    # what the ledger calls sent is exactly what the server accepted
    assert {a for a in addresses() if server.count(a)} == sent
    assert server.accepted == len(sent)
