"""Events recorded while a real ``stamp send`` runs pause it within a few seconds.

The send is a subprocess (``python -m stampcli send``) through the SendGrid
fake at a slow rate; the test records hard-bounce events for messages it has
sent, from its own store handle, as ``stamp serve`` would. The run sees the
pause flag, stops claiming and exits 6; the next run refuses until
``--unpause``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from provider_fakes import SendGridFake
from test_events_record import Sent as SentCampaign
from test_events_record import sg, write_campaign

from stampcli.service.events import record_events
from stampcli.store import open_store

ROOT = Path(__file__).resolve().parent.parent


def _stamp(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "stampcli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_bounce_events_pause_a_running_send(tmp_path: Path) -> None:
    many = [f"r{i}@example.com" for i in range(200)]
    with SendGridFake() as fake:
        assert isinstance(fake, SendGridFake)
        campaign = write_campaign(
            tmp_path,
            fake,
            "throttle: {rate: 10/s}\nauto_stop: {min_answers: 3, hard_bounce_rate: 0.05}\n",
            people=many,
        )
        db = tmp_path / "stamp.db"
        run = _stamp("send", str(campaign), "--yes", "--log-format", "json", "--db", str(db),
                     cwd=tmp_path)  # fmt: skip
        sent = SentCampaign(campaign, db, fake)
        deadline = time.monotonic() + 30
        while fake.accepted_count < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.accepted_count >= 10, run.communicate(timeout=30)
        time.sleep(0.3)  # their answers recorded
        with open_store(db) as store:
            got = record_events(
                store,
                [sg("bounce", a, 1, sent=sent, type="bounce") for a in many[:10]],
            )
        paused_at = time.monotonic()
        out, err = run.communicate(timeout=60)
        stopped_in = time.monotonic() - paused_at
    assert got.paused == ["news"], got
    assert run.returncode == 6, (out, err)
    assert stopped_in < 6  # a poll every second, then the messages in flight
    logged = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    summary = next(e for e in logged if e["event"] == "summary")
    assert summary["reason"] == "paused"
    assert 10 <= fake.accepted_count < 150  # stopped claiming well before the end
    with open_store(db) as store:
        row = store.campaigns.get("news")
        assert row is not None and "from delivery events" in (row.paused_reason or "")
        counts = store.ledger.counts(row.id)
        assert counts["pending"] > 0 and counts["sending"] == 0
    # a later run refuses until --unpause, as for a pause of its own
    again = _stamp("send", str(campaign), "--yes", "--log-format", "json", "--db", str(db),
                   cwd=tmp_path)  # fmt: skip
    again.communicate(timeout=60)
    assert again.returncode == 6
