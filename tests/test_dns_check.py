"""The DNS pre-flight (``stamp check --dns``) against a dnslib server on 127.0.0.1.

A good zone for acme.example passes every check; each test then breaks one
record (an SPF include missing, the relay's address not allowed, no DMARC, a
DKIM record of another key, too many SPF lookups, a null MX, a server that
never answers) and looks for the finding, its severity and its fix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dns_server import DNSTestServer
from reliability_helpers import run_stamp, write_campaign

from stampcli.config import Campaign, load_campaign
from stampcli.config.dkim import load_key
from stampcli.dnscheck.preflight import DnsReport, Finding
from stampcli.service.dns_check import dns_preflight

DOMAIN = "acme.example"
DKIM_NAME = f"s1._domainkey.{DOMAIN}"


def pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def zone() -> Iterator[DNSTestServer]:
    with DNSTestServer() as server:
        yield server


def campaign_in(folder: Path, dkim_domain: str = DOMAIN) -> Path:
    (folder / "dkim.pem").write_bytes(pem())
    return write_campaign(
        folder,
        [
            {"url": "smtp://127.0.0.1:2525?tls=none", "name": "relay"},
            {"url": "sendgrid://SG.key-for-the-dns-test", "name": "sendgrid"},
        ],
        n=2,
        template='<p>Hello {{ first_name }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>',
        extra=f"dkim:\n  domain: {dkim_domain}\n  selector: s1\n  key_file: dkim.pem\n",
    )


def good_zone(zone: DNSTestServer, campaign: Campaign) -> None:
    assert campaign.dkim is not None
    zone.add(DOMAIN, "MX", f"10 mx.{DOMAIN}.")
    zone.add(DOMAIN, "A", "127.0.0.1")
    zone.add(DOMAIN, "TXT", "v=spf1 ip4:127.0.0.0/8 include:sendgrid.net -all")
    zone.add(DOMAIN, "TXT", "google-site-verification=abc")  # not SPF: ignored
    zone.add("sendgrid.net", "TXT", "v=spf1 ip4:167.89.0.0/17 ~all")
    zone.add(DKIM_NAME, "TXT", load_key(campaign.dkim).dns_record())
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=quarantine; rua=mailto:d@acme.example")


def by_check(report: DnsReport, check: str) -> list[Finding]:
    return [f for f in report.findings if f.check == check]


def only(report: DnsReport, check: str) -> Finding:
    found = [f for f in by_check(report, check) if f.severity != "ok"] or by_check(report, check)
    assert len(found) == 1, (check, report.findings)
    return found[0]


def run(zone: DNSTestServer, campaign: Campaign, timeout: float = 2.0) -> DnsReport:
    return dns_preflight(campaign, server=zone.address, timeout=timeout)


def test_a_good_zone_passes_every_check(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    report = run(zone, campaign)
    assert report.ok, report.errors
    assert not report.warnings, report.warnings
    for check in ("mx", "spf", "spf:relay", "spf:sendgrid", "dkim", "dmarc", "unsubscribe"):
        assert only(report, check).severity == "ok", check
    assert "goes to spam" in only(report, "dmarc").message
    assert only(report, "alignment").severity == "ok"
    assert only(report, "alignment:sendgrid").severity == "info"


def test_a_missing_spf_include_and_a_relay_not_allowed(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    zone.remove(DOMAIN, "TXT")
    zone.add(DOMAIN, "TXT", "v=spf1 ip4:192.0.2.0/24 -all")
    report = run(zone, campaign)
    sendgrid = only(report, "spf:sendgrid")
    assert sendgrid.severity == "warning"
    assert "does not include sendgrid.net" in sendgrid.message
    assert sendgrid.fix == "add include:sendgrid.net to the SPF record of the return-path domain"
    relay = only(report, "spf:relay")  # 127.0.0.1: its public address is unknown
    assert relay.severity == "warning" and "is local" in relay.message
    # a relay with a public address that the record does not allow fails SPF for sure
    zone.add(f"relay.{DOMAIN}", "A", "203.0.113.10")
    public = campaign.model_copy(
        update={
            "providers": [
                campaign.providers[0].model_copy(update={"url": f"smtp://relay.{DOMAIN}:587"}),
                campaign.providers[1],
            ]
        }
    )
    relay = only(run(zone, public), "spf:relay")
    assert relay.severity == "error"
    assert f"does not allow the SMTP relay relay.{DOMAIN} (203.0.113.10)" in relay.message
    assert relay.fix.startswith("add ip4:203.0.113.10")
    assert not run(zone, public).ok
    zone.remove(DOMAIN, "TXT")
    zone.add(DOMAIN, "TXT", "v=spf1 a:relay.acme.example include:sendgrid.net -all")
    assert only(run(zone, public), "spf:relay").severity == "ok"  # allowed through a:


def test_a_missing_dmarc_record_is_an_error(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    zone.remove(f"_dmarc.{DOMAIN}")
    report = run(zone, campaign)
    dmarc = only(report, "dmarc")
    assert dmarc.severity == "error"
    assert "no DMARC record" in dmarc.message
    assert f"at _dmarc.{DOMAIN}" in dmarc.fix and "v=DMARC1; p=none" in dmarc.fix


def test_dmarc_of_the_organizational_domain_and_p_none(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    campaign = campaign.model_copy(update={"from_": "News <news@mail.acme.example>"})
    good_zone(zone, campaign)
    zone.remove(f"_dmarc.{DOMAIN}")
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject; sp=none")
    report = run(zone, campaign)
    dmarc = only(report, "dmarc")
    assert dmarc.severity == "warning" and "p=none" in dmarc.message  # sp= for a subdomain
    assert "monitoring only" in dmarc.message


def test_a_dkim_record_of_another_key_and_a_missing_one(
    tmp_path: Path, zone: DNSTestServer
) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    zone.remove(DKIM_NAME)
    zone.add(
        DKIM_NAME, "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong"
    )
    found = only(run(zone, campaign), "dkim")
    assert found.severity == "error"
    assert "does not match dkim.key_file" in found.message
    assert campaign.dkim is not None
    assert load_key(campaign.dkim).dns_record() in found.fix
    zone.remove(DKIM_NAME)
    found = only(run(zone, campaign), "dkim")
    assert found.severity == "error" and "has no DKIM key record" in found.message


def test_dkim_domain_not_aligned_with_from(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path, dkim_domain="other.example"))
    good_zone(zone, campaign)
    zone.add("s1._domainkey.other.example", "TXT", zone.zone.records[DKIM_NAME][0][1].strip('"'))
    report = run(zone, campaign)
    alignment = only(report, "alignment")
    assert alignment.severity == "error"
    assert "d=other.example does not align with From acme.example" in alignment.message


def test_too_many_spf_lookups_and_plus_all(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    zone.remove(DOMAIN, "TXT")
    includes = " ".join(f"include:i{n}.example" for n in range(11))
    zone.add(DOMAIN, "TXT", f"v=spf1 ip4:127.0.0.1 {includes} +all")
    for n in range(11):
        zone.add(f"i{n}.example", "TXT", "v=spf1 ip4:198.51.100.1 ~all")
    report = run(zone, campaign)
    messages = [f.message for f in by_check(report, "spf") if f.severity == "error"]
    assert any("needs 11 DNS lookups" in m for m in messages), messages
    assert any("ends in +all" in m for m in messages), messages


def test_two_spf_records_and_no_spf(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    zone.add(DOMAIN, "TXT", "v=spf1 -all")
    assert "2 SPF records" in only(run(zone, campaign), "spf").message
    zone.remove(DOMAIN, "TXT")
    found = only(run(zone, campaign), "spf")
    assert found.severity == "error" and "no SPF record" in found.message


def test_null_mx_and_a_domain_that_does_not_exist(tmp_path: Path, zone: DNSTestServer) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    zone.remove(DOMAIN, "MX")
    zone.add(DOMAIN, "MX", "0 .")
    assert "null MX" in only(run(zone, campaign), "mx").message
    other = campaign.model_copy(update={"from_": "News <news@gone.example>"})
    found = only(run(zone, other), "mx")
    assert found.severity == "error" and "does not exist" in found.message


def test_a_server_that_never_answers_is_reported_not_waited_for(
    tmp_path: Path, zone: DNSTestServer
) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    good_zone(zone, campaign)
    zone.silent(f"_dmarc.{DOMAIN}")
    started = time.monotonic()
    report = run(zone, campaign, timeout=0.3)
    assert time.monotonic() - started < 5
    found = only(report, "dmarc")
    assert found.severity == "warning"
    assert "could not be checked" in found.message and "in 0.3 s" in found.message


def test_the_budget_bounds_a_dead_server(tmp_path: Path) -> None:
    campaign = load_campaign(campaign_in(tmp_path))
    with DNSTestServer() as dead:
        for name in (DOMAIN, f"_dmarc.{DOMAIN}", DKIM_NAME):
            dead.silent(name)
        started = time.monotonic()
        report = dns_preflight(campaign, server=dead.address, timeout=0.3, budget=1.0)
    assert time.monotonic() - started < 4
    # what needed an answer is a warning (not learnt), never an error or a pass
    asked = [f for f in report.findings if not f.check.startswith("alignment")]
    assert asked and all(f.severity == "warning" for f in asked), asked
    assert any("budget ran out" in f.message for f in report.findings)


def test_stamp_check_dns_json_and_exit_codes(tmp_path: Path, zone: DNSTestServer) -> None:
    path = campaign_in(tmp_path)
    campaign = load_campaign(path)
    good_zone(zone, campaign)
    db = str(tmp_path / "s.db")
    args = ["check", str(path), "--dns-server", zone.address, "--json", "--db", db]
    done = run_stamp(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["dns"]["ok"] is True and doc["dns"]["domain"] == DOMAIN
    assert {f["check"] for f in doc["dns"]["findings"]} >= {"mx", "spf", "dkim", "dmarc"}
    zone.remove(f"_dmarc.{DOMAIN}")
    done = run_stamp(*args, cwd=tmp_path)
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert any(f["check"] == "dmarc" and f["severity"] == "error" for f in doc["dns"]["findings"])
    # the text form names each finding and its fix
    done = run_stamp(*args[:-3], "--db", str(tmp_path / "s.db"), cwd=tmp_path)
    assert done.returncode == 2
    assert "dmarc: acme.example has no DMARC record" in " ".join(done.stdout.split())
    assert "fix: publish TXT" in done.stdout


def test_a_bad_dns_server_option_is_refused(tmp_path: Path) -> None:
    path = campaign_in(tmp_path)
    done = run_stamp("check", str(path), "--dns-server", "dns.example", cwd=tmp_path)
    assert done.returncode == 2
    assert "--dns-server dns.example: give the server's IP address" in done.stderr + done.stdout
