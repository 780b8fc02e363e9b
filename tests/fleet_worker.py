"""One worker of a shared campaign, as a process of its own (the fleet tests start several).

``python tests/fleet_worker.py CAMPAIGN.yml STORE-URL [LEASE-SECONDS]`` joins the
campaign through the library (``send_campaign`` with ``SendOptions(shared=True)``,
what ``stamp send`` and ``stamp worker`` do on PostgreSQL, forced here on SQLite too)
and prints its summary as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys

from stampcli.config import load_campaign
from stampcli.delivery.run_events import Notice
from stampcli.service.send import SendOptions, send_campaign
from stampcli.store import open_store


def main() -> None:
    campaign = load_campaign(sys.argv[1])
    # tests: a short lease, so that a takeover comes quickly
    options = SendOptions(shared=True, lease_for=float(sys.argv[3]) if len(sys.argv) > 3 else 30.0)

    def on_event(event: object) -> None:
        if isinstance(event, Notice):
            print(json.dumps({"notice": event.level, "text": event.message}), flush=True)

    with open_store(sys.argv[2]) as store:
        summary = asyncio.run(send_campaign(campaign, store, options, on_event=on_event))
    print(json.dumps(summary.as_dict()), flush=True)


if __name__ == "__main__":
    main()
