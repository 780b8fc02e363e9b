"""The DNS pre-flight: what a receiving server will find about this campaign's sender.

One function, :func:`preflight`, asks the DNS about the From domain and gives
a :class:`DnsReport` of findings, each with a check name, a severity
(``error``: mail will fail authentication or bounce; ``warning``: it may, or
it could not be checked; ``info``; ``ok``), a sentence and the fix:

* ``mx``: the From domain has an MX (or at least an address) so replies and
  bounces reach it, and receivers that check the sender domain accept it;
* ``spf``: one valid ``v=spf1`` record, at most 10 DNS lookups and 2 void ones,
  no ``+all``; ``spf:<provider>``: it allows each configured provider (the SMTP
  relay's address, or the ESP's documented include);
* ``dkim``: the ``dkim:`` selector's record exists and holds the public half of
  ``key_file`` (or, without ``dkim:``, that SMTP sends go out unsigned);
* ``dmarc``: ``_dmarc.<From domain>`` (or of its organizational domain) and
  what its policy does to mail that fails;
* ``alignment``: DKIM ``d=`` and the return path against From, with DMARC's
  ``adkim``/``aspf`` (relaxed: the same organizational domain);
* ``unsubscribe``: the host of the List-Unsubscribe URL resolves.

Time-outs are findings (``warning``), never a hang: each question has its own
limit and all of them a budget (:class:`~stampcli.dnscheck.lookup.Lookup`).
The organizational domain is the last two labels (three under a few common
two-label suffixes such as ``co.uk``), not a Public Suffix List lookup.

One module of ~500 lines on purpose: the checks read each other's answers
(the SPF walk feeds the provider checks, the DMARC tags the alignment, the
parsed key the DKIM record check) and share the finding vocabulary; split, each
part would import the others' private results.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from stampcli.config import Campaign
from stampcli.config.dkim import DkimKey, load_key
from stampcli.dnscheck.lookup import Answer, Lookup
from stampcli.dnscheck.senders import ESPS, relay_esp
from stampcli.dnscheck.spf import LOOKUP_LIMIT, VOID_LIMIT, SpfWalk, walk
from stampcli.errors import ConfigError

Severity = Literal["error", "warning", "info", "ok"]
_TWO_LABEL_SUFFIXES = frozenset(
    {"co.uk", "org.uk", "ac.uk", "com.au", "net.au", "co.nz", "co.jp", "com.br", "co.za"}
)
_POLICY_MEANS = {
    "none": "monitoring only: mail that fails DMARC is delivered as if there were no record",
    "quarantine": "mail that fails DMARC (neither SPF nor DKIM aligned with From) goes to spam",
    "reject": "mail that fails DMARC (neither SPF nor DKIM aligned with From) is refused",
}


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    message: str
    fix: str = ""


@dataclass
class DnsReport:
    domain: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
        }

    def add(self, check: str, severity: Severity, message: str, fix: str = "") -> None:
        self.findings.append(Finding(check, severity, message, fix))


def org_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if ".".join(labels[-2:]) in _TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


def tags(record: str) -> dict[str, str]:
    """``k=v; k=v`` tag lists (DKIM, DMARC) with names lower-cased, whitespace dropped."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            out[name.strip().lower()] = "".join(value.split())
    return out


def _timeout(report: DnsReport, check: str, answer: Answer) -> bool:
    if answer.status in ("timeout", "error"):
        report.add(
            check,
            "warning",
            f"could not be checked: {answer.detail}",
            "run again, or give --dns-server / --dns-timeout",
        )
        return True
    return False


def preflight(campaign: Campaign, lookup: Lookup) -> DnsReport:
    """Every DNS finding for ``campaign``'s From domain (see the module docstring)."""
    domain = campaign.sender_domain
    report = DnsReport(domain)
    _check_mx(report, lookup, domain)
    spf = walk(lookup, domain)
    _check_spf(report, spf)
    _check_providers(report, lookup, campaign, spf)
    dmarc = _check_dmarc(report, lookup, domain)
    key = _check_dkim(report, lookup, campaign)
    _check_alignment(report, campaign, dmarc, key is not None)
    _check_unsubscribe(report, lookup, campaign)
    return report


