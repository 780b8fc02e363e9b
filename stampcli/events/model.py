"""The one vocabulary for why an address must not be mailed again.

Every place that names a suppression reason takes it from here: the store's
suppression list (``store.suppressions.REASONS``), an adapter's
``Result.suppress``, each provider's suppression pull and export reader, the
CLI's ``--reason``. Delivery events (event types, the normalised event) join
this module when webhooks arrive.

``Reason`` is a ``StrEnum``: its members are the strings the store holds, so
they compare, hash, print and bind to SQL as those strings.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an address is on the suppression list."""

    UNSUBSCRIBED = "unsubscribed"  # the recipient asked (link, List-Unsubscribe, provider list)
    HARD_BOUNCE = "hard_bounce"  # the mailbox or domain does not exist, or a provider blocks it
    COMPLAINT = "complaint"  # marked as spam
    MANUAL = "manual"  # added by hand, here or at a provider
    INVALID = "invalid"  # the address itself cannot be mailed


REASONS: tuple[str, ...] = tuple(reason.value for reason in Reason)
"""Every reason's text, in the enum's order (what ``--reason`` and errors list)."""
