"""The outbox adapter: ``outbox://DIR`` writes one .eml file per recipient instead of sending.

It is the embedded default and what ``stamp send --dry-run`` uses. Files land
in ``DIR/{campaign-slug}/{address}.eml`` so a person can open the one for a
given subscriber. A name is made filesystem-safe; when that changed anything,
a short hash of the original is appended so two names can never collide.
Each file is written to a hidden temporary name in the same folder and then
renamed over the final name: a crash leaves either the old file or the new
one, never half of one. (There is no fsync per file: a process crash cannot
leave a torn file, a power cut can; an outbox is a preview, not a queue.)
Writing the same message again replaces its file, so a resumed dry run is
idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from stampcli.config import ProviderConfig, TrackingConfig
from stampcli.providers.base import Adapter, CheckReport, CheckStep, Outcome, Result
from stampcli.redact import redact
from stampcli.render.message import Message

if TYPE_CHECKING:
    from stampcli.render.dkim import DkimSigner

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9]+")
_MAX_NAME = 150  # stays well under the 255-byte limit of common filesystems
# errno values that will not go away by retrying: the outbox refuses us
_REFUSED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def campaign_slug(name: str) -> str:
    """``"November News!"`` -> ``"november-news-1a2b3c4d"``; ``"november-news"`` unchanged."""
    slug = _SLUG_UNSAFE.sub("-", name.lower()).strip("-")[:_MAX_NAME] or "campaign"
    return slug if slug == name else f"{slug}-{_digest(name)}"


def address_filename(address: str) -> str:
    """A file name for a recipient: the address itself where it is safe, else plus a hash."""
    safe = _UNSAFE.sub("_", address).lstrip(".")[:_MAX_NAME] or "recipient"
    if safe != address:
        safe = f"{safe}-{_digest(address)}"
    return f"{safe}.eml"


class OutboxAdapter(Adapter):
    """Writes each message as ``DIR/{campaign-slug}/{address}.eml``."""

    scheme: ClassVar[str] = "outbox"
    # Files are written in a worker thread; a batch amortises the hop there.
    max_batch: ClassVar[int] = 50
    # Writing the same file twice replaces it: re-sending an unknown is harmless.
    idempotent: ClassVar[bool] = True
    # A file on disk: nobody serves an open pixel or follows a rewritten link.
    tracking_switch: ClassVar[bool] = False
    needs_fields: ClassVar[bool] = False  # it writes the MIME bytes as they are
    tracks_nothing: ClassVar[bool] = True
    # the .eml shows the message as an SMTP send would deliver it, signature included
    signs_dkim: ClassVar[bool] = True

    @classmethod
    def tracking_note(cls, config: ProviderConfig) -> str:
        return "only writes files; nothing is tracked"

    def __init__(
        self,
        config: ProviderConfig,
        *,
        tracking: TrackingConfig | None = None,
        dkim: DkimSigner | None = None,
    ):
        super().__init__(config, tracking=tracking, dkim=dkim)
        self.folder = Path(self.url.path).expanduser().absolute()

    def path_for(self, message: Message) -> Path:
        """Where ``message`` is (or would be) written."""
        return self.folder / campaign_slug(message.campaign) / address_filename(message.key)

    async def send(self, messages: Sequence[Message]) -> list[Result]:
        if not messages:
            return []
        return await asyncio.to_thread(self._write_all, list(messages))

    def _write_all(self, messages: list[Message]) -> list[Result]:
        return [self._write(m) for m in messages]

    def _write(self, message: Message) -> Result:
        target = self.path_for(message)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(self.final_bytes(message))
            os.replace(tmp, target)
        except OSError as exc:
            # the folder itself may be unusable; the result says why
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            outcome = (
                Outcome.PROVIDER_REFUSED if exc.errno in _REFUSED_ERRNOS else Outcome.PROVIDER_DOWN
            )
            reason = exc.strerror or type(exc).__name__
            return Result(outcome, detail=redact(f"cannot write {target}: {reason}"))
        return Result(Outcome.ACCEPTED, message_id=str(target.relative_to(self.folder)))

    async def check(self) -> CheckReport:
        return await asyncio.to_thread(self._check)

    def _check(self) -> CheckReport:
        steps: list[CheckStep] = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            detail = redact(f"cannot create {self.folder}: {exc.strerror or exc}")
            steps.append(CheckStep("create folder", False, detail))
            return CheckReport(self.name, False, steps, detail)
        steps.append(CheckStep("create folder", True, str(self.folder)))
        probe = self.folder / f".stamp-check-{secrets.token_hex(4)}.tmp"
        try:
            probe.write_bytes(b"stamp outbox check\r\n")
            probe.unlink()
        except OSError as exc:
            detail = redact(f"cannot write in {self.folder}: {exc.strerror or exc}")
            steps.append(CheckStep("write", False, detail))
            return CheckReport(self.name, False, steps, detail)
        steps.append(CheckStep("write", True))
        return CheckReport(self.name, True, steps, f"writes .eml files to {self.folder}")
