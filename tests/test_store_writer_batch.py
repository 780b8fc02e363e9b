"""``StoreWriter.batch``: concurrent items of one ``many`` function are written by one
call (one commit) and each caller gets its own result, after that commit."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from stampcli.errors import StoreError
from stampcli.server.writer import StoreWriter
from stampcli.store import open_store
from stampcli.store.protocols import Store


def test_concurrent_batch_items_share_commits_and_get_their_own_answers(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_store(str(path)).close()
    groups: list[int] = []

    def many(store: Store, items: list[Any]) -> Sequence[Any]:
        groups.append(len(items))
        for n in items:
            if n >= 0:
                store.quota.take("batch-test", "d", 1, 10**6)
        return [ValueError(f"bad {n}") if n < 0 else n * 2 for n in items]

    writer = StoreWriter(lambda: open_store(str(path)))
    writer.start()

    async def run() -> list[Any]:
        calls = [writer.batch(many, n) for n in range(200)]
        calls.append(writer.batch(many, -1))
        # a plain call in between is not mixed into a batch
        calls.append(writer.call(lambda s: s.quota.usage("batch-test", "d")))
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        out = asyncio.run(run())
    finally:
        writer.stop()
    assert out[:200] == [n * 2 for n in range(200)]
    assert isinstance(out[200], ValueError) and str(out[200]) == "bad -1"
    assert isinstance(out[201], int)
    assert sum(groups) == 201
    assert len(groups) < 201  # grouped: fewer calls (commits) than items
    with open_store(str(path)) as store:
        assert store.quota.usage("batch-test", "d") == 200


def test_a_failing_batch_fails_each_of_its_callers_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    open_store(str(path)).close()

    def broken(store: Store, items: list[Any]) -> Sequence[Any]:
        raise RuntimeError("a bug")

    def short(store: Store, items: list[Any]) -> Sequence[Any]:
        return []  # one result missing per item

    writer = StoreWriter(lambda: open_store(str(path)))
    writer.start()

    async def run() -> None:
        for many in (broken, short):
            got = await asyncio.gather(*(writer.batch(many, n) for n in range(5)),
                                       return_exceptions=True)  # fmt: skip
            assert all(isinstance(g, StoreError) for g in got)
        assert await writer.call(lambda s: 7) == 7

    try:
        asyncio.run(run())
    finally:
        writer.stop()
    with pytest.raises(StoreError):
        asyncio.run(writer.batch(broken, 1))  # stopped: refused, never hangs
