"""The rendered message: what the renderer produces and every adapter receives.

A :class:`Message` carries both forms a provider may want: the exact RFC 5322
bytes (``raw``, for SMTP, the outbox and the raw-MIME HTTP APIs) and the same
content as fields (subject, html, text, headers, attachments) for the APIs that
build the MIME themselves. Both are produced together so they cannot disagree.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from email.utils import parseaddr
from typing import Any


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with the message; ``content_id`` is set for inline (``cid:``) images."""

    filename: str
    content_type: str  # e.g. "image/png"
    data: bytes
    content_id: str | None = None  # without angle brackets

    @property
    def inline(self) -> bool:
        return self.content_id is not None


@dataclass(frozen=True, slots=True)
class Message:
    """One recipient's message, ready to hand to a provider."""

    campaign: str
    key: str  # the recipient's ledger key: normalised address, lower case
    recipient: str  # envelope and To address (domain IDNA-encoded)
    sender: str  # envelope sender (the From address)
    message_id: str  # "<...@sender-domain>", derived from campaign and key
    from_header: str  # From as it appears decoded, e.g. "Gärtner Club <news@x.example>"
    to_header: str  # To as it appears decoded
    subject: str  # decoded subject
    html: str  # final HTML, CSS inlined
    text: str  # plain-text part
    raw: bytes  # the complete message, CRLF line endings, ASCII only
    reply_to: str | None = None
    # Extra headers, decoded: List-Unsubscribe, List-Unsubscribe-Post, List-Id,
    # Feedback-ID, Precedence and the campaign's custom headers. Not From/To/
    # Subject/Date/Message-ID/MIME-Version/Content-*.
    headers: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()  # inline images have content_id set
    # Matching the provider's events back: {"campaign": name, "recipient": key}.
    tags: dict[str, str] = field(default_factory=dict)

    # Messages cross from render workers by the hundred, as plain tuples: pickling a
    # tuple of the fields and building the message again costs ~7 us a message
    # against ~23 us for pickling the message itself (measured on 100-message chunks).

    def as_tuple(self) -> tuple[Any, ...]:
        """The fields in order: ``Message.from_tuple(m.as_tuple()) == m``."""
        return _GET_FIELDS(self)

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...]) -> Message:
        return cls(*values)

    @property
    def from_address(self) -> str:
        return self.sender

    @property
    def from_name(self) -> str:
        """The display name of From, unquoted (``"ACME, Inc."`` -> ``ACME, Inc.``), or ''."""
        return parseaddr(self.from_header)[0]

    @property
    def to_name(self) -> str:
        return parseaddr(self.to_header)[0]

    @property
    def reply_to_name(self) -> str:
        """The display name of Reply-To, or '' (also when there is no Reply-To)."""
        return parseaddr(self.reply_to)[0] if self.reply_to else ""

    @property
    def reply_to_address(self) -> str | None:
        """The bare address of Reply-To (``reply_to`` is the display form), or None."""
        return parseaddr(self.reply_to)[1] or None if self.reply_to else None


_GET_FIELDS = operator.attrgetter(*(f.name for f in fields(Message)))
