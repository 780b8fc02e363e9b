"""SPF (RFC 7208) as far as a pre-flight needs it: walk a domain's record and its includes.

:func:`walk` reads ``v=spf1`` records, follows ``include:`` and ``redirect=``,
expands ``a``, ``mx``, ``ip4`` and ``ip6`` into the networks they allow, and
counts what the RFC limits: at most 10 DNS-querying terms in all (``include``,
``a``, ``mx``, ``ptr``, ``exists``, ``redirect``) and at most 2 void lookups.
It answers which include names appear anywhere in the tree and whether an IP
address is allowed (:meth:`SpfWalk.allows`); macros (``%{...}``) are noted and
not expanded. Nothing is evaluated against a live connection: this says what
the record permits, not what a receiver decided.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from stampcli.dnscheck.lookup import Lookup

LOOKUP_LIMIT = 10
VOID_LIMIT = 2
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class SpfWalk:
    domain: str
    record: str | None = None  # the top record, or None when there is none
    records_found: int = 0  # v=spf1 records at the top name (more than 1: permerror)
    lookups: int = 0
    voids: int = 0
    includes: set[str] = field(default_factory=set)
    networks: list[Network] = field(default_factory=list)
    all_qualifier: str | None = None  # of the top record's "all" ("-", "~", "?", "+")
    problems: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip.version == n.version and ip in n for n in self.networks)

    def covers_include(self, name: str) -> bool:
        name = name.lower()
        return any(i == name or i.endswith("." + name) for i in self.includes)


def spf_records(texts: tuple[str, ...]) -> list[str]:
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def walk(lookup: Lookup, domain: str) -> SpfWalk:
    result = SpfWalk(domain)
    answer = lookup.txt(domain)
    if answer.status in ("timeout", "error"):
        result.timed_out.append(answer.detail)
        return result
    records = spf_records(answer.records)
    result.records_found = len(records)
    if not records:
        return result
    result.record = records[0]
    _walk_record(lookup, domain, records[0], result, top=True, seen={domain})
    return result


def _walk_record(
    lookup: Lookup, domain: str, record: str, out: SpfWalk, *, top: bool, seen: set[str]
) -> None:
    redirect: str | None = None
    for term in record.split()[1:]:
        qualifier = term[0] if term[0] in "+-~?" else "+"
        mech = term[1:] if term[0] in "+-~?" else term
        low = mech.lower()
        if "%{" in mech:
            out.problems.append(f"{domain}: {term} uses a macro; not expanded here")
            if not low.startswith(("ip4:", "ip6:", "all")):
                out.lookups += 1
            continue
        if low.startswith("redirect="):
            redirect = mech.split("=", 1)[1]
            continue
        if "=" in low:  # exp= and unknown modifiers
            continue
        name, _, arg = mech.partition(":")
        name = name.lower().split("/", 1)[0]
        if name == "all":
            if top:
                out.all_qualifier = qualifier
            continue
        if name in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(arg, strict=False)
            except ValueError:
                out.problems.append(f"{domain}: {term} is not a valid network")
                continue
            if qualifier == "+":
                out.networks.append(network)
            continue
        if name in ("include", "a", "mx", "ptr", "exists"):
            out.lookups += 1
        else:
            out.problems.append(f"{domain}: unknown mechanism {term!r}")
            continue
        if name == "include":
            target = arg.lower().rstrip(".")
            out.includes.add(target)
            if target in seen:
                out.problems.append(f"{domain}: include:{target} loops")
                continue
            _follow(lookup, target, out, seen)
        elif name in ("a", "mx"):
            target = (arg.split("/", 1)[0] or domain).lower()
            _expand(lookup, name, target, qualifier, mech, out)
    if redirect is not None:
        out.lookups += 1
        target = redirect.lower().rstrip(".")
        out.includes.add(target)
        if target not in seen:
            _follow(lookup, target, out, seen)


def _follow(lookup: Lookup, target: str, out: SpfWalk, seen: set[str]) -> None:
    if out.lookups > LOOKUP_LIMIT:
        return  # already a permerror; asking more would only take time
    answer = lookup.txt(target)
    if answer.status in ("timeout", "error"):
        out.timed_out.append(answer.detail)
        return
    records = spf_records(answer.records)
    if not records:
        out.voids += 1
        out.problems.append(f"{target} (included) has no SPF record: the include is a permerror")
        return
    _walk_record(lookup, target, records[0], out, top=False, seen={*seen, target})


def _expand(
    lookup: Lookup, name: str, target: str, qualifier: str, mech: str, out: SpfWalk
) -> None:
    hosts = [target]
    if name == "mx":
        answer = lookup.ask(target, "MX")
        if answer.status in ("timeout", "error"):
            out.timed_out.append(answer.detail)
            return
        if answer.void:
            out.voids += 1
            return
        hosts = list(answer.records)[:10]
    prefix4, prefix6 = 32, 128
    if "/" in mech:
        cidr = mech.split("/", 1)[1]
        parts = cidr.split("/")
        if parts[0].isdigit():
            prefix4 = int(parts[0])
        if len(parts) > 2 and parts[2].isdigit():
            prefix6 = int(parts[2])
    for host in hosts:
        answer = lookup.addresses(host)
        if answer.status in ("timeout", "error"):
            out.timed_out.append(answer.detail)
            continue
        if answer.void:
            out.voids += 1
            continue
        if qualifier != "+":
            continue
        for address in answer.records:
            ip = ipaddress.ip_address(address)
            prefix = prefix4 if ip.version == 4 else prefix6
            out.networks.append(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
