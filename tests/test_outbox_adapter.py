"""The outbox adapter: one .eml per recipient, findable, collision-safe, written atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stampcli.config import ProviderConfig
from stampcli.providers import create_adapter
from stampcli.providers.base import Outcome
from stampcli.providers.outbox import OutboxAdapter, address_filename, campaign_slug
from stampcli.render.message import Message


def message(key: str, campaign: str = "november-news", body: str = "hello") -> Message:
    raw = (
        f"From: news@acme.test\r\nTo: {key}\r\nSubject: hi\r\n"
        f"Message-ID: <{key}@acme.test>\r\n\r\n{body}\r\n"
    ).encode()
    return Message(
        campaign=campaign,
        key=key,
        recipient=key,
        sender="news@acme.test",
        message_id=f"<{key}@acme.test>",
        from_header="news@acme.test",
        to_header=key,
        subject="hi",
        html="<p>hi</p>",
        text="hi",
        raw=raw,
    )


def outbox(folder: Path) -> OutboxAdapter:
    adapter = create_adapter(ProviderConfig(url=f"outbox://{folder}"))
    assert isinstance(adapter, OutboxAdapter)
    return adapter


async def test_writes_one_findable_file_per_recipient(tmp_path: Path) -> None:
    adapter = outbox(tmp_path)
    msgs = [message("jane@example.com"), message("bob@example.org")]
    results = await adapter.send(msgs)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert results[0].message_id == "november-news/jane@example.com.eml"
    written = tmp_path / "november-news" / "jane@example.com.eml"
    assert written.read_bytes() == msgs[0].raw
    assert (tmp_path / "november-news" / "bob@example.org.eml").read_bytes() == msgs[1].raw
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "november-news").iterdir()) == [
        "bob@example.org.eml",
        "jane@example.com.eml",
    ]


async def test_sending_again_replaces_the_file(tmp_path: Path) -> None:
    adapter = outbox(tmp_path)
    await adapter.send([message("jane@example.com", body="first")])
    [again] = await adapter.send([message("jane@example.com", body="second")])
    assert again.outcome is Outcome.ACCEPTED
    files = list((tmp_path / "november-news").iterdir())
    assert len(files) == 1
    assert files[0].read_bytes().endswith(b"second\r\n")


def test_names_never_collide() -> None:
    # both sanitise to "a_b@x.test"; the hash keeps them apart
    names = {address_filename(a) for a in ("a/b@x.test", "a\\b@x.test", "a_b@x.test")}
    assert len(names) == 3
    assert address_filename("a_b@x.test") == "a_b@x.test.eml"
    assert "/" not in address_filename("../../etc/passwd")
    assert not address_filename("..@x.test").startswith(".")
    assert campaign_slug("november-news") == "november-news"
    assert campaign_slug("November News") != campaign_slug("november-news")
    assert campaign_slug("November News").startswith("november-news-")
    assert campaign_slug("!!!").startswith("campaign-")


async def test_campaigns_get_separate_folders(tmp_path: Path) -> None:
    adapter = outbox(tmp_path)
    await adapter.send([message("jane@example.com", campaign="November News")])
    [result] = await adapter.send([message("bob@example.com", campaign="November News")])
    folder, name = str(result.message_id).split("/")
    assert folder.startswith("november-news-")
    assert name == "bob@example.com.eml"
    assert (tmp_path / folder / name).is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_unwritable_folder_is_refused_and_check_says_so(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        adapter = outbox(locked)
        [result] = await adapter.send([message("jane@example.com")])
        assert result.outcome is Outcome.PROVIDER_REFUSED
        assert "cannot write" in result.detail
        report = await adapter.check()
        assert not report.ok
    finally:
        locked.chmod(stat.S_IRWXU)


async def test_a_file_in_the_way_is_provider_down(tmp_path: Path) -> None:
    # the campaign folder's name is taken by a file: nothing can be written
    (tmp_path / "november-news").write_text("in the way")
    adapter = outbox(tmp_path)
    [result] = await adapter.send([message("jane@example.com")])
    assert result.outcome is Outcome.PROVIDER_DOWN
    assert (tmp_path / "november-news").read_text() == "in the way"


async def test_check_creates_the_folder(tmp_path: Path) -> None:
    adapter = outbox(tmp_path / "new" / "out")
    report = await adapter.check()
    assert report.ok, report
    assert (tmp_path / "new" / "out").is_dir()
    assert [s.name for s in report.steps] == ["create folder", "write"]
    assert list((tmp_path / "new" / "out").iterdir()) == []
