"""Before a send: refuse a store that looks like the wrong one, and say when one is new.

A store that has never seen a campaign is normal for a first send, and a
disaster when the campaign was sent before from another store: everyone is
mailed again, unsubscribed people too. So when the chosen store does not know
the campaign, stamp looks for traces of an earlier send: ``.eml`` files of it
in an outbox folder (the campaign's ``outbox://`` providers, or ``outbox/``
beside the campaign file or the store), or another store that knows it (the
old default ``./stamp.db``, ``$STAMP_DB``, ``stamp.db`` beside the campaign).
With a trace the send is refused until ``--new-store`` confirms it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from stampcli.config import Campaign
from stampcli.errors import ConfigError, StampError
from stampcli.providers.outbox import campaign_slug
from stampcli.store.location import DEFAULT_NAME, ENV, StoreChoice, check_url, is_postgres, to_path

EML_COUNT_CAP = 10_000  # a trail is a trail; counting a million files says no more


def knows(store: Path | StoreChoice, name: str) -> bool:
    """Whether the store (a SQLite file, or any chosen one) has a ledger for campaign
    ``name`` (False if it is not there or cannot be read)."""
    choice = store if isinstance(store, StoreChoice) else StoreChoice(store, "")
    if choice.path is not None and not choice.path.is_file():
        return False
    with contextlib.suppress(StampError, sqlite3.Error), choice.open(readonly=True) as opened:
        return opened.campaigns.get(name) is not None
    return False


def _outbox_folders(campaign: Campaign, choice: StoreChoice) -> list[Path]:
    folders = [
        Path(p.parsed.path).expanduser().absolute()
        for p in campaign.providers
        if p.scheme == "outbox"
    ]
    folders.append(campaign.base_dir / "outbox")
    if choice.path is not None:
        folders.append(choice.path.parent / "outbox")
    return list(dict.fromkeys(folders))


def _eml_count(folder: Path) -> int:
    n = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(".eml") and not entry.name.startswith("."):
                n += 1
                if n >= EML_COUNT_CAP:
                    break
    return n


def _other_stores(campaign: Campaign, choice: StoreChoice) -> list[StoreChoice]:
    candidates = [Path.cwd() / DEFAULT_NAME, campaign.base_dir / DEFAULT_NAME]
    others: list[StoreChoice] = []
    env = os.environ.get(ENV)
    if env:
        with contextlib.suppress(ValueError, OSError):
            check_url(env)
            if is_postgres(env):
                if env.strip() != choice.url:  # a database: the one $STAMP_DB names
                    others.append(StoreChoice(None, f"${ENV}", env.strip()))
            else:
                candidates.append(to_path(env, Path.cwd()))
    mine = None if choice.path is None else choice.path.resolve()
    seen: list[Path] = []
    for path in candidates:
        with contextlib.suppress(OSError):
            if path.resolve() != mine and path.resolve() not in seen:
                seen.append(path.resolve())
    return [StoreChoice(p, "") for p in seen] + others


def trail(campaign: Campaign, choice: StoreChoice) -> list[str]:
    """Traces of an earlier send of ``campaign`` that ``choice`` knows nothing of."""
    signs: list[str] = []
    for folder in _outbox_folders(campaign, choice):
        where = folder / campaign_slug(campaign.name)
        n = _eml_count(where)
        if n:
            more = " or more" if n >= EML_COUNT_CAP else ""
            signs.append(f"{n}{more} .eml files of it in {where}")
    for other in _other_stores(campaign, choice):
        if knows(other, campaign.name):
            signs.append(f"the store {other.location} has a ledger for it")
    return signs


def check_store(campaign: Campaign, choice: StoreChoice, *, new_store: bool) -> str | None:
    """Refuse a store that never saw ``campaign`` when it was sent before; the new-store notice.

    Returns the loud line to show when the store does not exist yet (the send
    creates it), else None. ``new_store`` (``--new-store``) confirms a store
    that has traces of an earlier send against it.
    """
    exists = choice.exists
    if exists and knows(choice, campaign.name):
        return None
    signs = trail(campaign, choice)
    state = "does not exist yet" if not exists else "has never sent this campaign"
    if signs and not new_store:
        raise ConfigError(
            f"refusing to send {campaign.name!r} with the store {choice.describe()}: it {state}, "
            f"but the campaign was sent before ({'; '.join(signs)}), so everyone could be "
            "mailed again, unsubscribed people too. Use the store that sent it (--db PATH, "
            f"store: in {campaign.path}, or ${ENV}), or add --new-store if this store is "
            "meant to start afresh"
        )
    if exists:
        return None
    text = f"NEW STORE: {choice.location} does not exist; this send creates it ({choice.origin})"
    if signs:
        text += f", confirmed with --new-store despite: {'; '.join(signs)}"
    else:
        text += ". Nothing sent from another store is known to it"
    return text
