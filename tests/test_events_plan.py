"""The event lookups search the ledger by an index, never scan it (a flood of events
against a large ledger would otherwise cost a full scan per batch)."""

from __future__ import annotations

from pathlib import Path

from stampcli.records import NewRow
from stampcli.store.db import Store
from stampcli.store.events import by_address


def _plans(store: Store, run: object) -> list[str]:
    seen: list[str] = []
    store.conn.set_trace_callback(seen.append)
    try:
        assert callable(run)
        run()
    finally:
        store.conn.set_trace_callback(None)
    plans: list[str] = []
    for sql in seen:
        if sql.lstrip().upper().startswith("SELECT"):
            rows = store.conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans.extend(str(row[3]) for row in rows)
    return plans


def test_by_address_searches_the_ledger_by_campaign_and_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    try:
        for name in ("a", "b"):
            row = store.campaigns.ensure(name)
            store.ledger.insert(
                row.id, [NewRow(f"u{i}@x.org", f"u{i}@x.org", "{}") for i in range(50)]
            )
        with store.transaction() as conn:
            conn.execute("UPDATE ledger SET first_attempt_at = id")
        found: dict[str, object] = {}
        plans = _plans(store, lambda: found.update(by_address(store, ["u1@x.org", "u2@x.org"])))
        assert sorted(found) == ["u1@x.org", "u2@x.org"]
        assert not any(p.startswith("SCAN l") for p in plans), plans
        assert any(p.startswith("SEARCH l USING INDEX") for p in plans), plans
    finally:
        store.close()
