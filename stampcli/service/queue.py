"""The queue of campaigns ``stamp worker`` sends: add, list, remove.

``queue_campaign`` checks a campaign as a send would before anything is kept
(its templates compile, it has an unsubscribe link or says why not, the store
is not a wrong one), packs it (:mod:`stampcli.service.bundle`) and stores it
by name, due now or at ``at``. Queuing a campaign again replaces its
definition (a corrected template, a longer list) and makes it due again; its
ledger is kept, so nobody already mailed is mailed again.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from stampcli.compliance.policy import require_unsubscribe
from stampcli.config import Campaign
from stampcli.errors import InputError
from stampcli.records import QueueEntry
from stampcli.render.renderer import Renderer
from stampcli.service.bundle import pack
from stampcli.service.send import SendOptions, check_store_choice
from stampcli.service.store import OnOpen, StoreArg, opened
from stampcli.store.location import StoreChoice

QUEUE_STATES = ("queued", "done")


@dataclass(frozen=True, slots=True)
class Queued:
    """What ``queue_campaign`` kept."""

    campaign: str
    store: str  # where (a URL without its password)
    new: bool  # False: an earlier definition was replaced
    digest: str
    files: int
    size: int  # bytes of files
    due_at: float
    store_notice: str | None = None  # the loud line when queuing creates the store

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "store": self.store,
            "new": self.new,
            "digest": self.digest,
            "files": self.files,
            "size": self.size,
            "due_at": self.due_at,
        }


def entry_dict(entry: QueueEntry) -> dict[str, Any]:
    """One queued campaign as ``stamp queue list --json`` and ``stamp status`` show it."""
    return {
        "campaign": entry.name,
        "state": entry.state,
        "due_at": entry.due_at,
        "added_at": entry.added_at,
        "updated_at": entry.updated_at,
        "added_by": entry.added_by,
        "size": entry.size,
        "runs": entry.runs,
        "last_run_at": entry.last_run_at,
        "last_reason": entry.last_reason,
        "last_error": entry.last_error,
        "last_worker": entry.last_worker,
        "digest": entry.digest,
    }


def queue_campaign(
    campaign: Campaign,
    store: StoreArg,
    *,
    at: float | None = None,
    new_store: bool = False,
    on_open: OnOpen | None = None,
) -> Queued:
    """Check ``campaign``, pack it and queue it in ``store`` for the workers.

    ``at``: when it becomes due (epoch seconds; default now). ``new_store``:
    as ``stamp send --new-store`` (queue although the store never saw the
    campaign while traces say it was sent from another one).
    """
    Renderer(campaign)  # template errors now, not on a worker later
    require_unsubscribe(campaign)
    notice = None
    if isinstance(store, StoreChoice):
        notice = check_store_choice(campaign, store, SendOptions(new_store=new_store))
    packed = pack(campaign)
    due_at = time.time() if at is None else at
    if at is not None and not (at == at and at > 0):  # NaN, negative
        raise InputError(f"cannot queue for {at!r}: not a time")
    with opened(store, on_open=on_open) as into:
        new = into.fleet.enqueue(
            packed.name,
            packed.definition,
            packed.bundle,
            packed.digest,
            added_by=f"{socket.gethostname()}:{os.getpid()}",
            due_at=due_at,
        )
        location = into.location
    return Queued(
        packed.name, location, new, packed.digest, packed.files, packed.size, due_at, notice
    )


def queue_entries(store: StoreArg) -> list[QueueEntry]:
    """Every queued campaign (none if there is no store yet: nothing is created)."""
    if isinstance(store, StoreChoice) and not store.exists:
        return []
    with opened(store, readonly=True) as s:
        return s.fleet.entries()


def unqueue(store: StoreArg, name: str) -> bool:
    """Take campaign ``name`` off the queue (its ledger stays); False if it was not there.

    A worker sending it finishes that run; it is not taken again.
    """
    if isinstance(store, StoreChoice) and not store.exists:
        return False
    with opened(store) as s:
        return s.fleet.dequeue(name)
