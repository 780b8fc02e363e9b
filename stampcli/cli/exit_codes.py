"""How a run's reason becomes the process's exit code (README "Exit codes").

The library ends a run with a reason (``RunSummary.reason``); the exit code is
the CLI's: ``stamp send`` exits with it, prints it in the summary line and in
the JSON log's ``summary`` event, and the runs row records it (``stamp status``).
"""

from __future__ import annotations

from typing import Any

from stampcli.errors import ExitCode

RUN_EXIT_CODES: dict[str, ExitCode] = {
    "complete": ExitCode.OK,  # every recipient has a final state
    "failures": ExitCode.PERMANENT_FAILURES,  # complete, some failed or are unknown
    "stopped": ExitCode.RESUMABLE,  # Ctrl-C (or the lock was lost): run again to go on
    "limit": ExitCode.RESUMABLE,  # --limit or max_messages reached
    "quota": ExitCode.RESUMABLE,  # provider quotas used up
    "deferred": ExitCode.RESUMABLE,  # deferred rows are due later
    "all_down": ExitCode.ALL_PROVIDERS_DOWN,
    "paused": ExitCode.PAUSED,  # auto-stop: bounce or complaint threshold
    "interrupted": ExitCode.INTERRUPTED,  # second Ctrl-C: in-flight rows are `unknown`
    "not_due": ExitCode.NOT_DUE,  # schedule, window or A/B wait: the rest is due later
}


def for_reason(reason: str) -> ExitCode:
    """The exit code of a run that ended for ``reason`` (an unknown reason: resumable)."""
    return RUN_EXIT_CODES.get(reason, ExitCode.RESUMABLE)


def with_exit_code(summary: dict[str, Any]) -> dict[str, Any]:
    """A run summary (``RunSummary.as_dict`` or the ``summary`` event) with its exit code
    after the campaign name, where the JSON log has always had it."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        out[key] = value
        if key == "campaign":
            out["exit_code"] = int(for_reason(str(summary.get("reason"))))
    return out
