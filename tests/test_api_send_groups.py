"""The grouped store steps of concurrent synchronous requests (``claim_many``,
``settle_many``, ``answers_many``), on both backends: each request gets its own rows,
past the stores' 500-id lists too, and every owner's fates are settled."""

from __future__ import annotations

from pathlib import Path

import pytest

from stampcli.records import Suppression
from stampcli.service import api_send
from tests.test_store_contract import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


def test_claim_settle_and_answer_groups(backend: Backend) -> None:
    with backend.open() as store:
        q = store.api_queue
        first = [f"a{i:04d}" for i in range(450)]
        second = [f"b{i:04d}" for i in range(300)]  # with the first: over one IN list
        q.enqueue("app", [(i, "{}") for i in first + second + ["c0"]], now=1.0)
        rows = api_send.claim_many(
            store, [("sync", first, 60.0), ("sync", second, 60.0), ("other", ["c0"], 60.0)]
        )
        assert [r.id for r in rows[0]] == first and [r.id for r in rows[1]] == second
        assert [r.id for r in rows[2]] == ["c0"]
        # claimed once: a second claim of the same ids gets nothing
        assert api_send.claim_many(store, [("sync", first[:3], 60.0)]) == [[]]
        fates = [(i, "sent", "p", None, 1, None, 0.0) for i in first + second]
        done = api_send.settle_many(
            store,
            [
                ("sync", fates[:450], [Suppression("x@example.com", "hard_bounce", "p")]),
                ("sync", fates[450:], []),
                ("other", [("c0", "rejected", "p", None, 1, "no", 0.0)], []),
            ],
        )
        assert done == [None, None, None]
        assert q.counts() == {"sent": 750, "rejected": 1}
        assert store.suppressions.get("x@example.com") is not None
        outs = api_send.answers_many(store, [first[:2], ["c0", "nope"]])
        assert list(outs[0]) == first[:2] and outs[0][first[0]].state == "sent"
        assert list(outs[1]) == ["c0"] and outs[1]["c0"].state == "rejected"
