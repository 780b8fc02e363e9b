"""An authoritative DNS server on 127.0.0.1 for tests (dnslib, UDP and TCP, own threads).

Records are kept in a dict that tests change while the server runs::

    with DNSTestServer() as dns:
        dns.add("s1._domainkey.acme.example", "TXT", "v=DKIM1; k=rsa; p=...")
        dns.add("acme.example", "MX", "10 mx.acme.example")
        dns.silent("slow.example")          # never answered: a time-out
        resolver = dns.resolver()            # a dnspython resolver pointed at it

A name it has no record of gets NXDOMAIN; a name with records of other types
gets an empty NOERROR answer (what real servers do).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import dns.resolver
from dnslib import QTYPE, RCODE, RR, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer


class _Zone(BaseResolver):  # type: ignore[misc]  # dnslib has no type hints
    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, str]]] = {}
        self.silent: set[str] = set()
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        reply = request.reply()
        with self.lock:
            if name in self.silent:
                # dnslib's handler logs a DNSError and sends nothing: the client times out
                raise DNSError(f"silent for {name}")
            found = self.records.get(name)
            if found is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for rtype, text in found:
                if rtype == qtype or (rtype == "CNAME" and qtype != "CNAME"):
                    zone = f"{name}. 60 IN {rtype} {text}"
                    reply.add_answer(*RR.fromZone(zone))
        return reply


class _QuietLogger:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class DNSTestServer:
    """dnslib serving a dict of records on 127.0.0.1 (a free port, UDP and TCP)."""

    def __init__(self) -> None:
        self.zone = _Zone()
        self._udp: DNSServer | None = None
        self._tcp: DNSServer | None = None
        self.port = 0

    def add(self, name: str, rtype: str, value: str) -> None:
        """One record; TXT values are quoted here (split in 255-byte strings)."""
        if rtype == "TXT":
            raw = value.encode("ascii")
            chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
            value = " ".join('"' + c.decode("ascii").replace('"', '\\"') + '"' for c in chunks)
        with self.zone.lock:
            self.zone.records.setdefault(name.rstrip(".").lower(), []).append((rtype, value))

    def remove(self, name: str, rtype: str | None = None) -> None:
        with self.zone.lock:
            key = name.rstrip(".").lower()
            kept = [
                r for r in self.zone.records.get(key, []) if rtype is not None and r[0] != rtype
            ]
            if kept:
                self.zone.records[key] = kept
            else:
                self.zone.records.pop(key, None)

    def silent(self, name: str) -> None:
        """Never answer queries for ``name`` (the client's time-out fires)."""
        with self.zone.lock:
            self.zone.silent.add(name.rstrip(".").lower())

    def resolver(self, lifetime: float = 2.0) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = lifetime
        resolver.timeout = lifetime
        return resolver

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> DNSTestServer:
        # a free UDP port may be taken for TCP by another process: try a few ports
        for attempt in range(20):
            self._udp = DNSServer(self.zone, port=0, address="127.0.0.1", logger=_QuietLogger())
            self.port = self._udp.server.server_address[1]
            try:
                self._tcp = DNSServer(
                    self.zone,
                    port=self.port,
                    address="127.0.0.1",
                    tcp=True,
                    logger=_QuietLogger(),
                )
                break
            except OSError:
                self._udp.server.server_close()
                if attempt == 19:
                    raise
        self._udp.start_thread()
        self._tcp.start_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.server.shutdown()
                server.server.server_close()
