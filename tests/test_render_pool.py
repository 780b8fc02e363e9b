"""Rendering in worker processes gives the same messages, and a render failure never hangs a run."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import json
import os
import signal
from collections.abc import Sequence
from email import policy
from pathlib import Path
from typing import Any

import pytest

from stampcli.config import Campaign
from stampcli.delivery.run import CampaignRun
from stampcli.errors import ExitCode, RecipientError, TemplateError
from stampcli.providers.base import Outcome, Result
from stampcli.providers.outbox import OutboxAdapter
from stampcli.records import Contact
from stampcli.render.message import Message
from stampcli.render.pool import RenderPool, RenderWorkerError, default_workers
from stampcli.render.renderer import Renderer
from stampcli.render.worker import read_fields
from stampcli.store import campaigns, ledger, locks
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
        engine = CampaignRun(campaign, store, contacts=people(250), render_workers=1)
        summary = await asyncio.wait_for(engine.run(), 120)
        rows = {r.key: r for r in ledger.rows(store, campaigns.ensure(store, "pool").id)}
        states = {key: r.state for key, r in rows.items()}
        error = rows["evil@example.com"].last_error or ""
    assert summary.counts["sent"] == 250
    assert states["evil@example.com"] == "failed"
    assert "Subject" in error or "header" in error.lower()
    files = sorted((tmp_path / "out").rglob("*.eml"))
    assert len(files) == 250
    msg = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["Subject"].startswith("Hi U")
    assert "List-Unsubscribe" in msg
    assert not msg.defects


async def _rendered_in_pool(campaign: Any, rows: list[Any], **options: Any) -> list[Any]:
    """``rows`` rendered by a pool of one worker started with ``options``."""
    pool = await RenderPool.start(campaign, 1, **options)
    try:
        return await asyncio.wait_for(pool.render(rows), 60)
    finally:
        await pool.aclose()


@pytest.mark.parametrize("raw", [True, False])  # False: html and text cross as JSON
async def test_pool_messages_equal_the_ones_rendered_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: bool
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    here = Renderer(campaign, raw=raw)
    rows = [(c.key, c.email, json.dumps(c.fields)) for c in people(30)]
    got = await _rendered_in_pool(campaign, rows, raw=raw)
    for (key, email_, fields), message in zip(rows, got, strict=True):
        try:
            expected: Message | str = here.render(key, email_, json.loads(fields))
        except RecipientError as exc:
            expected = str(exc)
        if isinstance(expected, Message):
            # the Date header differs by the second it was rendered in
            assert (
                isinstance(message, Message)
                and message.raw.split(b"\r\n", 1)[1:] == (expected.raw.split(b"\r\n", 1)[1:])
            )
            message = dataclasses.replace(message, raw=expected.raw)
            assert (message.html_json, message.text_json) == (
                expected.html_json,
                expected.text_json,
            )
            assert (expected.text_json is None) is raw
        assert message == expected
    assert isinstance(got[-1], str)  # the header injection: its reason crossed the pipe


async def test_a_pool_for_mime_only_providers_hands_over_the_mime_bytes_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fields=False (SMTP, outbox): the same MIME bytes, html and text left behind."""
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    here = Renderer(campaign)
    rows = [(c.key, c.email, json.dumps(c.fields)) for c in people(10)]
    got = await _rendered_in_pool(campaign, rows, fields=False)
    for (key, email_, fields), message in zip(rows[:-1], got, strict=False):
        expected = here.render(key, email_, json.loads(fields))
        assert isinstance(message, Message) and expected.html and expected.text
        assert (message.html, message.text) == ("", "")
        assert message.raw.split(b"\r\n", 1)[1] == expected.raw.split(b"\r\n", 1)[1]
        same = dataclasses.replace(message, raw=expected.raw, html=expected.html)
        assert dataclasses.replace(same, text=expected.text) == expected
    assert isinstance(got[-1], str)


def test_only_smtp_and_the_outbox_send_without_html_and_text() -> None:
    from stampcli.providers import adapter_class
    from stampcli.providers.registry import SCHEMES

    mime_only = {s for s in SCHEMES if not adapter_class(s).needs_fields}
    assert mime_only == {"smtp", "smtps", "outbox"}


@pytest.mark.parametrize(
    "text",
    [
        '{"first_name":"Zoë","n":"1234567890123456789012"}',
        '{"id":123456789012345678901234567890}',  # past 64 bits: json keeps it exact
        '{"score":NaN,"big":1e308,"small":5e-324,"neg":-0.0}',
        '{"a":{"b":[1,2.5,true,null]},"esc":"\\u00e9\\n\\"q\\" \\ud83d\\ude00"}',
        "[]",
    ],
)
def test_worker_reads_fields_as_json_does(text: str) -> None:
    assert repr(read_fields(text)) == repr(json.loads(text))


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
        engine = CampaignRun(campaign, store, contacts=people(5), renderer=BrokenRenderer())
        with pytest.raises(TemplateError, match="sandbox"):
            await asyncio.wait_for(engine.run(), 30)
        cid = campaigns.ensure(store, "pool").id
        assert ledger.counts(store, cid)[ledger.PENDING] == 6  # nothing claimed, nothing lost
        assert locks.holder(store, cid) is None


