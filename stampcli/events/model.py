"""The one vocabulary for what happened to a message and why an address is not mailed.

``Reason``: why an address is on the suppression list. Every place that names
a suppression reason takes it from here: the store's suppression list
(``store.suppressions.REASONS``), an adapter's ``Result.suppress``, each
provider's suppression pull and export reader, the CLI's ``--reason``. It is a
``StrEnum``: its members are the strings the store holds, so they compare,
hash, print and bind to SQL as those strings.

Delivery events: The normalised delivery event every provider's webhook is turned into.

One ``DeliveryEvent`` is one thing that happened to one recipient's message at
one provider: delivered, bounced, opened... ``EventType`` is the one vocabulary
(anymail's, see /work/shared/reference/events.md section 0). ``make_event``
is the only way parsers build events: it normalises the address, checks ids
and timestamps, sanitises free text (no CR/LF or control characters, length
capped) and stores the provider's event as redacted JSON.

``TAG_CAMPAIGN`` / ``TAG_RECIPIENT`` are the names under which stamp's adapters
send the campaign name and the recipient's ledger key with every message
(``Message.tags``, filled by the renderer); each provider echoes them back in
its own place and the parsers read them from there.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from stampcli import redact as redact_module
from stampcli.redact import redact

TAG_CAMPAIGN = "campaign"
TAG_RECIPIENT = "recipient"

MAX_ID = 512  # longest provider event/message id accepted (SendGrid's are <= 100)
MAX_ADDRESS = 320  # RFC 5321: 64 local + @ + 255 domain
MAX_REASON = 500
MAX_URL = 2048
MAX_USER_AGENT = 512
MAX_TAG = 1000  # campaign names and ledger keys
MAX_RAW = 64 * 1024  # the stored copy of one provider event (JSON); longer is cut

# Keys whose values are credentials or one-time tokens: replaced in the stored raw copy.
SECRET_KEYS = frozenset(
    {"signature", "token", "password", "api_key", "apikey", "key", "authorization", "secret"}
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_BAD_IN_TOKEN = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
# what no address may hold: _BAD_IN_TOKEN's characters and the list/bracket punctuation
_BAD_IN_ADDRESS = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029<>,;]")
_AUTO_REPLY = re.compile(
    r"auto[ -]?(?:reply|replied|responder|response|matic reply)|out[ -]of[ -](?:the[ -])?office"
    r"|\booto\b|vacation|away from (?:the|my) office",
    re.IGNORECASE,
)
# Earliest and latest accepted event times: anything else is a broken or hostile timestamp.
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class Reason(StrEnum):
    """Why an address is on the suppression list."""

    UNSUBSCRIBED = "unsubscribed"  # the recipient asked (link, List-Unsubscribe, provider list)
    HARD_BOUNCE = "hard_bounce"  # the mailbox or domain does not exist, or a provider blocks it
    COMPLAINT = "complaint"  # marked as spam
    MANUAL = "manual"  # added by hand, here or at a provider
    INVALID = "invalid"  # the address itself cannot be mailed
    FORGOTTEN = "forgotten"  # erased by `stamp forget`; kept as the hash of the address


REASONS: tuple[str, ...] = tuple(reason.value for reason in Reason)
"""Every reason's text, in the enum's order (what ``--reason`` and errors list)."""


class EventRejected(ValueError):
    """One event of a webhook request cannot be used; the parser turns it into a ``Rejection``.

    Internal to the parsers: it never leaves ``WebhookParser.parse``.
    """


class EventType(StrEnum):
    """What happened (the normalised vocabulary of every provider)."""

    QUEUED = "queued"  # accepted by the provider, not yet sent (SendGrid processed, ...)
    SENT = "sent"  # handed on by the provider (SES Send, Resend email.sent, Mandrill send)
    DELIVERED = "delivered"  # the receiving server accepted it
    DEFERRED = "deferred"  # a temporary failure; the provider is still trying
    BOUNCED = "bounced"  # the receiving side refused it (see ``bounce_kind``)
    REJECTED = "rejected"  # the provider refused to send (invalid address, policy, virus)
    # Not sent because the address is on the provider's suppression list (SendGrid dropped,
    # Mailgun suppress-*, SES Suppressed, Resend email.suppressed, ...): not a new bounce.
    DROPPED = "dropped"
    FAILED = "failed"  # the provider could not build or send it (template, API error)
    COMPLAINED = "complained"  # marked as spam (feedback loop)
    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBED = "subscribed"  # re-subscribed (SendGrid group_resubscribe, ...)
    OPENED = "opened"
    CLICKED = "clicked"
    AUTO_REPLIED = "auto_replied"  # an out-of-office or challenge reply: never a bounce


class BounceKind(StrEnum):
    """Whether a bounce is permanent (suppress the address) or temporary."""

    HARD = "hard"
    SOFT = "soft"


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """One provider event about one recipient's message, normalised."""

    type: EventType
    provider: str  # the registry label: "sendgrid", "ses", ...
    # The provider's own event id, or "sha256:<hex>" of the event's canonical JSON where the
    # provider has none (Mailjet, Mandrill, Brevo): the dedupe key, together with ``provider``.
    event_id: str
    occurred_at: datetime  # UTC
    recipient: str  # the address, lower case
    campaign: str | None = None  # from the message's tags/metadata, as stamp sent it
    recipient_key: str | None = None  # the ledger key stamp sent with the message
    message_id: str | None = None  # the provider's message id, normalised (normalise_message_id)
    provider_message_id: str | None = None  # the same, exactly as the event carried it
    message_id_header: str | None = None  # the RFC 5322 Message-ID, "<...>", where given
    bounce_kind: BounceKind | None = None
    reason: str | None = None  # short, one line, no secrets
    url: str | None = None  # the clicked link
    user_agent: str | None = None
    auto_reply: bool = False  # an auto-reply (out of office): never counted as a bounce
    raw: str = field(default="{}", repr=False)  # the provider's event, JSON, secrets redacted


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event of a request that could not be used, and why (``index`` counts from 0)."""

    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What one webhook request carried."""

    events: tuple[DeliveryEvent, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    # Events the provider sends that carry nothing for stamp (pings, inbound mail, domain or
    # contact events, SES's "topic validated" note): counted, not stored as events.
    ignored: int = 0
    # SNS SubscriptionConfirmation: the checked https URL to GET to confirm the subscription.
    subscribe_url: str | None = None
    topic_arn: str | None = None


# -- normalising values -------------------------------------------------------------------


def clean_text(value: object, limit: int) -> str | None:
    """``value`` as one line of at most ``limit`` characters (control characters become
    spaces, registered secrets ``***``); None for nothing or non-text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    if value.isascii() and value.isprintable() and "  " not in value:
        # printable ASCII with no double space (nearly every reason): only the ends to trim
        text = value.strip(" ")
    else:
        text = " ".join(_CONTROL.sub(" ", value).split())
    if not text:
        return None
    text = redact(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def token(value: object, name: str, *, limit: int = MAX_ID, required: bool = False) -> str | None:
    """An id-like value (message id, event id): text or an integer, no spaces or control
    characters, at most ``limit`` characters. Anything else rejects the event."""
    if value is None or value == "":
        if required:
            raise EventRejected(f"no {name}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise EventRejected(f"{name} is not text ({type(value).__name__})")
    if len(value) > limit:
        raise EventRejected(f"{name} is longer than {limit} characters")
    if _BAD_IN_TOKEN.search(value):
        raise EventRejected(f"{name} contains spaces or control characters")
    return value


def address(value: object, name: str = "recipient") -> str:
    """The recipient address, lower case; rejects the event when it is not one."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise EventRejected(f"no {name} address")
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if len(text) > MAX_ADDRESS:
        raise EventRejected(f"{name} is longer than {MAX_ADDRESS} characters")
    if _BAD_IN_ADDRESS.search(text) or "@" not in text[1:-1]:
        raise EventRejected(f"{name} is not an email address")
    return text.lower()


def timestamp(value: object, name: str = "timestamp", *, millis: bool = False) -> datetime:
    """A UTC datetime from epoch seconds (int, float or digits; ``millis``: milliseconds)
    or an ISO 8601 string; rejects the event when missing or outside 2000-2100."""
    if type(value) is int or type(value) is float:  # epoch seconds (most): one range check
        seconds = float(value) / 1000 if millis else float(value)
        if 946684800 <= seconds < 4102444800:  # 2000-2100; NaN and inf fail it too
            return datetime.fromtimestamp(seconds, UTC)
        raise EventRejected(f"{name} {value!r} is not a time between 2000 and 2100")
    when: datetime
    if isinstance(value, str) and re.fullmatch(r"\d{1,16}(?:\.\d{1,9})?", value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) / (1000 if millis else 1)
        if not math.isfinite(seconds) or not 946684800 <= seconds < 4102444800:
            raise EventRejected(f"{name} {value!r} is not a time between 2000 and 2100")
        when = datetime.fromtimestamp(seconds, UTC)
    elif isinstance(value, str) and 0 < len(value) <= 64:
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise EventRejected(f"{name} is not a time: {clean_text(value, 64)!r}") from None
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    else:
        raise EventRejected(f"no {name}" if value is None else f"{name} is not a time")
    if not _EARLIEST <= when < _LATEST:
        raise EventRejected(f"{name} {when.isoformat()} is not between 2000 and 2100")
    return when


def url(value: object) -> str | None:
    """A clicked link: http(s) only, no control characters, at most ``MAX_URL``; else None."""
    if not isinstance(value, str) or len(value) > MAX_URL or _CONTROL.search(value):
        return None
    if not value.lower().startswith(("http://", "https://")):
        return None
    return value


def tag(value: object) -> str | None:
    """A campaign name or ledger key read back from metadata: text, one line, capped."""
    if not isinstance(value, str) or not value or len(value) > MAX_TAG or _CONTROL.search(value):
        return None
    return value


def bracketed(value: object) -> str | None:
    """An RFC Message-ID in its ``<...>`` form (adds the brackets if missing); None if unusable."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        return None
    if _BAD_IN_TOKEN.search(value):
        return None
    return value if value.startswith("<") and value.endswith(">") else f"<{value.strip('<>')}>"


def looks_auto_reply(*texts: object) -> bool:
    """Whether a bounce's reason text describes an auto-reply (out of office, vacation)."""
    return any(isinstance(t, str) and _AUTO_REPLY.search(t[:2000]) for t in texts)


def normalise_message_id(provider: str, value: str) -> str:
    """The provider's message id in the form both the send answer and the events agree on.

    SendGrid events carry ``<X-Message-Id>.<suffix>``: the part before the first dot.
    Mandrill events may carry ``<n>.<_id>``: the part after the last dot. Mailgun and Brevo
    ids lose their angle brackets. The store must pass the id the send call returned
    through this function too, so the two compare equal.
    """
    text = value.strip()
    if provider == "sendgrid":
        return text.split(".", 1)[0]
    if provider == "mandrill":
        return text.rsplit(".", 1)[-1]
    if provider in ("mailgun", "brevo"):
        return text.strip("<>")
    return text


# -- the raw copy -------------------------------------------------------------------------


def _copy(value: Any, *, hide: bool, depth: int = 0) -> Any:
    """``value`` nested at most 32 deep (orjson refuses to write deeper than 254), with
    secret-named keys and registered secrets replaced when ``hide``."""
    if depth > 32:
        return "…"
    if isinstance(value, Mapping):
        return {
            str(k): "***"
            if hide and str(k).lower() in SECRET_KEYS
            else _copy(v, hide=hide, depth=depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_copy(v, hide=hide, depth=depth + 1) for v in value]
    if hide and isinstance(value, str):
        return redact(value)
    return value


# A secret-named key anywhere in serialised JSON (a false hit only takes the slow path).
# Searched in the lower-cased text: a case-sensitive search of ``data.lower()`` finds the
# same as IGNORECASE (both fold ASCII only) in well under half the time.
_SECRET_KEY_JSON = re.compile(
    rb'"(?:' + b"|".join(re.escape(k.encode()) for k in sorted(SECRET_KEYS)) + rb')"\s*:'
)
_json_safe_secrets: tuple[object, bool] = (None, True)


def _secrets_json_safe() -> bool:
    """Whether every registered secret is written by JSON as it is (no quote, backslash or
    control character to escape), so that redacting the JSON text finds each one."""
    global _json_safe_secrets
    pattern = redact_module.DEFAULT._pattern  # changes whenever a secret is registered
    if _json_safe_secrets[0] is not pattern:
        safe = all(orjson.dumps(s)[1:-1].decode() == s for s in redact_module.DEFAULT.known())
        _json_safe_secrets = (pattern, safe)
    return _json_safe_secrets[1]


def _dumps(item: Any) -> bytes | None:
    """``item`` as canonical JSON, or None when orjson cannot write it (nested too deep)."""
    try:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return None


def raw_json(item: Any) -> str:
    """``item`` as compact JSON with secret-named keys and registered secrets replaced."""
    # Fast path (most events): serialise once and redact the text; the walk that replaces
    # values item by item is for events with a secret-named key, or odd secrets or depths.
    data = _dumps(item)
    if data is not None and not _SECRET_KEY_JSON.search(data.lower()) and _secrets_json_safe():
        text = redact(data.decode())
    else:
        text = orjson.dumps(_copy(item, hide=True), option=orjson.OPT_SORT_KEYS).decode()
    if len(text) > MAX_RAW:
        return orjson.dumps({"truncated": text[:MAX_RAW]}).decode()
    return text


def content_id(item: Any) -> str:
    """A stable id for an event that has none: the SHA-256 of its canonical JSON."""
    data = _dumps(item)
    if data is None:
        data = orjson.dumps(_copy(item, hide=False), option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_event(
    provider: str,
    type: EventType,
    item: Any,
    *,
    recipient: object,
    occurred_at: datetime,
    event_id: object = None,
    campaign: object = None,
    recipient_key: object = None,
    message_id: object = None,
    message_id_header: object = None,
    bounce_kind: BounceKind | None = None,
    reason: object = None,
    url_: object = None,
    user_agent: object = None,
    auto_reply: bool = False,
) -> DeliveryEvent:
    """A checked ``DeliveryEvent``: raises ``EventRejected`` when a required part is unusable.

    An auto-reply is never a bounce: a BOUNCED or DEFERRED event flagged ``auto_reply``
    becomes AUTO_REPLIED without a bounce kind.
    """
    raw_id = token(message_id, "message id")
    if auto_reply and type in (EventType.BOUNCED, EventType.DEFERRED):
        type, bounce_kind = EventType.AUTO_REPLIED, None
    if type is EventType.AUTO_REPLIED:
        auto_reply = True
    return DeliveryEvent(
        type=type,
        provider=provider,
        event_id=token(event_id, "event id") or content_id(item),
        occurred_at=occurred_at,
        recipient=address(recipient),
        campaign=tag(campaign),
        recipient_key=tag(recipient_key),
        message_id=normalise_message_id(provider, raw_id) if raw_id else None,
        provider_message_id=raw_id,
        message_id_header=bracketed(message_id_header),
        bounce_kind=bounce_kind if type in (EventType.BOUNCED, EventType.DEFERRED) else None,
        reason=clean_text(reason, MAX_REASON),
        url=url(url_),
        user_agent=clean_text(user_agent, MAX_USER_AGENT),
        auto_reply=auto_reply,
        raw=raw_json(item),
    )
