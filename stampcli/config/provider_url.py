"""Provider URLs (``smtp://user:pass@host:587``, ``sendgrid://KEY``) -> :class:`ProviderURL`.

The scheme, credentials, host and ``?options`` are split and checked against
the provider table (:mod:`stampcli.providers.registry`): an unknown scheme or
option, or an option value the scheme does not take, is refused with a
suggestion. The secrets inside are registered with :mod:`stampcli.redact`, and
errors never quote them. Every part is percent-decoded exactly once, so a
``${NAME}`` the loader put in percent-encoded reaches the provider byte for byte.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from stampcli import redact

# The provider table is stampcli.providers.registry (one entry per scheme); these
# are its views under the names this module has always used.
from stampcli.providers.registry import KEY_ONLY_SCHEMES as _KEY_ONLY_SCHEMES
from stampcli.providers.registry import OPTION_HINTS as _OPTION_HINTS
from stampcli.providers.registry import PROVIDER_OPTIONS, PROVIDER_SCHEMES
from stampcli.providers.registry import SECRET_OPTIONS as _SECRET_OPTIONS


@dataclass(frozen=True)
class ProviderURL:
    """A parsed provider DSN such as ``smtp://user:pass@host:587`` or ``sendgrid://KEY``.

    ``user``/``password`` hold the credentials part (for API providers the key
    is in ``user``, as in Symfony's DSNs); ``options`` the query string, names
    lower-cased and checked against :data:`PROVIDER_OPTIONS`.
    ``str()`` gives the redacted form, safe to print.
    """

    scheme: str
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    path: str
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def redacted(self) -> str:
        creds = ""
        if self.user is not None:
            creds = "***" if self.scheme not in ("smtp", "smtps") else self.user
            if self.password is not None:
                creds += ":***"
            if self.host or self.scheme in ("smtp", "smtps"):
                creds += "@"
        host = self.host or ""
        port = f":{self.port}" if self.port else ""
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return redact.redact(
            f"{self.scheme}://{creds}{host}{port}{self.path}" + (f"?{query}" if query else "")
        )

    def __str__(self) -> str:
        return self.redacted


def _decode(text: str) -> str:
    """Percent-decode ``text`` once; bytes that are not UTF-8 survive as surrogates."""
    return unquote(text, errors="surrogateescape")


def _encode(value: str) -> str:
    """Percent-encode every byte that is not unreserved: the inverse of :func:`_decode`."""
    return quote(value, safe="", errors="surrogateescape")


def _plain(value: str) -> bool:
    """A short word safe to quote back in an error (no secret looks like ``starttls``)."""
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]{0,32}", value)) and redact.redact(value) == value


def parse_provider_url(url: str) -> ProviderURL:
    """Parse and check a provider URL; registers its credentials as secrets.

    Every part (user, password or key, host, path, option names and values) is
    percent-decoded exactly once, after the URL has been split at its literal
    ``://``, ``?``, ``@``, ``:`` and ``&``. A ``${NAME}`` inside the URL arrives
    here percent-encoded (see :mod:`stampcli.config.loader`), so its value comes out
    exactly as set whatever it holds. Errors never quote a credential, nor any
    text that could be part of one.
    """
    if "://" not in url:
        raise ValueError(
            "a provider URL looks like smtp://user:pass@host:587, sendgrid://KEY or outbox://DIR"
        )
    written, rest = url.split("://", 1)
    scheme = written.lower()
    if scheme not in PROVIDER_SCHEMES:
        known = ", ".join(sorted(PROVIDER_SCHEMES))
        if not _plain(written):  # as written: lower case would hide a secret from redaction
            raise ValueError(f"the provider URL does not start with a known scheme; known: {known}")
        close = difflib.get_close_matches(scheme, PROVIDER_SCHEMES, n=1)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        raise ValueError(f"unknown provider scheme {scheme!r}{hint}; known: {known}")
    # API keys may contain '/', '+' or '=' (SES, Mailjet): take the credentials
    # part up to the last '@' before any query string by hand, not with urlsplit.
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    creds: str | None = None
    if "@" in rest:
        creds, rest = rest.rsplit("@", 1)
    elif scheme in _KEY_ONLY_SCHEMES and rest:
        # sendgrid://KEY: the whole authority is the key (case kept, unlike a host)
        creds, rest = rest.rstrip("/"), ""
    user = password = None
    if creds is not None:
        if ":" in creds:
            user, password = (_decode(p) for p in creds.split(":", 1))
        else:
            user = _decode(creds)
    for secret in (password, user if scheme not in ("smtp", "smtps") else None):
        redact.register(secret)
    if "#" in rest or "#" in query:
        raise ValueError(
            "a provider URL has no #fragment; write a '#' inside a password or key as %23, "
            "or take the value from the environment with ${NAME}"
        )
    host: str | None
    port: int | None = None
    path = ""
    if scheme == "outbox":
        host, path = None, _decode(rest)
        if not path:
            raise ValueError("outbox:// needs a folder, for example outbox://out/")
    else:
        parts = urlsplit(f"//{rest}")
        try:
            host = parts.hostname
            port = parts.port
        except ValueError:
            # urllib's own message quotes the text, which may hold a misplaced secret
            raise ValueError(
                "bad host or port in provider URL (a port is a number from 1 to 65535; "
                "write a '?', '@', '/' or ':' inside a password or key percent-encoded, "
                "or take the value from the environment with ${NAME})"
            ) from None
        if host is not None:
            # urllib lower-cases the host: a host taken from ${NAME} is a secret in
            # that lower case too, or the lower-cased form would be shown unredacted
            as_written = _decode(parts.netloc)  # host[:port]: the credentials are split off
            host = _decode(host)
            if redact.redact(as_written) != as_written:
                redact.register(host)
            if any(c in host for c in "@/?#\\ ") or not host.isprintable():
                raise ValueError(
                    "the host in a provider URL cannot contain '@', '/', '?', '#', spaces or "
                    "control characters (a ${NAME} inside a URL stands for one part of it; "
                    "a variable holding a whole URL must be the whole url: value)"
                )
        path = _decode(parts.path)
        if scheme in ("smtp", "smtps") and not host:
            raise ValueError(f"{scheme}:// needs a host, for example {scheme}://user:pass@host:587")
        if scheme in _KEY_ONLY_SCHEMES and not user:
            raise ValueError(f"{scheme}:// needs an API key, for example {scheme}://${{API_KEY}}")
    pairs = []
    for item in query.split("&") if query else ():
        # RFC 3986: '+' is a plus sign (AWS session tokens hold them), not a space
        name, _, value = item.partition("=")
        pairs.append((_decode(name), _decode(value)))
    options = _check_options(scheme, pairs)
    return ProviderURL(scheme, user, password, host, port, path, options)


def _check_options(scheme: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The query options with lower-case names, each known to ``scheme`` with a value it takes."""
    known = PROVIDER_OPTIONS[scheme]
    takes = f"takes: {', '.join(known)}" if known else "takes no options"
    if not all(_plain(name) for name, _ in pairs):
        # not an option name (checked before lower-casing, which would hide a secret
        # from redaction): most likely a piece of a password or key cut at a literal
        # '?' or '&', so it is not quoted back
        raise ValueError(
            f"the text after '?' is not name=value options; {scheme}:// {takes} "
            "(write a '?' or '&' inside a password or key as %3F or %26, or take "
            "the value from the environment with ${NAME})"
        )
    options = {name.lower(): value for name, value in pairs}
    # a session token is as secret as the key beside it: registered before any refusal
    for secret in (v for k, v in options.items() if k in _SECRET_OPTIONS):
        redact.register(secret)
    for name, value in options.items():
        note = f" ({_OPTION_HINTS[scheme, name]})" if (scheme, name) in _OPTION_HINTS else ""
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown option {name!r}{hint}; {scheme}:// {takes}{note}")
        allowed = known[name]
        if allowed is not None and value.lower() not in allowed:
            shown = f"{name}={value!r}" if _plain(value) else f"this {name}= value"
            raise ValueError(f"{shown} is not one of {', '.join(allowed)}{note}")
    return options
