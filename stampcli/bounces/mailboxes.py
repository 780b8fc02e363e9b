"""Bounce mailboxes: IMAP (``imaps://user:pass@host/INBOX``), a Maildir or an mbox file.

Each source yields ``(ident, raw bytes)`` and then, given the idents that were
processed, moves them to a folder (default ``stamp-processed``) or deletes
them; everything else stays where it was. For IMAP the folder is created on
the server when missing (imap-tools); for a Maildir it is the Maildir++
sub-folder ``.stamp-processed``; for an mbox file a sibling mbox file
``<name>.stamp-processed``. Errors (an unreachable server, a refused login, a
path that is neither) raise :class:`~stampcli.errors.InputError` or
:class:`~stampcli.errors.ProviderError` naming the mailbox, never its password.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessage
from imap_tools.errors import ImapToolsError

from stampcli.errors import InputError, ProviderError
from stampcli.redact import redact
from stampcli.redact import register as register_secret

IMAP_TIMEOUT = 30.0  # seconds for any one IMAP exchange
_FETCH_CHUNK = 50  # messages per IMAP FETCH


class Source(Protocol):
    """Where bounce mail is read from."""

    name: str  # for messages and the lock: no password

    def mails(self) -> Iterator[tuple[str, bytes]]: ...

    def finish(self, processed: Sequence[str], *, folder: str, delete: bool) -> int:
        """Move (or delete) the processed mails; how many."""
        ...

    def close(self) -> None: ...


# -- files -------------------------------------------------------------------------------


class FileSource:
    """A Maildir (a folder with cur/ new/ tmp/) or an mbox file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self._keys: dict[str, Any] = {}
        if path.is_dir():
            if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
                raise InputError(f"{path}: a folder, but not a Maildir (no cur/, new/, tmp/)")
            self.box: mailbox.Mailbox[Any] = mailbox.Maildir(path, create=False)
            self.kind = "maildir"
        elif path.is_file():
            with path.open("rb") as handle:
                head = handle.read(5)
            if head and head != b"From ":
                raise InputError(f"{path}: not an mbox file (it does not start with 'From ')")
            self.box = mailbox.mbox(path, create=False)
            self.kind = "mbox"
        else:
            raise InputError(f"{path}: no such Maildir or mbox file")
        if self.kind == "mbox":
            try:
                self.box.lock()  # the dot-lock and flock MTAs and mail clients honour
            except mailbox.ExternalClashError:
                raise InputError(f"{path}: the mbox is locked by another program") from None

    def mails(self) -> Iterator[tuple[str, bytes]]:
        for key in list(self.box.keys()):
            self._keys[str(key)] = key  # mbox keys are numbers, Maildir's names
            try:
                raw = self.box.get_bytes(key)
            except (KeyError, OSError):
                continue  # removed meanwhile by a mail client
            if self.kind == "mbox":
                raw = raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw
            yield str(key), raw

    def finish(self, processed: Sequence[str], *, folder: str, delete: bool) -> int:
        if not processed:
            return 0
        target: mailbox.Mailbox[Any] | None = None
        if not delete:
            if isinstance(self.box, mailbox.Maildir):
                target = (
                    self.box.get_folder(folder)
                    if folder in self.box.list_folders()
                    else self.box.add_folder(folder)
                )
            else:
                target = mailbox.mbox(self.path.with_name(f"{self.path.name}.{folder}"))
                target.lock()
        done = 0
        try:
            for ident in processed:
                key = self._keys.get(ident, ident)
                try:
                    if target is not None:
                        target.add(self.box.get_message(key))
                    self.box.remove(key)
                    done += 1
                except KeyError:
                    continue
            if target is not None:
                target.flush()
            self.box.flush()
        finally:
            if target is not None and isinstance(target, mailbox.mbox):
                target.unlock()
                target.close()
        return done

    def close(self) -> None:
        if self.kind == "mbox":
            self.box.unlock()
        self.box.close()


# -- IMAP --------------------------------------------------------------------------------


class _RawMessage(MailMessage):
    """A fetched message kept as its bytes (imap-tools parses each one; we parse our way)."""

    def __init__(self, fetch_data: list[Any]) -> None:
        raw, uid, flags = self._get_message_data_parts(fetch_data)
        self._raw_uid_data = uid
        self._raw_flag_data = flags
        self.raw: bytes = raw


