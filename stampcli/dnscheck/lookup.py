"""DNS questions for the pre-flight, with a time limit on each and answers kept.

A :class:`Lookup` wraps one dnspython resolver (the system's, or one pointed
at ``--dns-server HOST[:PORT]``) and gives each answer as an :class:`Answer`:
the records, or that the name does not exist, has no such record, or did not
answer in time. It never raises for a DNS failure, so a check can say what
it could not learn instead of hanging or stopping. Answers are cached for the
run: the same name is asked once however many checks read it.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.resolver

from stampcli.errors import ConfigError

Status = Literal["ok", "nxdomain", "empty", "timeout", "error"]


@dataclass(frozen=True, slots=True)
class Answer:
    status: Status
    records: tuple[str, ...] = ()
    detail: str = ""

    @property
    def void(self) -> bool:
        """No record (the name does not exist or has none of this type): RFC 7208 4.6.4."""
        return self.status in ("nxdomain", "empty")


def parse_server(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` or ``[V6]:PORT`` of a DNS server; ConfigError naming ``--dns-server``."""
    host, port = text.strip(), 53
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host = inside
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, _, tail = host.partition(":")
        port = _port(tail, text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"--dns-server {text}: give the server's IP address (and :PORT)"
        ) from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"--dns-server {whole}: {text!r} is not a port number")
    return int(text)


class Lookup:
    """Cached DNS questions through one resolver, each limited to ``timeout`` seconds."""

    def __init__(
        self,
        resolver: dns.resolver.Resolver | None = None,
        *,
        server: str | None = None,
        timeout: float = 3.0,
        budget: float = 30.0,
    ) -> None:
        if resolver is None:
            if server is not None:
                host, port = parse_server(server)
                resolver = dns.resolver.Resolver(configure=False)
                resolver.nameservers = [host]
                resolver.port = port
            else:
                try:
                    resolver = dns.resolver.Resolver()
                except dns.resolver.NoResolverConfiguration:
                    raise ConfigError(
                        "this machine has no DNS resolver configured; give --dns-server"
                    ) from None
        resolver.lifetime = timeout
        resolver.timeout = timeout
        self.resolver = resolver
        self.timeout = timeout
        # all questions together stop after ``budget`` seconds: a resolver that answers
        # nothing costs one time-out a question, and a pre-flight asks ~20
        self._deadline = time.monotonic() + budget
        self.budget = budget
        self._cache: dict[tuple[str, str], Answer] = {}

    def ask(self, name: str, rtype: str) -> Answer:
        key = (name.rstrip(".").lower(), rtype)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._ask(*key)
        return found

    def _ask(self, name: str, rtype: str) -> Answer:
        left = self._deadline - time.monotonic()
        if left <= 0:
            return Answer(
                "timeout", detail=f"{name} {rtype} not asked: the {self.budget:g} s budget ran out"
            )
        self.resolver.lifetime = min(self.timeout, left)
        try:
            answer = self.resolver.resolve(name, rtype, search=False)
        except dns.resolver.NXDOMAIN:
            return Answer("nxdomain", detail=f"{name} does not exist")
        except dns.resolver.NoAnswer:
            return Answer("empty", detail=f"{name} has no {rtype} record")
        except dns.exception.Timeout:
            return Answer("timeout", detail=f"no answer for {name} {rtype} in {self.timeout:g} s")
        except (dns.resolver.NoNameservers, dns.exception.DNSException) as exc:
            return Answer("error", detail=f"{name} {rtype}: {exc}")
        records: list[str] = []
        for rdata in answer:
            if rtype == "TXT":
                strings = rdata.strings
                records.append(b"".join(strings).decode("utf-8", "replace"))
            elif rtype == "MX":
                records.append(str(rdata.exchange).rstrip(".").lower())
            else:
                records.append(rdata.to_text().rstrip("."))
        return Answer("ok", tuple(records))

    def txt(self, name: str) -> Answer:
        return self.ask(name, "TXT")

    def addresses(self, name: str) -> Answer:
        """A and AAAA together (ok when either has one)."""
        a, aaaa = self.ask(name, "A"), self.ask(name, "AAAA")
        if a.status == "ok" or aaaa.status == "ok":
            return Answer("ok", a.records + aaaa.records)
        for failed in (a, aaaa):
            if failed.status in ("timeout", "error"):
                return failed
        return a
