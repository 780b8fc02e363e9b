"""The one small interface every provider adapter implements, and its result types.

An adapter takes a batch of rendered messages and returns exactly one
classified :class:`Result` per message, in the same order. It never raises for
anything a provider or the network does: a refused connection, a 500, a
timeout or a body that makes no sense all become results. Routing, retries,
throttling and the ledger live elsewhere (``stampcli.delivery``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar

from stampcli.config import ProviderConfig, ProviderURL, TrackingConfig
from stampcli.events.model import Reason
from stampcli.render.message import Message

if TYPE_CHECKING:
    from stampcli.render.dkim import DkimSigner


class Outcome(StrEnum):
    """What a provider's answer means for one message."""

    ACCEPTED = "accepted"  # the provider took it; message_id set where it gives one
    THROTTLED = "throttled"  # wait retry_after and try the same provider again
    PROVIDER_DOWN = "provider_down"  # certainly not accepted; may go to the next provider
    PROVIDER_REFUSED = "provider_refused"  # auth, account, quota: open the circuit for long
    RECIPIENT_REJECTED = "recipient_rejected"  # permanent for this recipient; never fail over
    RECIPIENT_DEFERRED = "recipient_deferred"  # transient for this recipient (SMTP 4xx on RCPT)
    UNKNOWN = "unknown"  # may have been accepted (read timeout after sending)


NO_TRACKING_SWITCH = "has no per-message tracking switch"


@dataclass(frozen=True, slots=True)
class Result:
    """The classified answer for one message."""

    outcome: Outcome
    message_id: str | None = None  # the provider's id for an accepted message
    detail: str = ""  # the provider's answer, short, never containing a secret
    retry_after: float | None = None  # seconds, for THROTTLED (None: use backoff)
    # For RECIPIENT_REJECTED: why the address should be suppressed everywhere,
    # or None when the rejection says nothing lasting.
    suppress: Reason | None = None

    @property
    def certainly_not_accepted(self) -> bool:
        """True when moving this message to another provider cannot mail anyone twice."""
        return self.outcome in (Outcome.PROVIDER_DOWN, Outcome.PROVIDER_REFUSED, Outcome.THROTTLED)


@dataclass(frozen=True, slots=True)
class CheckStep:
    name: str  # "connect", "EHLO", "STARTTLS", "AUTH", "GET /v3/scopes", ...
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What ``stamp providers check`` prints for one provider."""

    provider: str
    ok: bool
    steps: list[CheckStep] = field(default_factory=list)
    detail: str = ""


class Adapter(ABC):
    """Base of every provider adapter. Subclasses set ``scheme`` and implement ``send``."""

    scheme: ClassVar[str]
    max_batch: ClassVar[int] = 1  # messages one ``send`` call may carry
    idempotent: ClassVar[bool] = False  # an UNKNOWN may be re-sent safely (idempotency key)
    # Sends ``Message.raw`` (SMTP, outbox, the raw-MIME APIs). An API that takes the
    # content as fields says False, and a send through such providers only renders fields.
    needs_raw: ClassVar[bool] = True
    # Reads ``Message.html``/``text`` (or their JSON literals). Only SMTP and the outbox
    # send nothing but ``raw``: a send through those alone leaves both out of what the
    # render workers hand over (about half of each message's bytes on the pipe).
    needs_fields: ClassVar[bool] = True
    # Honours the campaign's tracking.opens/clicks per message (most APIs do). False:
    # the provider's own settings decide or nothing tracks, and `stamp send` says so.
    tracking_switch: ClassVar[bool] = True
    # Nothing is ever tracked (the outbox): asking for tracking off is honoured.
    tracks_nothing: ClassVar[bool] = False
    # Puts the campaign's DKIM signature on ``Message.raw`` (SMTP, the outbox). The
    # HTTP APIs sign with the account's own domain keys and are given none.
    signs_dkim: ClassVar[bool] = False

    def __init__(
        self,
        config: ProviderConfig,
        *,
        tracking: TrackingConfig | None = None,
        dkim: DkimSigner | None = None,
    ):
        self.config = config
        self.url: ProviderURL = config.parsed
        self.tracking = tracking or TrackingConfig()
        self.name = config.label
        self.dkim = dkim if self.signs_dkim else None

    def final_bytes(self, message: Message) -> bytes:
        """What goes on the wire for ``message``: ``raw``, DKIM-signed where configured."""
        return message.raw if self.dkim is None else self.dkim.sign(message.raw)

    @classmethod
    def batch_for(cls, config: ProviderConfig) -> int:
        """Messages one ``send`` call carries for ``config``: its batch_size, capped."""
        if config.batch_size is not None:
            return min(config.batch_size, cls.max_batch)
        return cls.max_batch

    @classmethod
    def tracking_note(cls, config: ProviderConfig) -> str:
        """What decides tracking here instead, for a provider without ``tracking_switch``."""
        return f"{NO_TRACKING_SWITCH}; the provider's own settings apply"

    @property
    def batch_size(self) -> int:
        """How many messages the engine should hand to one ``send`` call."""
        return self.batch_for(self.config)

    async def open(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Open connections or clients. Must not raise for a down provider."""

    async def close(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Close connections; never raises."""

    @abstractmethod
    async def send(self, messages: Sequence[Message]) -> list[Result]:
        """Send ``messages`` (at most ``batch_size``); one Result each, same order; never raises."""

    @abstractmethod
    async def check(self) -> CheckReport:
        """Check credentials and reachability without sending a message."""

    async def __aenter__(self) -> Adapter:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
