"""The ``campaigns`` row: a campaign's identity in the store, its content hash and its pause.

The ledger, the lock and the run history all hang off ``campaigns.id``. The
content hash (of subject, templates and everything else that shapes a message)
is stored when sending starts, so that resuming after an edit is a decision,
not an accident. A campaign pauses itself when bounces or complaints pass the
auto-stop threshold; the pause holds until someone clears it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from stampcli.errors import CampaignPausedError, ContentChangedError
from stampcli.records import CampaignRow as CampaignRow
from stampcli.records import RunRow as RunRow
from stampcli.store.db import Store, now

if TYPE_CHECKING:
    from stampcli.store import protocols

_COLUMNS = "id, name, content_hash, created_at, updated_at, paused_reason, paused_at"


def _from_row(row: sqlite3.Row | tuple[Any, ...]) -> CampaignRow:
    return CampaignRow(*row)


def get(store: Store, name: str) -> CampaignRow | None:
    """The campaign called ``name``, or None if it never ran."""
    with store.errors():
        row = store.conn.execute(
            f"SELECT {_COLUMNS} FROM campaigns WHERE name = ?", (name,)
        ).fetchone()
    return None if row is None else _from_row(row)


def ensure(store: Store, name: str) -> CampaignRow:
    """The campaign called ``name``, created if this is its first run."""
    ts = now()
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO campaigns (name, created_at, updated_at) VALUES (?, ?, ?)",
            (name, ts, ts),
        )
        row = conn.execute(f"SELECT {_COLUMNS} FROM campaigns WHERE name = ?", (name,)).fetchone()
    return _from_row(row)


def delete(store: Store, name: str) -> bool:
    """Forget a campaign with its ledger, lock and runs (dry runs start afresh this way)."""
    with store.transaction() as conn:
        return conn.execute("DELETE FROM campaigns WHERE name = ?", (name,)).rowcount > 0


def check_content(
    store: protocols.Store, campaign: CampaignRow, content_hash: str, *, allow_changed: bool
) -> bool:
    """Store ``content_hash``; refuse a changed one once any message was attempted.

    Returns True when a changed hash was accepted under ``allow_changed`` (the
    caller says so).
    A change before anything was attempted is no change for any recipient, so it
    is simply recorded.
    """
    if campaign.content_hash == content_hash:
        return False
    attempted = False
    if campaign.content_hash is not None:
        attempted = store.ledger.attempted(campaign.id)
        if attempted and not allow_changed:
            raise ContentChangedError(
                f"campaign {campaign.name!r}: the subject, template or another part of the "
                "message changed since this campaign started sending, so the recipients left "
                "would get a different message than those already mailed."
            )
    store.campaigns.set_content_hash(campaign.id, content_hash)
    return attempted


def set_content_hash(store: Store, campaign_id: int, content_hash: str) -> None:
    """Record the hash of what the campaign's messages are made of (see :func:`check_content`)."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE campaigns SET content_hash = ?, updated_at = ? WHERE id = ?",
            (content_hash, now(), campaign_id),
        )


def pause(store: Store, campaign_id: int, reason: str) -> None:
    """Pause the campaign: later runs refuse to send until :func:`unpause`."""
    ts = now()
    with store.transaction() as conn:
        conn.execute(
            "UPDATE campaigns SET paused_reason = ?, paused_at = ?, updated_at = ? WHERE id = ?",
            (reason, ts, ts, campaign_id),
        )


def unpause(store: Store, campaign_id: int) -> bool:
    """Clear a pause; True if the campaign was paused."""
    with store.transaction() as conn:
        cur = conn.execute(
            "UPDATE campaigns SET paused_reason = NULL, paused_at = NULL, updated_at = ? "
            "WHERE id = ? AND paused_reason IS NOT NULL",
            (now(), campaign_id),
        )
        return cur.rowcount > 0


def check_not_paused(campaign: CampaignRow) -> None:
    """Raise :class:`CampaignPausedError` if the campaign is paused."""
    if campaign.paused_reason is not None:
        raise CampaignPausedError(
            f"campaign {campaign.name!r} is paused: {campaign.paused_reason}. Look into the "
            "bounces and complaints first."
        )


