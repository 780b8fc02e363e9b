"""Header values: injection checks, RFC 2047 encoded words, addresses, folding.

Everything here produces ASCII header lines (``Name: value`` with ``CRLF SP``
folds, no trailing CRLF) that stay under 78 octets where the value allows and
never reach 998. Header values are built from subscriber data, so a CR, LF or
other control character is refused with :class:`RecipientError` instead of
being silently stripped: a row that tries to inject headers should be looked at.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import quote

import idna

from stampcli.errors import RecipientError

MAX_LINE = 998  # RFC 5322 hard limit, without CRLF
SOFT_LINE = 78  # RFC 5322 "SHOULD"
_ENCODED_WORD_MAX = 75  # RFC 2047

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 5322 atext plus space: a display name made only of these needs no quotes.
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
# ...and for showing a decoded name: anything but the RFC 5322 specials and controls.
_PHRASE_OK = re.compile(r'[^()<>\[\]:;@\\,."\x00-\x1f\x7f]*')
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Characters that may stand as themselves in a Q-encoded word inside a phrase (RFC 2047 5(3)).
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


class HeaderInjection(RecipientError):
    """A header value would contain CR, LF or another control character."""

    def __init__(self, message: str, header: str) -> None:
        super().__init__(message)
        self.header = header


def check_value(name: str, value: str, source: str | None = None) -> str:
    """``value`` unchanged, or :class:`RecipientError` if it holds a line break or control char."""
    bad = _CONTROL.search(value)
    if bad is not None:
        what = {"\r": "a carriage return (CR)", "\n": "a line break (LF)"}.get(
            bad.group(), f"the control character U+{ord(bad.group()):04X}"
        )
        origin = f" (from {source})" if source else ""
        raise HeaderInjection(
            f"header injection refused: the {name} header{origin} would contain {what}", name
        )
    return value


def idna_domain(domain: str) -> str:
    """``domain`` as ASCII: IDNA (UTS 46) for internationalised names, lower case."""
    domain = domain.strip().rstrip(".")
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise RecipientError(
            f"the domain {domain!r} is not a valid internationalised name: {exc}"
        ) from None


def ascii_addr_spec(address: str) -> str:
    """``local@domain`` with the domain IDNA-encoded; a non-ASCII local part needs SMTPUTF8."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain:
        raise RecipientError(f"{address!r} is not an email address")
    if not local.isascii():
        raise RecipientError(
            f"{address!r} has a non-ASCII local part, which needs SMTPUTF8; stamp sends "
            "7-bit messages only"
        )
    if not _DOT_ATOM.fullmatch(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{idna_domain(domain)}"


# --------------------------------------------------------------------------- encoded words


def _q_encode(data: bytes) -> str:
    return "".join(chr(b) if b in _Q_SAFE else ("_" if b == 0x20 else f"={b:02X}") for b in data)


def encoded_words(text: str, first_room: int = _ENCODED_WORD_MAX) -> list[str]:
    """``text`` as UTF-8 encoded words (Q or B, whichever is shorter), each <= 75 chars.

    Words are split on character boundaries, so every word decodes on its own.
    The first word is limited to ``first_room`` characters to fit the header name.
    """
    raw = text.encode("utf-8")
    q_len = len(_q_encode(raw))
    b_len = (len(raw) + 2) // 3 * 4
    use_q = q_len <= b_len
    prefix = "=?utf-8?q?" if use_q else "=?utf-8?b?"
    chunks: list[bytes] = []
    room = max(first_room, 30) - len(prefix) - 2
    chunk = b""
    size = 0
    for ch in text:
        piece = ch.encode("utf-8")
        step = len(_q_encode(piece)) if use_q else 0
        grown = size + step if use_q else (len(chunk) + len(piece) + 2) // 3 * 4
        if chunk and grown > room:
            chunks.append(chunk)
            chunk = piece
            size = len(_q_encode(piece)) if use_q else 0
            room = _ENCODED_WORD_MAX - len(prefix) - 2
        else:
            chunk += piece
            size = grown
    if chunk or not chunks:
        chunks.append(chunk)
    return [
        prefix + (_q_encode(data) if use_q else base64.b64encode(data).decode("ascii")) + "?="
        for data in chunks
    ]


def _needs_encoding(text: str) -> bool:
    # A literal "=?" could be read as an encoded word by the receiver: encode it.
    return not text.isascii() or "=?" in text


def _fold_words(name: str, words: list[str], sep: str = " ") -> str:
    """``Name: w1 w2 ...`` folded before a word when a line would pass 78 octets."""
    line = f"{name}:"
    lines: list[str] = []
    for i, word in enumerate(words):
        gap = " " if i == 0 else sep
        if i > 0 and len(line) + len(gap) + len(word) > SOFT_LINE:
            lines.append(line)
            line = " " + word
        else:
            line += gap + word
    lines.append(line)
    if any(len(x) > MAX_LINE for x in lines):
        raise RecipientError(
            f"the {name} header has a word over {MAX_LINE} characters and cannot be sent"
        )
    return "\r\n".join(lines)


def unstructured(name: str, value: str) -> str:
    """A folded ``Name: value`` line for Subject and custom headers."""
    check_value(name, value)
    if _needs_encoding(value):
        return _fold_words(name, encoded_words(value, _ENCODED_WORD_MAX - len(name) - 2))
    if len(name) + 2 + len(value) <= SOFT_LINE and value[:1] != " ":
        return f"{name}: {value}"  # what _fold_ascii gives for a line that needs no fold
    # Fold at existing single spaces only: unfolding restores exactly the same value.
    parts = value.split(" ")
    if len(parts) > 1 and parts[0] == "":
        # a leading space would be eaten by the fold after "Name:"
        value = value.lstrip(" ")
        parts = value.split(" ")
    return _fold_ascii(name, parts)


def _fold_ascii(name: str, parts: list[str]) -> str:
    line = f"{name}: "
    lines: list[str] = []
    first = True
    for part in parts:
        if first:
            line += part
            first = False
        elif part and len(line) + 1 + len(part) > SOFT_LINE and line.strip():
            lines.append(line)
            line = " " + part
        else:
            line += " " + part
    lines.append(line)
    if any(len(x) > MAX_LINE for x in lines):
        raise RecipientError(
            f"the {name} header has a word over {MAX_LINE} characters and cannot be sent"
        )
    return "\r\n".join(lines)


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class EncodedAddress:
    header: str  # the encoded value, ASCII, possibly with encoded words (not folded)
    words: tuple[str, ...]  # the same split into foldable pieces
    display: str  # decoded, as a person reads it: 'Gärtner Club <news@x.example>'
    addr_spec: str  # local@domain, domain IDNA-encoded


def _quote_phrase(name: str) -> str:
    if _PHRASE_OK.fullmatch(name) and name.strip() == name and "  " not in name:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def address(display_name: str, addr: str, header: str = "From") -> EncodedAddress:
    """An address header value from a display name (may be empty) and an address."""
    check_value(header, display_name, "the display name")
    check_value(header, addr, "the address")
    spec = ascii_addr_spec(addr)
    name = " ".join(display_name.split())
    if not name:
        return EncodedAddress(spec, (spec,), spec, spec)
    display = f"{_quote_phrase(name)} <{spec}>"
    if _needs_encoding(name):
        words = encoded_words(name, _ENCODED_WORD_MAX - len(header) - 2)
    else:
        words = _quote_phrase(name).split(" ")
        if words[0].startswith('"'):
            # a quoted string cannot be folded inside safely in all readers; keep it whole
            words = [_quote_phrase(name)]
    words.append(f"<{spec}>")
    return EncodedAddress(" ".join(words), tuple(words), display, spec)


# the address of a rendered ``to:``: the last ``<...>``, so a name holding ``<`` stays a name
_ANGLE_ADDR = re.compile(r"<([^<>]*)>\s*\Z")


class WrongRecipient(RecipientError):
    """The campaign's ``to:`` rendered an address that is not the recipient's."""


def to_address(rendered: str, recipient: str) -> EncodedAddress:
    """The To address from the campaign's ``to:`` as rendered for ``recipient``.

    ``rendered`` is ``Name <address>`` or a bare address. The address must be the
    recipient's own (the ledger's, compared without case): the envelope goes to
    the recipient whatever the template says, and a template that names someone
    else (another column, a typo) must not show or reach them. The header carries
    ``recipient`` itself; an empty name leaves the bare address.
    """
    check_value("To", rendered, "to")
    value = rendered.strip()
    m = _ANGLE_ADDR.search(value)
    if m is None:
        name, addr = "", value
    else:
        name, addr = value[: m.start()].strip(), m.group(1).strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':  # written quoted in the template
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    try:
        same = bool(addr) and ascii_addr_spec(addr).lower() == recipient.lower()
    except RecipientError:
        same = False
    if not same:
        raise WrongRecipient(
            "to: must give the recipient's own address (as in "
            '"{{ first_name }} {{ last_name }} <{{ email }}>"); it gave '
            + ("no address" if not addr else "another one")
            + ", so this recipient is not sent"
        )
    return address(name, recipient, "To")


def address_line(name: str, value: EncodedAddress) -> str:
    return _fold_words(name, list(value.words))


def address_list_line(name: str, values: list[EncodedAddress]) -> str:
    """An address-list header (To, Cc of the send API), folded between words."""
    words: list[str] = []
    for i, value in enumerate(values):
        part = list(value.words)
        if i < len(values) - 1:
            part[-1] += ","
        words += part
    return _fold_words(name, words)


# --------------------------------------------------------------------------- List-Unsubscribe


_URL_SAFE = ":/?#[]@!$&'()*+,;=%~-._"
_URL_UNSAFE = re.compile(r'[<> \t"]')


def clean_url(url: str, name: str) -> str:
    """An URL fit for a header: no spaces or line breaks, non-ASCII percent-encoded."""
    check_value(name, url)
    url = url.strip()
    if not url:
        raise RecipientError(f"the {name} URL is empty")
    if _URL_UNSAFE.search(url) or not url.isascii():
        url = quote(url, safe=_URL_SAFE)
    return url


def list_unsubscribe(url: str | None, mailto: str | None) -> str:
    """The decoded List-Unsubscribe value: the HTTPS URL first, then the mailto (RFC 8058)."""
    parts = []
    if url:
        parts.append(f"<{clean_url(url, 'List-Unsubscribe')}>")
    if mailto:
        parts.append(f"<{clean_url(mailto, 'List-Unsubscribe')}>")
    return ", ".join(parts)


def list_line(name: str, value: str) -> str:
    """Fold a comma-separated list of ``<...>`` items between items."""
    check_value(name, value)
    items = value.split(", ")
    return _fold_words(name, [x + "," for x in items[:-1]] + items[-1:])


def mailto_uri(mailto: str, token: str | None) -> str:
    """``mailto:ADDR?subject=unsubscribe`` from a bare address or a full mailto: URI."""
    text = mailto.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:") :]
    addr, _, query = text.partition("?")
    spec = ascii_addr_spec(addr)
    if not query:
        subject = f"unsubscribe {token}" if token else "unsubscribe"
        query = "subject=" + quote(subject, safe="")
    return f"mailto:{spec}?{query}"
