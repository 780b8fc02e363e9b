"""DKIM signing: real sends to the local SMTP server and the outbox, verified by dkimpy.

The public keys are served by a dnslib server on 127.0.0.1 and dkimpy looks
them up through a dnspython resolver pointed at it, as a receiving server
would: RSA 2048 (rsa-sha256) and Ed25519 (ed25519-sha256, RFC 8463),
relaxed/relaxed, List-Unsubscribe and List-Unsubscribe-Post signed. Keys that
do not parse are refused when the campaign is loaded, without showing them.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import dkim
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.canonicalization import CanonicalizationPolicy
from dns_server import DNSTestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_helpers import run_stamp, send_args, write_campaign
from smtp_server import SMTPTestServer

from stampcli.config import load_campaign
from stampcli.config.dkim import load_key, parse_key
from stampcli.errors import ConfigError
from stampcli.render.dkim import DkimSigner, canonical_body

DOMAIN = "acme.example"
SELECTOR = "s2026"


def rsa_pem(bits: int = 2048) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def ed25519_seed() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode("ascii")


@pytest.fixture
def dns_server() -> Iterator[DNSTestServer]:
    with DNSTestServer() as server:
        yield server


def txt_lookup(resolver: dns.resolver.Resolver) -> object:
    """dkimpy's ``dnsfunc``: the TXT record through ``resolver`` (dkim.dnsplug's shape)."""

    def get_txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode("ascii").rstrip("."), "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(next(iter(answer)).strings)

    return get_txt


def verifies(data: bytes, resolver: dns.resolver.Resolver) -> bool:
    return bool(dkim.verify(data, dnsfunc=txt_lookup(resolver)))


def signed_headers(data: bytes) -> list[str]:
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    sig = "".join(str(message["DKIM-Signature"]).split())
    tags = dict(part.split("=", 1) for part in sig.split(";") if "=" in part)
    return tags["h"].split(":")


def dkim_section(key: str) -> str:
    return f"dkim:\n  domain: {DOMAIN}\n  selector: {SELECTOR}\n  {key}\n"


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_smtp_sends_verify_against_the_local_dns(
    tmp_path: Path, dns_server: DNSTestServer, kind: str
) -> None:
    env: dict[str, str] = {}
    if kind == "rsa":
        (tmp_path / "dkim.pem").write_bytes(rsa_pem())
        section = dkim_section("key_file: dkim.pem")
        key = load_key(load_campaign_dkim(tmp_path, section))
    else:
        env["DKIM_KEY"] = ed25519_seed()
        section = dkim_section("key_env: DKIM_KEY")
        key = parse_key(env["DKIM_KEY"].encode())
    dns_server.add(f"{SELECTOR}._domainkey.{DOMAIN}", "TXT", key.dns_record())
    with SMTPTestServer(tls="none") as smtp:
        campaign = write_campaign(tmp_path, [{"url": smtp.url("smtp")}], n=4, extra=section)
        done = run_stamp(*send_args(campaign, tmp_path / "stamp.db"), cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        received = smtp.messages
    assert len(received) == 4
    resolver = dns_server.resolver()
    for message in received:
        assert verifies(message.data, resolver), message.data[:800]
        assert (b"a=ed25519-sha256" if kind == "ed25519" else b"a=rsa-sha256") in message.data
        assert b"c=relaxed/relaxed" in message.data
        names = signed_headers(message.data)
        for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe"):
            assert names.count(name) == 2, (name, names)  # signed and oversigned
        assert "list-unsubscribe-post" in names and "content-type" in names
        # an extra From added on the way breaks the signature (From is oversigned)
        tampered = message.data.replace(b"\r\nFrom:", b"\r\nFrom: evil@x.example\r\nFrom:", 1)
        assert not verifies(tampered, resolver)
        # a changed body too
        assert not verifies(message.data.replace(b"Hello", b"Hullo", 1), resolver)
    # the key never reaches a log line
    secret = env.get("DKIM_KEY") or (tmp_path / "dkim.pem").read_text().splitlines()[1]
    assert secret not in done.stdout + done.stderr


def load_campaign_dkim(folder: Path, section: str) -> object:
    campaign = write_campaign(folder, [{"url": "outbox://outbox"}], n=1, extra=section)
    loaded = load_campaign(campaign)
    assert loaded.dkim is not None
    return loaded.dkim


def test_outbox_files_are_signed_and_a_wrong_dns_key_fails(
    tmp_path: Path, dns_server: DNSTestServer
) -> None:
    (tmp_path / "dkim.pem").write_bytes(rsa_pem())
    section = dkim_section("key_file: dkim.pem")
    campaign = write_campaign(tmp_path, [{"url": "outbox://outbox"}], n=2, extra=section)
    done = run_stamp(*send_args(campaign, tmp_path / "stamp.db"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "outbox").rglob("*.eml"))
    assert len(files) == 2
    name = f"{SELECTOR}._domainkey.{DOMAIN}"
    dns_server.add(name, "TXT", load_key(load_campaign(campaign).dkim).dns_record())  # type: ignore[arg-type]
    resolver = dns_server.resolver()
    assert all(verifies(f.read_bytes(), resolver) for f in files)
    # the record of another key: the signature no longer verifies
    dns_server.remove(name)
    other = parse_key(rsa_pem())
    dns_server.add(name, "TXT", other.dns_record())
    assert not any(verifies(f.read_bytes(), resolver) for f in files)


def test_without_dkim_nothing_is_signed(tmp_path: Path) -> None:
    campaign = write_campaign(tmp_path, [{"url": "outbox://outbox"}], n=1)
    done = run_stamp(*send_args(campaign, tmp_path / "stamp.db"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (eml,) = (tmp_path / "outbox").rglob("*.eml")
    assert b"DKIM-Signature" not in eml.read_bytes()


def test_signature_matches_dkimpy_own_signing() -> None:
    # PKCS#1 v1.5 is deterministic: OpenSSL's signature is dkimpy's pure-Python one
    pem = rsa_pem()
    raw = (
        b"From: a@acme.example\r\nTo: b@y.example\r\nSubject: hi\r\n"
        b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@acme.example>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nhello  \r\nworld\r\n\r\n"
    )
    from stampcli.config.dkim import DkimConfig

    signer = DkimSigner(DkimConfig(domain=DOMAIN, selector=SELECTOR, key_env="X"), parse_key(pem))
    ours = signer.signature(raw)
    names = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"]
    include = list(signer.include_for(names))
    theirs = dkim.sign(
        raw,
        SELECTOR.encode(),
        DOMAIN.encode(),
        pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
    )
    # byte for byte the same, unless the second (t=) turned between the two calls
    if ours.split(b"t=")[1][:10] == theirs.split(b"t=")[1][:10]:
        assert ours == theirs
    else:
        assert ours.split(b"t=")[0] == theirs.split(b"t=")[0]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"not a key at all", "not a PEM private key"),
        (
            b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "does not parse",
        ),
        ("small", "receivers refuse fewer than 1024"),
        ("ecdsa", "cannot sign DKIM"),
    ],
)
def test_bad_keys_are_refused_at_load(tmp_path: Path, content: bytes | str, error: str) -> None:
    if content == "small":
        data = small_rsa()
    elif content == "ecdsa":
        data = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    else:
        assert isinstance(content, bytes)
        data = content
    (tmp_path / "dkim.pem").write_bytes(data)
    campaign = write_campaign(
        tmp_path, [{"url": "outbox://outbox"}], n=1, extra=dkim_section("key_file: dkim.pem")
    )
    with pytest.raises(ConfigError) as info:
        load_campaign(campaign)
    text = str(info.value)
    assert "dkim.key_file" in text and error in text
    assert "campaign.yml:" in text  # located in the file
    for line in data.decode("ascii", "replace").splitlines()[1:-1]:
        assert line not in text


def small_rsa() -> bytes:
    """A 768-bit RSA key (cryptography will not generate one under 1024 bits: built here)."""
    import secrets

    from cryptography.hazmat.primitives.asymmetric.rsa import (
        RSAPrivateNumbers,
        RSAPublicNumbers,
        rsa_crt_dmp1,
        rsa_crt_dmq1,
        rsa_crt_iqmp,
    )

    def probable_prime(bits: int) -> int:
        while True:
            n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
            if all(pow(a, n - 1, n) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29)):
                return n

    e = 65537
    while True:
        p, q = probable_prime(384), probable_prime(384)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    d = pow(e, -1, phi)
    numbers = RSAPrivateNumbers(
        p,
        q,
        d,
        rsa_crt_dmp1(d, p),
        rsa_crt_dmq1(d, q),
        rsa_crt_iqmp(p, q),
        RSAPublicNumbers(e, p * q),
    )
    key = numbers.private_key(unsafe_skip_rsa_key_validation=True)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def test_missing_key_env_and_both_keys_are_refused(tmp_path: Path) -> None:
    campaign = write_campaign(
        tmp_path, [{"url": "outbox://outbox"}], n=1, extra=dkim_section("key_env: NO_SUCH_DKIM_KEY")
    )
    with pytest.raises(ConfigError, match=r"dkim.key_env: NO_SUCH_DKIM_KEY: .*not set"):
        load_campaign(campaign)
    campaign = write_campaign(
        tmp_path,
        [{"url": "outbox://outbox"}],
        n=1,
        extra=dkim_section("key_env: X\n  key_file: k.pem"),
    )
    with pytest.raises(ConfigError, match="exactly one of dkim.key_file or dkim.key_env"):
        load_campaign(campaign)
    campaign = write_campaign(
        tmp_path,
        [{"url": "outbox://outbox"}],
        n=1,
        extra="dkim:\n  domain: not a domain\n  selector: s1\n  key_env: X\n",
    )
    with pytest.raises(ConfigError, match=r"dkim.domain: .*not a domain name"):
        load_campaign(campaign)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet=st.sampled_from(list("ab= \t.\r\n")), max_size=12), max_size=12).map(
        lambda lines: "\r\n".join(lines).replace("\r\n", "\n").replace("\r", "")
    ),
    st.booleans(),
)
def test_canonical_body_is_dkimpys_relaxed_form(text: str, final_newline: bool) -> None:
    body = text.replace("\n", "\r\n").encode("ascii") + (b"\r\n" if final_newline else b"")
    expected = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed").canonicalize_body(body)
    assert canonical_body(body) == expected


def test_an_attachment_holding_the_private_key_is_refused(tmp_path: Path) -> None:
    pem = rsa_pem()
    (tmp_path / "dkim.pem").write_bytes(pem)
    (tmp_path / "notes.txt").write_bytes(b"oops, pasted: " + pem)
    extra = dkim_section("key_file: dkim.pem") + "attachments: [notes.txt]\n"
    campaign = write_campaign(tmp_path, [{"url": "outbox://outbox"}], n=1, extra=extra)
    with pytest.raises(ConfigError, match="contains the value of a secret"):
        load_campaign(campaign)
