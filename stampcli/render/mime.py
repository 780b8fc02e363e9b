"""MIME assembly from stdlib encoders: the exact bytes a provider receives.

``email.message.EmailMessage`` costs ~3 ms per message; joining parts encoded
with :mod:`binascii` costs well under a tenth of that. The structure is fixed
and simple, so it is built here by hand and checked by parsing in the tests::

    multipart/mixed                      (only with attachments)
      multipart/alternative              (text/plain alone for a text template)
        text/plain                       7bit or quoted-printable
        multipart/related                (only with inline images)
          text/html                      quoted-printable
          image/...                      base64, Content-ID, inline
      application/... ; attachment       base64

Every line ends in CRLF and is at most 76 octets in bodies (998 in headers);
the output is pure ASCII. Boundaries contain ``=_``, which can occur neither in
quoted-printable nor in base64 text, so they never collide with a body.
"""

from __future__ import annotations

import binascii
import mimetypes
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from stampcli.render.headers import encoded_words
from stampcli.render.message import Attachment

CRLF = b"\r\n"


def qp_encode(text: str) -> bytes:
    """UTF-8 ``text`` as quoted-printable with CRLF line ends (soft breaks at 76)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", CRLF)


class QPCache:
    """Quoted-printable, encoded line by line with a cache of lines already seen.

    QP encoding of one line does not depend on the other lines, and most lines of
    a newsletter are the same in every message, so each distinct line is encoded
    once. The result is the same as :func:`qp_encode` of the whole text.
    """

    def __init__(self, max_lines: int = 20_000) -> None:
        self._lines: dict[str, bytes] = {}
        self._max = max_lines

    def encode(self, text: str) -> bytes:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        last = lines.pop()  # the text after the final newline ('' if it ends with one)
        cache = self._lines
        out = []
        for line in lines:
            enc = cache.get(line)
            if enc is None:
                enc = qp_encode(line + "\n")
                if len(cache) >= self._max:
                    cache.clear()
                cache[line] = enc
            out.append(enc)
        if last:
            out.append(qp_encode(last))
        return b"".join(out)


def b64_encode(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF, as MIME wants it."""
    out = bytearray()
    # 57 input bytes make one 76-character line
    for i in range(0, len(data), 57):
        out += binascii.b2a_base64(data[i : i + 57], newline=False)
        out += CRLF
    return bytes(out)


def _fits_7bit(plain: str) -> bool:
    """ASCII, no trailing blanks (stripped in transit), no NUL, no boundary marker, short lines."""
    return (
        plain.isascii()
        and " \n" not in plain
        and "\t\n" not in plain
        and not plain.endswith((" ", "\t"))
        and "\x00" not in plain
        and "=_" not in plain
        and max(map(len, plain.split("\n"))) <= 998
    )


def text_body(text: str, qp: QPCache | None = None) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body) for a text part: 7bit when it can be, else QP."""
    plain = text.replace("\r\n", "\n").replace("\r", "\n")
    if _fits_7bit(plain):
        return "7bit", plain.encode("ascii").replace(b"\n", CRLF)
    return "quoted-printable", qp.encode(plain) if qp is not None else qp_encode(plain)


def _param(name: str, value: str) -> str:
    """A MIME parameter; RFC 2231 ``name*=utf-8''...`` for non-ASCII values."""
    if value.isascii() and not any(c in value for c in '"\\\r\n'):
        return f'{name}="{value}"'
    return f"{name}*=utf-8''{quote(value, safe='')}"


def _encoded_filename(name: str) -> str:
    # RFC 2231 for Content-Disposition, RFC 2047 in Content-Type name= for old readers.
    if name.isascii() and not any(c in name for c in '"\\\r\n'):
        return f'name="{name}"'
    return 'name="' + " ".join(encoded_words(name)) + '"'


def guess_type(filename: str) -> str:
    kind, encoding = mimetypes.guess_type(filename, strict=False)
    if kind is None or encoding is not None:
        return "application/octet-stream"
    return kind


def attachment_part(att: Attachment) -> bytes:
    """A complete base64 part (headers and body) for an attachment or inline image."""
    # parameters on folded lines of their own: a long file name stays under 998 octets
    lines = [f"Content-Type: {att.content_type};\r\n {_encoded_filename(att.filename)}"]
    lines.append("Content-Transfer-Encoding: base64")
    if att.content_id is not None:
        lines.append(f"Content-ID: <{att.content_id}>")
        lines.append(f"Content-Disposition: inline;\r\n {_param('filename', att.filename)}")
    else:
        lines.append(f"Content-Disposition: attachment;\r\n {_param('filename', att.filename)}")
    head = "\r\n".join(lines).encode("ascii")
    return head + CRLF + CRLF + b64_encode(att.data)


def leaf(content_type: str, cte: str, body: bytes) -> bytes:
    head = f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    return head.encode("ascii") + body


def multipart(subtype: str, boundary: str, parts: Iterable[bytes]) -> bytes:
    """A multipart entity (Content-Type header included) around already-encoded parts."""
    delim = b"--" + boundary.encode("ascii")
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode("ascii")]
    for part in parts:
        out.append(delim + CRLF)
        # the CRLF before a delimiter belongs to the delimiter, not to the part (RFC 2046)
        out.append(part + CRLF)
    out.append(delim + b"--" + CRLF)
    return b"".join(out)


def body(
    text: str,
    html: str | None,
    boundary: str,
    inline_parts: Sequence[bytes] = (),
    attachment_parts: Sequence[bytes] = (),
    qp: QPCache | None = None,
    *,
    html_qp: bytes | None = None,
    text_7bit: bool = False,
) -> bytes:
    """The MIME body entity (starting with its Content-Type header) for one message.

    ``html_qp`` is the HTML already quoted-printable encoded; ``text_7bit`` says
    ``text`` is known to fit 7bit (LF line ends), as the renderer's cache knows.
    ``html`` None: a text template's message, text/plain alone (in multipart/mixed
    with attachments).
    """
    if text_7bit:
        cte, text_bytes = "7bit", text.encode("ascii").replace(b"\n", CRLF)
    else:
        cte, text_bytes = text_body(text, qp)
    text_leaf = leaf('text/plain; charset="utf-8"', cte, text_bytes)
    if html is None:
        if attachment_parts:
            return multipart("mixed", boundary + "_m", [text_leaf, *attachment_parts])
        return text_leaf
    if html_qp is None:
        html_qp = qp.encode(html) if qp is not None else qp_encode(html)
    html_leaf = leaf('text/html; charset="utf-8"', "quoted-printable", html_qp)
    if inline_parts:
        html_leaf = multipart(
            'related; type="text/html"', boundary + "_r", [html_leaf, *inline_parts]
        )
    entity = multipart("alternative", boundary + "_a", [text_leaf, html_leaf])
    if attachment_parts:
        entity = multipart("mixed", boundary + "_m", [entity, *attachment_parts])
    return entity


def message(header_lines: Sequence[str], entity: bytes) -> bytes:
    """Header lines (each already folded, no CRLF at the end) plus MIME-Version and the entity."""
    head = "\r\n".join([*header_lines, "MIME-Version: 1.0"]) + "\r\n"
    return head.encode("ascii") + entity