def _check_mx(report: DnsReport, lookup: Lookup, domain: str) -> None:
    mx = lookup.ask(domain, "MX")
    if _timeout(report, "mx", mx):
        return
    if mx.status == "ok" and not any(mx.records):
        report.add(
            "mx",
            "error",
            f"{domain} publishes a null MX (RFC 7505): it says it takes no mail, so receivers "
            "refuse mail from it",
            f"publish a real MX record for {domain}",
        )
        return
    if mx.status == "ok":
        report.add("mx", "ok", f"{domain} receives mail at {', '.join(sorted(mx.records))}")
        return
    if mx.status == "nxdomain":
        report.add(
            "mx",
            "error",
            f"{domain} does not exist in DNS: receivers refuse mail from it",
            "register the domain or send From one that exists",
        )
        return
    addresses = lookup.addresses(domain)
    if addresses.status == "ok":
        report.add(
            "mx",
            "warning",
            f"{domain} has no MX record, only an address; bounces and replies go there",
            f"publish an MX record for {domain}",
        )
    else:
        report.add(
            "mx",
            "error",
            f"{domain} has neither MX nor A/AAAA: replies and bounces cannot reach it, and "
            "many receivers refuse such a sender",
            f"publish an MX record for {domain}",
        )


def _check_spf(report: DnsReport, spf: SpfWalk) -> None:
    domain = spf.domain
    for detail in spf.timed_out:
        report.add("spf", "warning", f"could not be checked fully: {detail}", "run again")
    if spf.record is None:
        if not spf.timed_out:
            report.add(
                "spf",
                "error",
                f"{domain} has no SPF record (TXT v=spf1): receivers cannot tell who may "
                "send for it",
                f'publish TXT "v=spf1 <your senders> -all" at {domain}',
            )
        return
    if spf.records_found > 1:
        report.add(
            "spf",
            "error",
            f"{domain} has {spf.records_found} SPF records: that is a permerror, as if none",
            "merge them into one v=spf1 record",
        )
    if spf.lookups > LOOKUP_LIMIT:
        report.add(
            "spf",
            "error",
            f"the SPF record of {domain} needs {spf.lookups} DNS lookups; over "
            f"{LOOKUP_LIMIT} it is a permerror",
            "replace includes you do not use, or flatten them into ip4:/ip6:",
        )
    if spf.voids > VOID_LIMIT:
        report.add(
            "spf",
            "warning",
            f"the SPF record of {domain} has {spf.voids} void lookups (names without records); "
            f"over {VOID_LIMIT} receivers may treat it as a permerror",
            "remove the mechanisms that point at names without records",
        )
    for problem in spf.problems:
        report.add("spf", "warning", problem, "correct the SPF record")
    if spf.all_qualifier == "+":
        report.add(
            "spf",
            "error",
            f"the SPF record of {domain} ends in +all: anyone may send as {domain}",
            "end it in -all or ~all",
        )
    elif spf.all_qualifier in (None, "?"):
        report.add(
            "spf",
            "warning",
            f"the SPF record of {domain} has no -all or ~all: it says nothing about other senders",
            "end it in -all (or ~all while testing)",
        )
    if spf.records_found == 1 and spf.lookups <= LOOKUP_LIMIT:
        report.add("spf", "ok", f"{domain}: {spf.record} ({spf.lookups} lookups)")


_LOCAL_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10")
)


