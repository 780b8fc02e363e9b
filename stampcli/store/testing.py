"""What tests set up that no run writes: time that passed, a run that died, a row forced.

The engine and CLI tests need a ledger row that a crash left ``unknown``, a
deferral that is due now, or a lock whose heartbeat stopped an hour ago.
These writes go through here rather than each test's own SQL, so that SQL
stays inside ``stampcli.store`` and a second backend supplies its own
version of this module. Not for production code: it breaks the ledger's rules
(any state from any state) on purpose.
"""

from __future__ import annotations

from typing import Any

from stampcli.store.db import LEDGER_STATES, Store

# the ledger columns a test may set, and what it may set them to
_LEDGER_COLUMNS: dict[str, type | tuple[type, ...]] = {
    "state": str,
    "attempts": int,
    "provider": (str, type(None)),
    "provider_message_id": (str, type(None)),
    "last_error": (str, type(None)),
    "next_attempt_at": (int, float, type(None)),
    "first_attempt_at": (int, float, type(None)),
    "sent_at": (int, float, type(None)),
}


def set_ledger(store: Store, campaign_id: int, *, key: str | None = None, **values: Any) -> int:
    """Set columns of the campaign's rows (only recipient ``key``'s, if given); rows changed.

    ``set_ledger(store, cid, key="bob@x.test", state="unknown")`` makes a row
    look as if a run died with it in flight; ``next_attempt_at=0`` makes every
    deferral due. Unknown columns, wrong types and unknown states raise ValueError.
    """
    if not values:
        raise ValueError("set_ledger: name at least one column to set")
    for name, value in values.items():
        kind = _LEDGER_COLUMNS.get(name)
        if kind is None:
            raise ValueError(f"set_ledger: no settable ledger column {name!r}")
        if not isinstance(value, kind):
            raise ValueError(f"set_ledger: {name}={value!r} has the wrong type")
    if "state" in values and values["state"] not in LEDGER_STATES:
        raise ValueError(f"set_ledger: no ledger state {values['state']!r}")
    sets = ", ".join(f"{name} = ?" for name in values)
    sql = f"UPDATE ledger SET {sets} WHERE campaign_id = ?"
    params: list[Any] = [*values.values(), campaign_id]
    if key is not None:
        sql += " AND key = ?"
        params.append(key)
    with store.transaction() as conn:
        return conn.execute(sql, params).rowcount


def age_lock(store: Store, campaign_id: int, seconds: float) -> bool:
    """Move the lock's last heartbeat ``seconds`` into the past; False if there is no lock."""
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE locks SET heartbeat_at = heartbeat_at - ? WHERE campaign_id = ?",
            (seconds, campaign_id),
        )
        return cur.rowcount == 1
