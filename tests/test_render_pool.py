"""Rendering in worker processes gives the same messages, and a render failure never hangs a run."""

from __future__ import annotations

import asyncio
import email
from email import policy
from pathlib import Path
from typing import Any

import pytest

from stampcli.audience.contact import Contact
from stampcli.config import Campaign
from stampcli.delivery.engine import Engine
from stampcli.errors import TemplateError
from stampcli.render.message import Message
from stampcli.render.pool import default_workers
from stampcli.store.db import Store

SECRET = "pool-test-secret-0123456789"


def make_campaign(tmp_path: Path) -> Campaign:
    (tmp_path / "t.html").write_text(
        "<html><body><p>Hello {{ first_name }}</p>"
        "<a href='{{ unsubscribe_url }}'>unsubscribe</a></body></html>"
    )
    (tmp_path / "list.csv").write_text("email\n")
    return Campaign.model_validate(
        {
            "name": "pool",
            "from": "News <news@acme.example>",
            "subject": "Hi {{ first_name }}",
            "template": tmp_path / "t.html",
            "audience": {"file": tmp_path / "list.csv"},
            "unsubscribe": {"url": "https://acme.example/u?t={{ unsubscribe_token }}"},
            "providers": [{"url": "outbox://" + str(tmp_path / "out"), "name": "box"}],
        }
    )


def people(n: int) -> list[Contact]:
    out = [
        Contact(f"u{i}@example.com", f"u{i}@example.com", {"first_name": f"U{i}"}) for i in range(n)
    ]
    # a name that would inject a header: this recipient fails, the run goes on
    out.append(Contact("evil@example.com", "evil@example.com", {"first_name": "X\r\nBcc: a@b.c"}))
    return out


async def test_worker_processes_render_every_recipient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    with Store(tmp_path / "s.db") as store:
        engine = Engine(campaign, store, contacts=people(250), render_workers=1)
        summary = await asyncio.wait_for(engine.run(), 120)
        states = dict(store.conn.execute("SELECT key, state FROM ledger").fetchall())
        error = store.conn.execute(
            "SELECT last_error FROM ledger WHERE key = 'evil@example.com'"
        ).fetchone()[0]
    assert summary.counts["sent"] == 250
    assert states["evil@example.com"] == "failed"
    assert "Subject" in error or "header" in error.lower()
    files = sorted((tmp_path / "out").rglob("*.eml"))
    assert len(files) == 250
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["Subject"].startswith("Hi U")
    assert "List-Unsubscribe" in msg
    assert not msg.defects


class BrokenRenderer:
    content_hash = "x"

    def render(self, key: str, email: str, fields: dict[str, Any]) -> Message:
        raise TemplateError("t.html: the template reached outside its sandbox")


async def test_a_render_error_for_everyone_ends_the_run_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    with Store(tmp_path / "s.db") as store:
        engine = Engine(campaign, store, contacts=people(5), renderer=BrokenRenderer())
        with pytest.raises(TemplateError, match="sandbox"):
            await asyncio.wait_for(engine.run(), 30)
        pending = store.conn.execute("SELECT COUNT(*) FROM ledger WHERE state = 'pending'")
        assert pending.fetchone()[0] == 6  # nothing claimed, nothing lost
        assert store.conn.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0


def test_small_sends_render_in_process() -> None:
    assert default_workers(100) == 0