def _local(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or any(ip.version == n.version and ip in n for n in _LOCAL_NETS)


def _relay_addresses(lookup: Lookup, host: str) -> Answer:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return Answer("ok", ("127.0.0.1",))
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return lookup.addresses(host)
    return Answer("ok", (host.strip("[]"),))


def _check_providers(report: DnsReport, lookup: Lookup, campaign: Campaign, spf: SpfWalk) -> None:
    domain = campaign.sender_domain
    if spf.record is None:
        return  # said once above
    for provider in campaign.providers:
        url = provider.parsed
        check = f"spf:{provider.label}"
        scheme = url.scheme
        if scheme == "outbox":
            continue
        if scheme in ("smtp", "smtps"):
            host = url.host or "localhost"
            esp = relay_esp(host)
            if esp is None:
                _check_relay(report, lookup, check, spf, host)
                continue
            scheme = esp
        sender = ESPS.get(scheme)
        if sender is None:
            continue
        if not sender.spf:
            report.add(check, "ok", f"{sender.label} needs no SPF include (it signs with DKIM)")
            continue
        if any(spf.covers_include(name) for name in sender.spf):
            report.add(check, "ok", f"the SPF record of {domain} includes {sender.spf[0]}")
            continue
        report.add(
            check,
            "warning" if sender.return_path_own else "error",
            f"the SPF record of {domain} does not include {sender.spf[0]} ({sender.label}); "
            f"needed where {domain} is the return path (a custom MAIL FROM or bounce domain "
            "carries its own record)",
            f"add include:{sender.spf[0]} to the SPF record of the return-path domain",
        )


def _check_relay(report: DnsReport, lookup: Lookup, check: str, spf: SpfWalk, host: str) -> None:
    # stamp's SMTP envelope sender is the From address: the relay's address must pass
    # the From domain's SPF
    addresses = _relay_addresses(lookup, host)
    if _timeout(report, check, addresses):
        return
    if addresses.status != "ok":
        report.add(
            check, "error", f"the SMTP relay {host} does not resolve", "correct the provider URL"
        )
        return
    allowed = [a for a in addresses.records if spf.allows(a)]
    if allowed:
        report.add(check, "ok", f"the SPF record of {spf.domain} allows {host} ({allowed[0]})")
        return
    shown = ", ".join(addresses.records[:3])
    if all(_local(a) for a in addresses.records):
        # a relay on this machine or the LAN sends out from an address DNS cannot tell
        report.add(
            check,
            "warning",
            f"the SMTP relay {host} ({shown}) is local: the SPF record of {spf.domain} must "
            "allow the public address it sends out from, which cannot be checked from here",
            "add that address (ip4:/ip6:) or the smarthost's include: to the SPF record",
        )
        return
    report.add(
        check,
        "error",
        f"the SPF record of {spf.domain} does not allow the SMTP relay {host} ({shown}): "
        f"mail sent through it fails SPF",
        f"add ip4:{addresses.records[0]} (or the relay's include:) to the SPF record"
        if ":" not in addresses.records[0]
        else f"add ip6:{addresses.records[0]} to the SPF record",
    )


@dataclass(frozen=True, slots=True)
class _Dmarc:
    policy: str
    adkim: str
    aspf: str


def _check_dmarc(report: DnsReport, lookup: Lookup, domain: str) -> _Dmarc | None:
    names = [f"_dmarc.{domain}"]
    if org_domain(domain) != domain:
        names.append(f"_dmarc.{org_domain(domain)}")
    for name in names:
        answer = lookup.txt(name)
        if _timeout(report, "dmarc", answer):
            return None
        records = [r for r in answer.records if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if not records:
            continue
        if len(records) > 1:
            report.add(
                "dmarc",
                "error",
                f"{name} has {len(records)} DMARC records: receivers ignore them all",
                "keep one",
            )
            return None
        found = tags(records[0])
        policy = found.get("p", "").lower()
        if name != names[0]:
            policy = found.get("sp", policy).lower()
        if policy not in _POLICY_MEANS:
            report.add(
                "dmarc",
                "error",
                f"{name}: {records[0]!r} has no valid p= (none, quarantine or reject)",
                f'publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@{org_domain(domain)}" at {name}',
            )
            return None
        dmarc = _Dmarc(policy, found.get("adkim", "r").lower(), found.get("aspf", "r").lower())
        severity: Severity = "warning" if policy == "none" else "ok"
        fix = (
            "move to p=quarantine once the reports show your mail passing"
            if policy == "none"
            else ""
        )
        report.add("dmarc", severity, f"{name}: p={policy}, {_POLICY_MEANS[policy]}", fix)
        return dmarc
    report.add(
        "dmarc",
        "error",
        f"{domain} has no DMARC record: Gmail, Yahoo and Microsoft require one (p=none at "
        "least) of bulk senders",
        f'publish TXT "v=DMARC1; p=none; rua=mailto:dmarc@{org_domain(domain)}" at _dmarc.{domain}',
    )
    return None


def _check_dkim(report: DnsReport, lookup: Lookup, campaign: Campaign) -> DkimKey | None:
    config = campaign.dkim
    if config is None:
        own_relays = [
            p.label
            for p in campaign.providers
            if p.scheme in ("smtp", "smtps") and relay_esp(p.parsed.host or "") is None
        ]
        if own_relays:
            report.add(
                "dkim",
                "warning",
                f"messages sent through {', '.join(own_relays)} are not DKIM-signed",
                "add dkim: {domain, selector, key_file} to the campaign (see README, DKIM)",
            )
        return None
    try:
        key = load_key(config)
    except ConfigError as exc:
        report.add("dkim", "error", str(exc), "give a readable RSA or Ed25519 private key")
        return None
    name = config.record_name
    answer = lookup.txt(name)
    if _timeout(report, "dkim", answer):
        return key
    publish = f'publish TXT "{key.dns_record()}" at {name}'
    records = [r for r in answer.records if "p=" in r.replace(" ", "")]
    if not records:
        report.add("dkim", "error", f"{name} has no DKIM key record: signatures fail", publish)
        return key
    if len(records) > 1:
        report.add("dkim", "error", f"{name} has {len(records)} key records", "keep one")
        return key
    found = tags(records[0])
    problem = None
    if found.get("v", "DKIM1") != "DKIM1":
        problem = f"v={found['v']} (must be DKIM1)"
    elif not found.get("p"):
        problem = "p= is empty: the key is revoked"
    elif found.get("k", "rsa").lower() != key.key_type:
        problem = f"k={found.get('k', 'rsa')} but key_file is an {key.key_type} key"
    elif found.get("p") != key.public_b64:
        problem = (
            f"its public key does not match dkim.key_file ({config.key_file or config.key_env})"
        )
    elif "h" in found and "sha256" not in found["h"].lower().split(":"):
        problem = f"h={found['h']} does not allow sha256"
    if problem is not None:
        report.add("dkim", "error", f"{name}: {problem}; signatures fail", publish)
        return key
    if "y" in found.get("t", "").lower().split(":"):
        report.add(
            "dkim",
            "warning",
            f"{name} is in test mode (t=y): receivers may ignore failures and passes alike",
            "drop t=y once signatures verify",
        )
    report.add("dkim", "ok", f"{name} holds the public key of dkim.key_file ({key.key_type})")
    return key


def _check_alignment(
    report: DnsReport, campaign: Campaign, dmarc: _Dmarc | None, signs: bool
) -> None:
    domain = campaign.sender_domain
    adkim = dmarc.adkim if dmarc else "r"
    aspf = dmarc.aspf if dmarc else "r"
    mode = {"r": "relaxed", "s": "strict"}
    if campaign.dkim is not None and signs:
        d = campaign.dkim.domain
        if aligned(d, domain, adkim):
            report.add("alignment", "ok", f"DKIM d={d} aligns with From {domain} ({mode[adkim]})")
        else:
            report.add(
                "alignment",
                "error" if dmarc else "warning",
                f"DKIM d={d} does not align with From {domain} (adkim={adkim}): DKIM cannot "
                "pass DMARC for this From",
                f"sign with dkim.domain: {domain}"
                + (" (or a subdomain, with adkim=r)" if adkim == "s" else ""),
            )
    for provider in campaign.providers:
        scheme = provider.scheme
        if scheme == "outbox":
            continue
        if scheme in ("smtp", "smtps") and relay_esp(provider.parsed.host or "") is None:
            # stamp's envelope sender (Return-Path) is the From address itself
            if aligned(domain, domain, aspf):
                report.add(
                    f"alignment:{provider.label}",
                    "ok",
                    f"the return path is From's own address: SPF aligns ({mode[aspf]})",
                )
            continue
        label = ESPS.get(relay_esp(provider.parsed.host or "") or scheme)
        name = label.label if label else scheme
        note = (
            "and stamp's dkim: applies to SMTP and outbox sends only"
            if campaign.dkim is not None
            else ""
        )
        report.add(
            f"alignment:{provider.label}",
            "info",
            f"{name} sets its own return path unless a custom one is set up on {domain}; "
            f"DMARC then rests on the DKIM signature {name} makes with your domain's keys"
            + (f" ({note})" if note else ""),
            f"authenticate {domain} in {name}'s domain settings",
        )


def _check_unsubscribe(report: DnsReport, lookup: Lookup, campaign: Campaign) -> None:
    url = campaign.unsubscribe.url if campaign.unsubscribe else None
    if not url:
        return
    host = urlsplit(url.strip()).hostname
    if not host or "{" in host:
        report.add("unsubscribe", "info", "the List-Unsubscribe host is a template: not looked up")
        return
    answer = lookup.addresses(host)
    if _timeout(report, "unsubscribe", answer):
        return
    if answer.status == "ok":
        report.add("unsubscribe", "ok", f"the List-Unsubscribe host {host} resolves")
    else:
        report.add(
            "unsubscribe",
            "error",
            f"the List-Unsubscribe host {host} does not resolve: one-click unsubscribes fail "
            "and receivers may treat the mail as spam",
            f"publish an A/AAAA record for {host} (the host of `stamp serve`)",
        )
