"""Mailchimp Transactional (Mandrill): ``POST /api/1.0/rejects/list``.

The key goes inside the JSON body, as in every Mandrill call. The answer is
Mandrill's rejection denylist as an array of ``{email, reason, detail,
created_at, expired, ...}``. Taken: ``hard-bounce``, ``spam``, ``unsub``,
``invalid`` (the address itself) and ``custom`` (added by hand). Left out:
``soft-bounce`` (Mandrill lifts it after a while, and another provider may
well deliver meanwhile) and the reasons about the sender or the account
rather than the recipient (``invalid-sender``, ``rule``, ``test-mode-limit``,
``unsigned``). Expired entries are left out too (the API's default).

The call has no paging and answers at most 1,000 entries. A full answer may
have left some out: the pull merges what it got and warns that the list may
be longer than Mandrill lets anyone read.
"""

from __future__ import annotations

from collections.abc import Iterator

from stampcli.compliance.pull.base import Pulled, PullError, PullIncomplete, Session, records
from stampcli.compliance.times import parse_time

BASE_URL = "https://mandrillapp.com"
REGIONAL: dict[str, str] = {}
MAX_ANSWER = 1000  # rejects/list answers at most this many entries

# Mandrill's reason -> ours; soft bounces are left out (see the module docstring)
REASONS = {
    "hard-bounce": "hard_bounce",
    "spam": "complaint",
    "unsub": "unsubscribed",
    "invalid": "invalid",
    "custom": "manual",
}


def fetch(session: Session) -> Iterator[Pulled]:
    data = session.post_json(
        "/api/1.0/rejects/list", {"key": session.url.user or "", "include_expired": False}
    )
    if not isinstance(data, list):
        raise PullError(f"{session.label}: rejects/list did not answer a list")
    for item in records(data):
        why = str(item.get("reason") or "")
        reason = REASONS.get(why)
        if reason is None or item.get("expired") is True:
            continue
        detail = " ".join(str(item.get("detail") or "").split())
        yield Pulled(
            str(item.get("email") or ""),
            reason,
            f"{why}: {detail}" if detail else why,
            parse_time(item.get("created_at")) or 0.0,
        )
    if len(data) >= MAX_ANSWER:
        raise PullIncomplete(
            f"{session.label}: Mandrill answered its maximum of {MAX_ANSWER} rejections, "
            "which were merged; its API lists no more, so the denylist may be longer "
            "(Mandrill itself still refuses the rest)"
        )
