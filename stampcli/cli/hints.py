"""The CLI's words for what to do next about an error the library raised.

The library's messages say what is wrong in its own terms (``allow_changed``,
a pause to clear); which command line option does it is the CLI's to say.
"""

from __future__ import annotations

from stampcli.errors import CampaignPausedError, ContentChangedError, StampError

HINTS: tuple[tuple[type[StampError], str], ...] = (
    (
        ContentChangedError,
        "Undo the change, or run again with --allow-changed to send the new version to the rest.",
    ),
    (CampaignPausedError, "Then `stamp send --unpause` resumes it."),
)


def explain(exc: StampError) -> str:
    """``exc``'s message, with the command that gets past it when there is one."""
    text = str(exc)
    for kind, hint in HINTS:
        if isinstance(exc, kind):
            return f"{text} {hint}"
    return text
