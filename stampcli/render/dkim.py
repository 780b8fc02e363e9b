"""DKIM signatures (RFC 6376, RSA-SHA256; RFC 8463, Ed25519-SHA256) on rendered messages.

dkimpy does the canonicalization (relaxed/relaxed), the header selection, the
``DKIM-Signature`` layout and folding; what it is not used for is the private
key operation. Its RSA is pure Python (~5.4 ms a signature with a 2048-bit
key, 20 times a whole render) and it parses the PEM key again on every call;
here the key is parsed once (:mod:`stampcli.config.dkim`) and the signature
is made by OpenSSL through ``cryptography`` (~0.2 ms). PKCS#1 v1.5 and
Ed25519 are deterministic, so the bytes are the same as dkimpy's own.

The signed headers are those a mailbox provider looks at, when the message
has them: From, To, Subject, Date, Message-ID, Reply-To, the List-* headers
(RFC 8058 wants List-Unsubscribe and List-Unsubscribe-Post signed, or the
one-click is ignored), Feedback-ID and the MIME headers. The singletons are
signed once more than they occur ("oversigned"), so a header of that name
added on the way breaks the signature instead of being shown.
"""

from __future__ import annotations

import base64
import re
import time

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, utils
from dkim.canonicalization import CanonicalizationPolicy, correct_empty_body, strip_trailing_lines

from stampcli.config.dkim import DkimConfig, DkimKey, load_key

SIGNED = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
)
# at most one each in a message: an extra one added on the way must break the signature
OVERSIGNED = frozenset(
    {
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"reply-to",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    }
)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_SPACES = re.compile(rb"  +")
_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


class _Signing(dkim.DKIM):  # type: ignore[misc]  # dkimpy has no type hints
    """dkimpy's DKIM with the private-key step done by a key parsed once."""

    def __init__(self, message: bytes, key: DkimKey) -> None:
        super().__init__(message, signature_algorithm=key.algorithm)
        self._key = key

    def sign_parsed(
        self, selector: bytes, domain: bytes, include: tuple[bytes, ...], body: bytes
    ) -> bytes:
        """What ``DKIM.sign`` returns, with the parsed key (``DKIM-Signature: ...\\r\\n``)."""
        self.hasher = dkim.HASH_ALGORITHMS[self.signature_algorithm]
        self.include_headers = include
        body = canonical_body(body)
        bodyhash = base64.b64encode(self.hasher(body).digest())
        fields = [
            (b"v", b"1"),
            (b"a", self.signature_algorithm),
            (b"c", _POLICY.to_c_value()),
            (b"d", domain),
            (b"i", b"@" + domain),
            (b"q", b"dns/txt"),
            (b"s", selector),
            (b"t", str(int(time.time())).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", bodyhash),
            (b"b", b"0" * 60),  # folds b= onto a line of its own, as dkimpy does
        ]
        value: bytes = self.gen_header(fields, include, _POLICY, b"DKIM-Signature", None)
        return b"DKIM-Signature: " + value

    def gen_header(
        self,
        fields: list[tuple[bytes, bytes]],
        include_headers: tuple[bytes, ...],
        canon_policy: CanonicalizationPolicy,
        header_name: bytes,
        pk: object,
        standardize: bool = False,
    ) -> bytes:
        # DKIM.gen_header without its pure-Python RSA: hash as dkimpy does, sign here
        header_value = b"; ".join(b"=".join(x) for x in fields)
        header_value = dkim.fold(header_value, namelen=len(header_name), linesep=b"\r\n")
        header_value = dkim.RE_BTAG.sub(b"\\1", header_value)
        h = dkim.HashThrough(self.hasher(), False)
        headers = canon_policy.canonicalize_headers(self.headers)
        self.signed_headers = dkim.hash_headers(
            h, canon_policy, headers, include_headers, (header_name, b" " + header_value), {}
        )
        signature = _sign_digest(self._key, h.digest())
        at = next(i for i, (tag, _) in enumerate(fields) if tag == b"b")
        fields[at] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(x) for x in fields) + b"\r\n"
        folded: bytes = dkim.fold(value, namelen=len(header_name), linesep=b"\r\n")
        return folded


def canonical_body(body: bytes) -> bytes:
    """The relaxed canonical form of ``body`` (CRLF line ends), RFC 6376 3.4.4.

    The same bytes as dkimpy's ``Relaxed.canonicalize_body`` (a test holds them
    equal), made with ``bytes`` methods in C instead of its regex passes, which try
    a match at every blank: ~4 ms on a 120 KB message, as much as the render.
    Tabs become spaces, runs of spaces one space, a space before a line end goes,
    and so do the empty lines at the end.
    """
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _SPACES.sub(b" ", body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    canonical: bytes = correct_empty_body(strip_trailing_lines(body))
    return canonical


def _sign_digest(key: DkimKey, digest: bytes) -> bytes:
    private = key.key
    if isinstance(private, ed25519.Ed25519PrivateKey):
        # RFC 8463 3: Ed25519 (pure) over the SHA-256 hash of the signed headers
        return private.sign(digest)
    return private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


class DkimSigner:
    """Signs rendered messages for one ``dkim:`` section with a key parsed once."""

    def __init__(self, config: DkimConfig, key: DkimKey) -> None:
        self.config = config
        self.key = key
        self._domain = config.domain.encode("ascii")
        self._selector = config.selector.encode("ascii")

    def include_for(self, names: list[bytes]) -> tuple[bytes, ...]:
        """The ``h=`` list for a message whose headers are ``names`` (lower case, in order)."""
        present = [n for n in names if n in SIGNED]
        extra = [n for n in dict.fromkeys(present) if n in OVERSIGNED]
        return (*present, *extra)

    def signature(self, raw: bytes) -> bytes:
        """The ``DKIM-Signature`` header (folded, ending in CRLF) for ``raw`` (CRLF line ends)."""
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            head, body = (raw if raw.endswith(b"\r\n") else raw + b"\r\n"), b""
        else:
            head, body = raw[: end + 2], raw[end + 4 :]
        # dkimpy parses the header block only: splitting a 100 KB body into lines to
        # join them again cost ~1 ms a message, and the body is hashed here
        signing = _Signing(head, self.key)
        names = [name.lower() for name, _ in signing.headers]
        include = self.include_for(names)
        return bytes(signing.sign_parsed(self._selector, self._domain, include, body))

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with its signature put first (a signature header above what it signs).

        Bare CR or LF are made CRLF first, as the SMTP adapter does before sending: a
        signature over other line ends than those delivered would not verify.
        """
        pairs = raw.count(b"\r\n")
        if raw.count(b"\n") != pairs or raw.count(b"\r") != pairs:
            raw = _LINE_END.sub(b"\r\n", raw)
        return self.signature(raw) + raw


def signer_for(config: DkimConfig | None) -> DkimSigner | None:
    """The signer of a campaign's ``dkim:`` section (its key read and parsed now), or None."""
    return None if config is None else DkimSigner(config, load_key(config))
