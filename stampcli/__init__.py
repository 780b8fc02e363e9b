"""stamp: a command-line bulk newsletter sender (package ``stampcli``), and its library API.

Every ``stamp`` command is a call of one of these functions; they never print,
return dataclasses with ``as_dict()``, and raise ``stampcli.errors.StampError``
subclasses (exit codes are the CLI's)::

    import asyncio
    import stampcli

    campaign = stampcli.load_campaign("campaign.yml")
    with stampcli.open_store("stamp.db") as store:
        options = stampcli.SendOptions(limit=100)
        summary = asyncio.run(stampcli.send_campaign(campaign, store, options))
    print(summary.reason, summary.counts)

The names are imported on first use, so ``import stampcli`` stays cheap for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the names below, for type checkers (imported lazily at run time)
    from stampcli.config import (
        Campaign as Campaign,
    )
    from stampcli.config import (
        load_campaign as load_campaign,
    )
    from stampcli.errors import (
        StampError as StampError,
    )
    from stampcli.service.fleet_status import (
        fleet_status as fleet_status,
    )
    from stampcli.service.lists import (
        ImportResult as ImportResult,
    )
    from stampcli.service.lists import (
        import_list as import_list,
    )
    from stampcli.service.lists import (
        list_summaries as list_summaries,
    )
    from stampcli.service.preview import (
        CheckResult as CheckResult,
    )
    from stampcli.service.preview import (
        Preview as Preview,
    )
    from stampcli.service.preview import (
        check_campaign as check_campaign,
    )
    from stampcli.service.preview import (
        preview_message as preview_message,
    )
    from stampcli.service.providers import (
        ProvidersCheck as ProvidersCheck,
    )
    from stampcli.service.providers import (
        check_providers as check_providers,
    )
    from stampcli.service.queue import (
        queue_campaign as queue_campaign,
    )
    from stampcli.service.queue import (
        queue_entries as queue_entries,
    )
    from stampcli.service.queue import (
        unqueue as unqueue,
    )
    from stampcli.service.send import (
        DueCount as DueCount,
    )
    from stampcli.service.send import (
        RunHandle as RunHandle,
    )
    from stampcli.service.send import (
        RunSummary as RunSummary,
    )
    from stampcli.service.send import (
        SendOptions as SendOptions,
    )
    from stampcli.service.send import (
        count_due as count_due,
    )
    from stampcli.service.send import (
        prepare_send as prepare_send,
    )
    from stampcli.service.send import (
        prepare_test as prepare_test,
    )
    from stampcli.service.send import (
        send_campaign as send_campaign,
    )
    from stampcli.service.send import (
        send_test_message as send_test_message,
    )
    from stampcli.service.status import (
        CampaignStatus as CampaignStatus,
    )
    from stampcli.service.status import (
        campaign_status as campaign_status,
    )
    from stampcli.service.status import (
        status_of as status_of,
    )
    from stampcli.service.suppressions import (
        add_suppressions as add_suppressions,
    )
    from stampcli.service.suppressions import (
        export_suppressions as export_suppressions,
    )
    from stampcli.service.suppressions import (
        import_suppressions as import_suppressions,
    )
    from stampcli.service.suppressions import (
        list_suppressions as list_suppressions,
    )
    from stampcli.service.suppressions import (
        pull_suppressions as pull_suppressions,
    )
    from stampcli.service.suppressions import (
        remove_suppressions as remove_suppressions,
    )
    from stampcli.service.worker import (
        Worker as Worker,
    )
    from stampcli.service.worker import (
        WorkerOptions as WorkerOptions,
    )
    from stampcli.store import (
        open_store as open_store,
    )

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Campaign": "stampcli.config",
    "load_campaign": "stampcli.config",
    "StampError": "stampcli.errors",
    "open_store": "stampcli.store",
    "SendOptions": "stampcli.service.send",
    "RunSummary": "stampcli.service.send",
    "RunHandle": "stampcli.service.send",
    "DueCount": "stampcli.service.send",
    "send_campaign": "stampcli.service.send",
    "prepare_send": "stampcli.service.send",
    "count_due": "stampcli.service.send",
    "prepare_test": "stampcli.service.send",
    "send_test_message": "stampcli.service.send",
    "CampaignStatus": "stampcli.service.status",
    "campaign_status": "stampcli.service.status",
    "status_of": "stampcli.service.status",
    "ImportResult": "stampcli.service.lists",
    "import_list": "stampcli.service.lists",
    "list_summaries": "stampcli.service.lists",
    "Preview": "stampcli.service.preview",
    "preview_message": "stampcli.service.preview",
    "CheckResult": "stampcli.service.preview",
    "check_campaign": "stampcli.service.preview",
    "ProvidersCheck": "stampcli.service.providers",
    "check_providers": "stampcli.service.providers",
    "add_suppressions": "stampcli.service.suppressions",
    "remove_suppressions": "stampcli.service.suppressions",
    "import_suppressions": "stampcli.service.suppressions",
    "export_suppressions": "stampcli.service.suppressions",
    "list_suppressions": "stampcli.service.suppressions",
    "pull_suppressions": "stampcli.service.suppressions",
    "queue_campaign": "stampcli.service.queue",
    "queue_entries": "stampcli.service.queue",
    "unqueue": "stampcli.service.queue",
    "Worker": "stampcli.service.worker",
    "WorkerOptions": "stampcli.service.worker",
    "fleet_status": "stampcli.service.fleet_status",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stampcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