@dataclass(frozen=True)
class ImapURL:
    scheme: str  # imap or imaps
    host: str
    port: int
    user: str
    password: str
    folder: str
    tls: str  # imaps: implicit; imap: starttls (default) or none
    verify: bool

    @property
    def name(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def parse_imap_url(url: str) -> ImapURL:
    """``imaps://user:pass@host[:993]/FOLDER`` or ``imap://...:143/FOLDER?tls=none``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise InputError("the mailbox URL is malformed (imaps://user:pass@host/INBOX)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps") or not parts.hostname:
        raise InputError("the mailbox URL must be imaps://user:pass@host/FOLDER (or imap://)")
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if not user:
        raise InputError(f"{scheme}://{parts.hostname}: the mailbox URL has no user name")
    if password:
        register_secret(password)
    options = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    unknown = set(options) - {"tls", "verify"}
    if unknown:
        raise InputError(f"the mailbox URL has unknown options: {', '.join(sorted(unknown))}")
    tls = options.get("tls", "implicit" if scheme == "imaps" else "starttls").lower()
    if scheme == "imap" and tls not in ("starttls", "none"):
        raise InputError("imap:// takes tls=starttls (default) or tls=none")
    if scheme == "imaps":
        tls = "implicit"
    verify = options.get("verify", "true").lower() not in ("false", "0", "no", "off")
    return ImapURL(
        scheme=scheme,
        host=parts.hostname,
        port=port or (993 if scheme == "imaps" else 143),
        user=user,
        password=password,
        folder=unquote(parts.path.lstrip("/")) or "INBOX",
        tls=tls,
        verify=verify,
    )


class ImapSource:
    """An IMAP folder through imap-tools."""

    def __init__(self, url: ImapURL) -> None:
        self.url = url
        self.name = url.name
        context = ssl.create_default_context()
        if not url.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        box: BaseMailBox
        try:
            if url.tls == "implicit":
                box = MailBox(url.host, url.port, timeout=IMAP_TIMEOUT, ssl_context=context)
            elif url.tls == "starttls":
                box = MailBoxStartTls(url.host, url.port, timeout=IMAP_TIMEOUT, ssl_context=context)
            else:
                box = MailBoxUnencrypted(url.host, url.port, timeout=IMAP_TIMEOUT)
            box.email_message_class = _RawMessage
            box.login(url.user, url.password, initial_folder=url.folder)
        except (TimeoutError, ImapToolsError, imaplib.IMAP4.error, OSError) as exc:
            raise ProviderError(f"{self.name}: {redact(_imap_error(exc))}") from None
        self.box = box

    def mails(self) -> Iterator[tuple[str, bytes]]:
        try:
            uids = self.box.uids("ALL")
            for start in range(0, len(uids), _FETCH_CHUNK):
                chunk = uids[start : start + _FETCH_CHUNK]
                for message in self.box.fetch(uid_list=chunk, mark_seen=False, bulk=True):
                    assert isinstance(message, _RawMessage)
                    if message.uid:
                        yield message.uid, message.raw
        except (ImapToolsError, imaplib.IMAP4.error, OSError) as exc:
            raise ProviderError(f"{self.name}: {redact(_imap_error(exc))}") from None

    def finish(self, processed: Sequence[str], *, folder: str, delete: bool) -> int:
        if not processed:
            return 0
        try:
            if delete:
                self.box.delete(list(processed))
            else:
                if not self.box.folder.exists(folder):
                    self.box.folder.create(folder)
                self.box.move(list(processed), folder)
        except (ImapToolsError, imaplib.IMAP4.error, OSError) as exc:
            raise ProviderError(
                f"{self.name}: could not {'delete' if delete else 'move'} the processed "
                f"mail ({redact(_imap_error(exc))}); its events are recorded, and reading "
                "it again counts nothing twice"
            ) from None
        return len(processed)

    def close(self) -> None:
        with contextlib.suppress(ImapToolsError, imaplib.IMAP4.error, OSError):
            self.box.logout()


def _imap_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


def open_source(where: str | Path) -> Source:
    """The source ``where`` names: an imap(s):// URL, else a Maildir or mbox path."""
    text = str(where)
    if text.lower().startswith(("imap://", "imaps://")):
        return ImapSource(parse_imap_url(text))
    return FileSource(Path(text).expanduser())