def _state_counts(store: Store) -> dict[str, int]:
    """Rows by state, the states that occur only."""
    counts = ledger.counts(store, campaigns.ensure(store, "pool").id)
    return {state: n for state, n in counts.items() if n}


def test_small_sends_render_in_process() -> None:
    assert default_workers(100) == 0


async def test_a_template_error_raised_in_a_worker_reaches_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    (tmp_path / "t.html").write_text("<p>{{ ''.__class__.__mro__[1].__subclasses__() }}</p>")
    with Store(tmp_path / "s.db") as store:
        engine = CampaignRun(campaign, store, contacts=people(300), render_workers=1)
        with pytest.raises(TemplateError):
            await asyncio.wait_for(engine.run(), 60)
        states = _state_counts(store)
    assert states == {"pending": 301}


class KillsTheWorker(OutboxAdapter):
    """Kills the render worker with SIGKILL when the first message arrives."""

    engine: CampaignRun | None = None

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        pool = self.engine._pool if self.engine else None
        if pool is not None:
            for worker in pool._workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.proc.pid, signal.SIGKILL)
        return await super().send(messages)


async def test_a_worker_killed_mid_run_stops_the_run_with_the_rest_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    adapter = KillsTheWorker(campaign.providers[0])
    with Store(tmp_path / "s.db") as store:
        engine = CampaignRun(
            campaign, store, contacts=people(3000), render_workers=1, adapters=[adapter]
        )
        adapter.engine = engine
        with pytest.raises(RenderWorkerError, match="render worker") as info:
            await asyncio.wait_for(engine.run(), 60)
        states = _state_counts(store)
    assert info.value.exit_code == ExitCode.RESUMABLE
    assert set(states) <= {"sent", "pending", "failed"}  # nothing left claimed
    assert states["pending"] > 0
    assert states.get("sent", 0) == len(list((tmp_path / "out").rglob("*.eml")))


async def test_pool_workers_exit_when_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    pool = await RenderPool.start(make_campaign(tmp_path), 2)
    rows = [(f"u{i}@example.com", f"u{i}@example.com", '{"first_name": "U"}') for i in range(5)]
    first, second = await asyncio.gather(pool.render(rows), pool.render(rows[:2]))
    assert [type(m) for m in first] == [Message] * 5 and len(second) == 2
    procs = [w.proc for w in pool._workers]
    await pool.aclose()
    assert [p.returncode for p in procs] == [0, 0]


class FieldsOnly(OutboxAdapter):
    """A provider that builds the MIME itself: keeps what it was given."""

    needs_raw = False
    seen: list[Message]

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        self.seen.extend(messages)
        return [Result(Outcome.ACCEPTED, message_id="x") for _ in messages]


@pytest.mark.parametrize("workers", [0, 1])
async def test_messages_carry_no_mime_bytes_when_no_provider_sends_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    lean = FieldsOnly(campaign.providers[0])
    lean.seen = []
    with Store(tmp_path / "s.db") as store:
        summary = await asyncio.wait_for(
            CampaignRun(
                campaign, store, contacts=people(2100), render_workers=workers, adapters=[lean]
            ).run(),
            120,
        )
    assert summary.counts["sent"] == 2100
    assert {m.raw for m in lean.seen} == {b""}
    assert all("Hello U" in m.html and "Hello U" in m.text for m in lean.seen)


async def test_a_provider_that_sends_bytes_gets_them_even_behind_a_fields_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    campaign = make_campaign(tmp_path)
    lean = FieldsOnly(campaign.providers[0])
    lean.seen = []
    box = OutboxAdapter(campaign.providers[0])  # the failover target writes .eml files
    with Store(tmp_path / "s.db") as store:
        await asyncio.wait_for(
            CampaignRun(campaign, store, contacts=people(10), adapters=[lean, box]).run(), 60
        )
    assert lean.seen and all(m.raw.startswith(b"Date: ") for m in lean.seen)


async def test_a_send_waiting_for_renders_starts_one_more_render_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering slower than sending: a second worker joins mid-run; everyone gets one mail."""
    from stampcli.delivery import engine as engine_module
    from stampcli.delivery.run_events import Event, Notice

    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", SECRET)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # one worker to start, two at most
    monkeypatch.setattr(engine_module, "WARM_CHUNKS", 2)
    monkeypatch.setattr(engine_module, "GROW_AFTER", 3)
    monkeypatch.setattr(engine_module, "GROW_ROWS", 500)
    campaign = make_campaign(tmp_path)
    (tmp_path / "t.html").write_text(  # a render of several ms against a file write
        "<html><body>{% for i in range(3000) %}{% if i % 7 == 3 %}<p>{{ first_name }} {{ i }}"
        "</p>{% endif %}{% endfor %}<a href='{{ unsubscribe_url }}'>unsubscribe</a></body></html>"
    )
    events: list[Event] = []
    with Store(tmp_path / "s.db") as store:
        engine = CampaignRun(campaign, store, contacts=people(2400), on_event=events.append)
        summary = await asyncio.wait_for(engine.run(), 240)
        counts = _state_counts(store)
    grown = [e for e in events if isinstance(e, Notice) and "render processes" in e.message]
    assert [e.message for e in grown] == [
        "rendering is slower than sending: 2 render processes from now on"
    ]
    assert summary.counts["sent"] == 2400
    assert counts == {"sent": 2400, "failed": 1}
    assert len(list((tmp_path / "out").rglob("*.eml"))) == 2400
