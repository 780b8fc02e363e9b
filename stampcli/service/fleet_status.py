"""What ``stamp status`` shows of the fleet: the workers, the queue, and the runs sharing
a campaign (row leases: each live one with its host, pid, rows claimed, rate, heartbeat).

Read in one pass over a read-only store; a store without them (or none at
all) shows none. A worker is as it last said (idle, sending, draining,
stopped), or ``gone`` when its heartbeat stopped without a clean exit: a
worker killed, or its host down (:func:`stampcli.service.worker.worker_state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stampcli.records import QueueEntry, WorkerInfo
from stampcli.service.queue import entry_dict
from stampcli.service.store import StoreArg, opened
from stampcli.service.worker import live_workers
from stampcli.store.db import now
from stampcli.store.location import StoreChoice


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    id: str
    host: str
    pid: int
    state: str  # idle | sending | draining | stopped | gone
    campaign: str | None
    started_at: float
    last_seen: float  # its last heartbeat
    heartbeat_age: float  # seconds since
    sent: int
    rate: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "state": self.state,
            "campaign": self.campaign,
            "started_at": self.started_at,
            "last_seen": self.last_seen,
            "heartbeat_age": round(self.heartbeat_age, 1),
            "sent": self.sent,
            "rate": self.rate,
        }


@dataclass(frozen=True, slots=True)
class FleetStatus:
    workers: list[WorkerStatus] = field(default_factory=list)
    queue: list[QueueEntry] = field(default_factory=list)
    # the live runs sharing a campaign (`stamp send` on PostgreSQL, `stamp worker`):
    # one per process, with the rows it handed to a provider and its recent rate
    sharing: list[WorkerInfo] = field(default_factory=list)
    at: float = 0.0  # when this was read (heartbeat ages count from here)

    @property
    def live(self) -> list[WorkerStatus]:
        return [w for w in self.workers if w.state not in ("stopped", "gone")]

    def of_campaign(self, name: str) -> FleetStatus:
        """The workers, and the queue entry and sharing runs of campaign ``name`` only."""
        return FleetStatus(
            self.workers,
            [e for e in self.queue if e.name == name],
            [w for w in self.sharing if w.campaign == name],
            self.at,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": [w.as_dict() for w in self.workers],
            "live_workers": len(self.live),
            "queue": [entry_dict(e) for e in self.queue],
            "sharing": [
                {**w.as_dict(), "heartbeat_age": round(max(0.0, self.at - w.heartbeat_at), 1)}
                for w in self.sharing
            ],
            "sharing_claimed": sum(w.claimed for w in self.sharing),
            "sharing_rate": round(sum(w.rate for w in self.sharing), 1),
        }


def fleet_status(store: StoreArg) -> FleetStatus:
    """The store's workers (newest first) and queued campaigns (by name)."""
    if isinstance(store, StoreChoice) and not store.exists:
        return FleetStatus()
    with opened(store, readonly=True) as s:
        at = now()
        workers = [
            WorkerStatus(
                w.id, w.host, w.pid, state, w.campaign,
                w.started_at, w.heartbeat_at, at - w.heartbeat_at, w.sent,
                w.rate if state == "sending" else 0.0,
            )
            for w, state in live_workers(s, at=at)
        ]  # fmt: skip
        return FleetStatus(workers, s.fleet.entries(), s.leases.workers(at=at), at)
