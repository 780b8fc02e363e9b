"""Normalise and check one email address: trim, lower-case and IDNA-encode the domain.

:func:`normalize_address` returns ``(key, email)``: ``email`` is the address to
send to (trimmed, domain lower-cased and IDNA-encoded, local part kept as
given) and ``key`` is ``email.lower()``, the identity used for dedupe, the
ledger and suppressions. Syntax only: no DNS lookups.

Decisions, so that every caller gets the same answer:

* Surrounding whitespace is trimmed, and so are angle brackets around the
  whole address (``<anna@example.com>``); ``Anna <anna@example.com>`` is
  refused with a reason saying so; whitespace or control characters (CR, LF,
  NUL, ...) left inside are rejected, which also keeps header injection out.
* One trailing dot on the domain (``a@example.com.``, the DNS root) is
  stripped, so it dedupes with ``a@example.com``.
* Quoted local parts (``"john smith"@example.com``) are accepted and kept
  as written; non-ASCII local parts are rejected because they need SMTPUTF8,
  which most providers refuse; IP-literal domains (``a@[192.0.2.1]``) are
  rejected.
* Internationalised domains are encoded with IDNA 2008 and the UTS 46
  mapping (``anna@Bücher.example`` -> ``anna@xn--bcher-kva.example``).

Ordinary ASCII addresses take one precompiled regular expression; only the
unusual ones (non-ASCII, quotes, ``--`` in the domain) take the careful path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import idna

from stampcli.errors import InputError

MAX_ADDRESS = 254  # RFC 5321 path limit minus the angle brackets
MAX_LOCAL = 64
MAX_LABEL = 63

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Top-level label starts with a letter: a numeric TLD is not a domain.
_TLD = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+{_TLD})\.?")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACE = re.compile(r"\s")
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# A quoted string: printable ASCII except '"' and '\', or a backslash pair.
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_ASCII_LABEL = re.compile(_LABEL)


class InvalidAddress(InputError):
    """An address that cannot be sent to; ``reason`` is a few words for a person."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"invalid address {address!r}: {reason}")
        self.address = address
        self.reason = reason


def normalize_address(text: str) -> tuple[str, str]:
    """``(key, email)`` for ``text``, or :class:`InvalidAddress` saying what is wrong."""
    s = text.strip()
    match = _FAST.fullmatch(s)
    if match is not None:
        at, end = match.end(1), match.end(2)
        domain = match.group(2)
        if at <= MAX_LOCAL and end < MAX_ADDRESS and "--" not in domain:
            # Most addresses are already in normal form: then the text itself is the email.
            if end == len(s) and domain.islower():
                return s.lower(), s
            email = f"{match.group(1)}@{domain.lower()}"
            return email.lower(), email
    return _careful(text, s)


def normalize_keys(addresses: Sequence[str]) -> list[str]:
    """Normalised keys of ``addresses``; one InputError naming every bad one."""
    keys: list[str] = []
    bad: list[str] = []
    for text in addresses:
        try:
            keys.append(normalize_address(text)[0])
        except InvalidAddress as exc:
            bad.append(f"{text!r} ({exc.reason})")
    if bad:
        raise InputError("not an email address: " + ", ".join(bad))
    return keys


def is_valid_address(text: str) -> bool:
    """True if :func:`normalize_address` accepts ``text``."""
    try:
        normalize_address(text)
    except InvalidAddress:
        return False
    return True


def _careful(original: str, s: str) -> tuple[str, str]:
    def bad(reason: str) -> InvalidAddress:
        return InvalidAddress(original, reason)

    if not s:
        raise bad("empty address")
    if _CONTROL.search(s):
        raise bad("control character (line break, NUL, ...) in address")
    if s.startswith("<") and s.endswith(">") and s.count("<") == 1:
        inner = s[1:-1].strip()
        if not inner:
            raise bad("empty address")
        return _careful(original, inner)  # <anna@example.com>: the brackets are not part
    if s.endswith(">") and "<" in s:
        raise bad("a name and an address; keep only the address in this column")
    if "@" not in s:
        raise bad("no @ sign")
    local, _, domain = s.rpartition("@")
    if not local:
        raise bad("nothing before the @")
    if not domain:
        raise bad("nothing after the @")
    if local.startswith('"'):
        if not _QUOTED.fullmatch(local):
            if not local.isascii():
                raise bad("non-ASCII characters before the @ (SMTPUTF8 is not supported)")
            raise bad("badly quoted local part")
    else:
        if _SPACE.search(s):
            raise bad("space in address")
        if "@" in local:
            raise bad("more than one @")
        if not local.isascii():
            raise bad("non-ASCII characters before the @ (SMTPUTF8 is not supported)")
        if local.startswith(".") or local.endswith("."):
            raise bad("dot at the start or end of the part before the @")
        if ".." in local:
            raise bad("two dots in a row before the @")
        if not _DOT_ATOM.fullmatch(local):
            char = next(c for c in local if c != "." and not re.fullmatch(_ATEXT, c))
            raise bad(f"character {char!r} is not allowed before the @")
    if len(local) > MAX_LOCAL:
        raise bad(f"part before the @ is longer than {MAX_LOCAL} characters")
    if _SPACE.search(domain):
        raise bad("space in address")
    ascii_domain = _domain(domain, bad)
    email = f"{local}@{ascii_domain}"
    if len(email) > MAX_ADDRESS:
        raise bad(f"address is longer than {MAX_ADDRESS} characters")
    return email.lower(), email


def _domain(domain: str, bad: Callable[[str], InvalidAddress]) -> str:
    """The lower-cased ASCII (IDNA) form of ``domain``, or raise ``bad(reason)``."""
    if domain.startswith("[") and domain.endswith("]"):
        raise bad("IP-address domains are not accepted")
    if domain.endswith("."):
        domain = domain[:-1]  # the DNS root: a@example.com. is a@example.com
    if "." not in domain:
        raise bad("domain has no dot")
    if domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise bad("empty label in the domain (two dots in a row?)")
    if domain.isascii():
        ascii_domain = domain.lower()
        for label in ascii_domain.split("."):
            if len(label) > MAX_LABEL:
                raise bad(f"a domain label is longer than {MAX_LABEL} characters")
            if not _ASCII_LABEL.fullmatch(label):
                if label.startswith("-") or label.endswith("-"):
                    raise bad("a domain label starts or ends with a hyphen")
                char = next(c for c in label if not (c.isalnum() or c == "-"))
                raise bad(f"character {char!r} is not allowed in the domain")
            if label.startswith("xn--"):
                try:
                    idna.decode(label)
                except (idna.IDNAError, UnicodeError):
                    raise bad(f"{label!r} is not a valid internationalised label") from None
    else:
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii").lower()
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise bad(f"not a valid internationalised domain ({_idna_reason(exc)})") from None
        if "." not in ascii_domain:
            raise bad("domain has no dot")
    tld = ascii_domain.rsplit(".", 1)[-1]
    if tld.isdigit():
        raise bad("the top-level domain is a number")
    if len(ascii_domain) > 253:
        raise bad("domain is longer than 253 characters")
    return ascii_domain


def _idna_reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:120]
