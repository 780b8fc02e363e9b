"""One recipient's real message, sent to a test address only: ``stamp send --test-to``.

The message is rendered for a real recipient of the audience, exactly as the
send would render it (subject, body, personalisation, List-Unsubscribe and
the unsubscribe link with that recipient's token, so the link can be tried),
then readdressed before it leaves:

* the envelope recipient and ``To:`` are the test address, and nothing else:
  the real recipient is never an envelope recipient;
* ``Message-ID`` is new: a mailbox that is also on the list must not take the
  real message, when it comes, for a copy of this one (Gmail drops those);
* the ledger key and the provider tags name the test address and the
  campaign ``NAME (test)``, so a bounce or complaint about the test is never
  matched to the real recipient, and providers that deduplicate by campaign
  and recipient (Resend's idempotency key, the outbox's file name) treat each
  test as a message of its own.

The subject is left as it is: the test shows what the subscriber will see in
the inbox list (a ``[test]`` prefix would change its length and truncation).

It goes through the campaign's providers with the router, failover, rate
limits and daily quotas as a real send; no ledger row, campaign row or lock
is touched, and the suppression list is not consulted for the test address.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from stampcli.config import Campaign
from stampcli.delivery.router import Delivery, Router
from stampcli.delivery.run_events import EventSink, ignore
from stampcli.render import headers as hdr
from stampcli.render.message import Message
from stampcli.store.protocols import Store

TEST_SUFFIX = " (test)"
_HEADER_END = b"\r\n\r\n"


def readdress(message: Message, key: str, email: str) -> Message:
    """``message`` sent to ``email`` (``key``: its normalised form) instead of its recipient."""
    recipient = hdr.ascii_addr_spec(email)
    domain = message.sender.rpartition("@")[2]
    message_id = f"<test-{secrets.token_hex(16)}@{domain}>"
    raw = message.raw
    if raw:
        to_line = hdr.address_line("To", hdr.address("", recipient, "To"))
        raw = _replace_headers(raw, {b"to": to_line, b"message-id": f"Message-ID: {message_id}"})
    tag = message.campaign + TEST_SUFFIX
    return replace(
        message,
        # unique per test: the outbox writes each test to a file of its own, and Resend's
        # idempotency key (campaign and key) does not swallow a second test within a day
        campaign=f"{message.campaign} (test {secrets.token_hex(4)})",
        key=key,
        recipient=recipient,
        to_header=recipient,
        message_id=message_id,
        raw=raw,
        tags={**message.tags, "campaign": tag, "recipient": key},
    )


def _replace_headers(raw: bytes, lines: dict[bytes, str]) -> bytes:
    """``raw`` with the header fields named in ``lines`` (lower case) replaced by their line.

    ``raw`` is the renderer's own output (CRLF, folded lines start with a space), so
    a field is its first line and the continuation lines after it.
    """
    end = raw.index(_HEADER_END)
    out: list[bytes] = []
    skipping = False
    for line in raw[:end].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        name = line.partition(b":")[0].strip().lower()
        skipping = name in lines
        out.append(lines[name].encode("ascii") if skipping else line)
    return b"\r\n".join(out) + raw[end:]


async def send_test(
    campaign: Campaign,
    message: Message,
    store: Store | None = None,
    *,
    on_event: EventSink = ignore,
) -> Delivery:
    """Send ``message`` (already readdressed) through the campaign's providers, with failover.

    ``store``: for the providers' daily quotas (a test counts against them, as the
    provider counts it); None keeps the count in memory.
    """
    async with Router(campaign, store, on_event=on_event) as router:
        return await router.send(message)
