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
from typing import TYPE_CHECKING, Any

import orjson


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
    # ``html`` and ``text`` as JSON string literals (quotes included, UTF-8), made by the
    # renderer for providers that take JSON (providers.http.json_html); None: not made.
    html_json: bytes | None = field(default=None, repr=False, compare=False)
    text_json: bytes | None = field(default=None, repr=False, compare=False)
    # copies (campaign cc:/bcc:): decoded "Name <addr>" forms; Cc is a header of ``raw``,
    # Bcc never is: both are envelope recipients beside ``recipient``
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    # The envelope sender when it is not ``sender``: the campaign's VERP return path for
    # this ledger row (set by the engine, which knows the row; see compliance.verp).
    envelope_from: str | None = None

    # Messages cross from render workers by the hundred, as plain tuples (see
    # MessageCodec): pickling a tuple of the fields and building the message again
    # costs ~7 us a message against ~23 us for pickling the message itself (measured
    # on 100-message chunks). Where the JSON literals were made, html and text cross
    # only as those and are decoded on first read, which a send through a JSON API
    # never does: decoding ~6 KB of UTF-8 and encoding it again cost the send loop
    # ~20 us a message.

    def as_tuple(self) -> tuple[Any, ...]:
        """The fields in order, html/text None where their literal stands in (the
        encoding of :class:`MessageCodec`): ``Message.from_tuple(m.as_tuple()) == m``."""
        values = _GET_FIELDS(self)
        if self.html_json is None and self.text_json is None:
            return values
        return (
            *values[:_HTML],
            None if self.html_json is not None else self.html,
            None if self.text_json is not None else self.text,
            *values[_TEXT + 1 :],
        )

    @classmethod
    def from_tuple(cls, values: tuple[Any, ...]) -> Message:
        """The message of :meth:`as_tuple`'s (or :meth:`MessageCodec.encode`'s) values."""
        if values[_HTML] is not None and values[_TEXT] is not None:
            return cls(*values)
        # html or text left unset: __getattr__ decodes it from its JSON when read
        message = object.__new__(cls)
        for (setter, lazy), value in zip(_SETTERS, values, strict=True):
            if value is not None or not lazy:
                setter(message, value)
        return message

    if not TYPE_CHECKING:  # mypy would take every attribute for this method's answer

        def __getattr__(self, name: str) -> Any:
            """Reached only for an unset slot: html or text of a message from a worker."""
            literal = _LAZY.get(name)
            if literal is None or getattr(self, literal) is None:
                raise AttributeError(name)
            value = orjson.loads(getattr(self, literal))
            object.__setattr__(self, name, value)  # frozen: set once, as __init__ would
            return value

    @property
    def mail_from(self) -> str:
        """The SMTP envelope sender (MAIL FROM): the VERP address, or the From address."""
        return self.envelope_from or self.sender

    def with_envelope_from(self, address: str) -> Message:
        """This message with ``address`` as its envelope sender (html/text stay undecoded)."""
        return Message.from_tuple((*self.as_tuple()[:-1], address))

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
    def cc_addresses(self) -> list[tuple[str, str]]:
        """``(name, address)`` of every Cc copy."""
        return [parseaddr(c) for c in self.cc]

    @property
    def bcc_addresses(self) -> list[tuple[str, str]]:
        """``(name, address)`` of every Bcc copy."""
        return [parseaddr(c) for c in self.bcc]

    @property
    def copies(self) -> list[str]:
        """Every envelope recipient besides ``recipient``: the Cc and Bcc addresses."""
        return [a for _, a in (*self.cc_addresses, *self.bcc_addresses)]

    @property
    def reply_to_name(self) -> str:
        """The display name of Reply-To, or '' (also when there is no Reply-To)."""
        return parseaddr(self.reply_to)[0] if self.reply_to else ""

    @property
    def reply_to_address(self) -> str | None:
        """The bare address of Reply-To (``reply_to`` is the display form), or None."""
        return parseaddr(self.reply_to)[1] or None if self.reply_to else None


class MessageCodec:
    """A :class:`Message` as a plain tuple and back: what the renderer makes of one
    recipient and a render worker pickles onto the pipe, the one place its order is
    written down.

    :meth:`encode` takes the fields by name (so no caller depends on their order) and
    gives them in :class:`Message`'s order, ``html`` and ``text`` None where their JSON
    literal stands in for them (``html_json``, ``text_json``); :meth:`decode` makes the
    Message. The tuple is plain on purpose: a NamedTuple built by keyword cost a render
    worker ~12k instructions a message (2.6%, ``benchmarks/render_instructions.py``)
    and unpickling one runs its Python ``__new__``, ~3 us a message in the send loop.
    For the same reason the renderer writes :meth:`encode`'s tuple out itself (a call
    with 17 keywords is ~9k instructions); tests/test_render.py holds it to this order.
    """

    __slots__ = ()

    @staticmethod
    def encode(
        *,
        campaign: str,
        key: str,
        recipient: str,
        sender: str,
        message_id: str,
        from_header: str,
        to_header: str,
        subject: str,
        html: str | None,
        text: str | None,
        raw: bytes,
        reply_to: str | None,
        headers: dict[str, str],
        attachments: tuple[Attachment, ...],
        tags: dict[str, str],
        html_json: bytes | None,
        text_json: bytes | None,
        cc: tuple[str, ...] = (),
        bcc: tuple[str, ...] = (),
        envelope_from: str | None = None,
    ) -> tuple[Any, ...]:
        """The fields in :class:`Message`'s order (``html``/``text`` None: see the class)."""
        return (
            campaign,
            key,
            recipient,
            sender,
            message_id,
            from_header,
            to_header,
            subject,
            html,
            text,
            raw,
            reply_to,
            headers,
            attachments,
            tags,
            html_json,
            text_json,
            cc,
            bcc,
            envelope_from,
        )

    @staticmethod
    def decode(values: tuple[Any, ...]) -> Message:
        """The message :meth:`encode` gave ``values`` of (``Message.from_tuple``)."""
        return Message.from_tuple(values)


_NAMES = [f.name for f in fields(Message)]
_ENCODE = MessageCodec.encode.__code__
if _ENCODE.co_varnames[: _ENCODE.co_kwonlyargcount] != tuple(_NAMES):  # checked on import
    raise ImportError("MessageCodec.encode and Message list their fields in different orders")
_GET_FIELDS = operator.attrgetter(*_NAMES)
_HTML, _TEXT = _NAMES.index("html"), _NAMES.index("text")
# each slot's own setter (what a frozen dataclass's __init__ comes to), and whether the
# slot may stay unset for __getattr__ to fill
_LAZY = {"html": "html_json", "text": "text_json"}  # a field decoded lazily: its literal
_SETTERS = [(vars(Message)[name].__set__, name in _LAZY) for name in _NAMES]