def audience_mark(store: Store, campaign_id: int) -> dict[str, Any] | None:
    """What the last complete planning saw of the audience (see planner), or None."""
    with store.errors():
        row = store.conn.execute(
            "SELECT audience_mark FROM campaigns WHERE id = ?", (campaign_id,)
        ).fetchone()
    if row is None or row[0] is None:
        return None
    value = json.loads(row[0])
    return value if isinstance(value, dict) else None


def set_audience_mark(store: Store, campaign_id: int, mark: dict[str, Any] | None) -> None:
    text = None if mark is None else json.dumps(mark, sort_keys=True)
    with store.transaction() as conn:
        conn.execute("UPDATE campaigns SET audience_mark = ? WHERE id = ?", (text, campaign_id))


def lists_mark(store: Store, names: Sequence[str]) -> list[list[Any]]:
    """What identifies the stored lists ``names`` as they are now, for an audience mark.

    One ``[name, updated_at, contacts, newest contact's updated_at]`` per list
    that exists, by name: any import that changes a list changes its entry.
    """
    if not names:
        return []
    marks = ",".join("?" * len(names))
    with store.errors():
        rows = store.conn.execute(
            f"SELECT l.name, l.updated_at, COUNT(c.id), MAX(c.updated_at) FROM lists l "
            f"LEFT JOIN contacts c ON c.list_id = l.id WHERE l.name IN ({marks}) "
            f"GROUP BY l.id ORDER BY l.name",
            list(names),
        ).fetchall()
    return [list(r) for r in rows]


def start_run(store: Store, campaign_id: int) -> int:
    """Record that a run started; returns its id."""
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO runs (campaign_id, started_at) VALUES (?, ?)", (campaign_id, now())
        )
        return int(cur.lastrowid or 0)


def finish_run(
    store: Store, run_id: int, exit_code: int | None, summary: dict[str, Any] | None
) -> None:
    """Record how a run ended (``summary`` is JSON-ready, see RunSummary.as_dict)."""
    text = None if summary is None else json.dumps(summary, default=str)
    with store.transaction() as conn:
        conn.execute(
            "UPDATE runs SET ended_at = ?, exit_code = ?, summary = ? WHERE id = ?",
            (now(), exit_code, text, run_id),
        )


def last_run(store: Store, campaign_id: int) -> RunRow | None:
    """The most recent run of the campaign, finished or not."""
    with store.errors():
        row = store.conn.execute(
            "SELECT id, started_at, ended_at, exit_code, summary FROM runs "
            "WHERE campaign_id = ? ORDER BY id DESC LIMIT 1",
            (campaign_id,),
        ).fetchone()
    if row is None:
        return None
    summary = json.loads(row[4]) if row[4] else None
    return RunRow(row[0], row[1], row[2], row[3], summary if isinstance(summary, dict) else None)


class SQLiteCampaigns:
    """:class:`stampcli.store.protocols.CampaignStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, name: str) -> CampaignRow | None:
        return get(self._store, name)

    def ensure(self, name: str) -> CampaignRow:
        return ensure(self._store, name)

    def delete(self, name: str) -> bool:
        return delete(self._store, name)

    def set_content_hash(self, campaign_id: int, content_hash: str) -> None:
        set_content_hash(self._store, campaign_id, content_hash)

    def pause(self, campaign_id: int, reason: str) -> None:
        pause(self._store, campaign_id, reason)

    def unpause(self, campaign_id: int) -> bool:
        return unpause(self._store, campaign_id)

    def audience_mark(self, campaign_id: int) -> dict[str, Any] | None:
        return audience_mark(self._store, campaign_id)

    def set_audience_mark(self, campaign_id: int, mark: dict[str, Any] | None) -> None:
        set_audience_mark(self._store, campaign_id, mark)

    def lists_mark(self, names: Sequence[str]) -> list[list[Any]]:
        return lists_mark(self._store, names)


class SQLiteRuns:
    """:class:`stampcli.store.protocols.RunStore` over this module's functions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def start(self, campaign_id: int) -> int:
        return start_run(self._store, campaign_id)

    def finish(self, run_id: int, exit_code: int | None, summary: dict[str, Any] | None) -> None:
        finish_run(self._store, run_id, exit_code, summary)

    def last(self, campaign_id: int) -> RunRow | None:
        return last_run(self._store, campaign_id)
