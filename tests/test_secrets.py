"""Secrets never leak (issue #8): provider keys, SMTP passwords, the unsubscribe HMAC secret.

Each test drives ``stamp`` in a subprocess into a failure (refused AUTH, a
provider echoing the key back, an unreachable server, a broken URL, a crash
with STAMP_DEBUG=1 ...) and then greps for every form of every secret in
stdout, stderr, the SQLite files (db, -wal, -shm) and every file the run wrote
(outbox .eml files, reject files). Only campaign.yml and .env, where the user
put the secrets, may contain them.
"""

from __future__ import annotations

import base64
import traceback
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import pytest
from provider_fakes import SendGridFake
from reliability_helpers import (
    UNSUB_SECRET,
    run_stamp,
    send_args,
    write_campaign,
)
from smtp_server import DROP, SMTPTestServer
from typer.testing import CliRunner

from stampcli.cli.app import app

SMTP_PASS = "pw-SMTP/s3cr3t:9a7f1e@x"  # needs URL quoting
SG_KEY = "SG.key-SECRET-0c4be6aa51f24e1f"
SECRETS = (SMTP_PASS, SG_KEY, UNSUB_SECRET)
OWN_FILES = {"campaign.yml", ".env"}


def forms(secret: str) -> set[str]:
    return {
        secret,
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(f"\0user\0{secret}".encode()).decode(),
    }


def leaks(blobs: Iterable[tuple[str, bytes]], secrets: Iterable[str] = SECRETS) -> list[str]:
    found = []
    for where, blob in blobs:
        for secret in secrets:
            for form in forms(secret):
                if form.encode() in blob:
                    found.append(f"{form!r} in {where}")
    return found


def everything(folder: Path, *outputs: str) -> list[tuple[str, bytes]]:
    blobs = [(f"output {i}", out.encode()) for i, out in enumerate(outputs)]
    files = [p for p in folder.rglob("*") if p.is_file() and p.name not in OWN_FILES]
    blobs += [(str(p.relative_to(folder)), p.read_bytes()) for p in files]
    return blobs


def assert_no_leak(folder: Path, *outputs: str) -> None:
    found = leaks(everything(folder, *outputs))
    assert not found, found


def env() -> dict[str, str]:
    return {"SMTP_PASS": SMTP_PASS, "SG_KEY": SG_KEY}


def test_grep_finds_a_planted_secret(tmp_path: Path) -> None:
    """The grep itself works (quoted, plain, base64 AUTH PLAIN forms; inside binary files)."""
    (tmp_path / "x.db").write_bytes(b"\0SQLite" + quote(SMTP_PASS, safe="").encode() + b"\0")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "m.eml").write_bytes(base64.b64encode(f"\0user\0{SG_KEY}".encode()))
    where = {hit.rsplit(" in ", 1)[1] for hit in leaks(everything(tmp_path, f"..{UNSUB_SECRET}.."))}
    assert where == {"output 0", "x.db", "out/m.eml"}


def test_smtp_refused_auth_and_odd_replies(tmp_path: Path) -> None:
    with SMTPTestServer(tls="starttls", auth=("user", "another-password")) as s:
        url = f"smtp://user:${{SMTP_PASS}}@127.0.0.1:{s.port}?cafile={s.ca_file}"
        campaign = write_campaign(tmp_path, [{"url": url}], n=5)
        db = tmp_path / "stamp.db"
        first = run_stamp(*send_args(campaign, db), cwd=tmp_path, env=env())
        assert first.returncode == 4, first.stderr  # every provider refuses us
    # now the right password; the server quotes it back in a rejection, and drops one
    with SMTPTestServer(tls="starttls", auth=("user", SMTP_PASS)) as s:
        s.on_rcpt("user1@example.test", f"550 5.1.1 no such user (you said {SMTP_PASS})")
        s.on_data("user2@example.test", DROP)
        s.on_rcpt("user3@example.test", f"451 4.3.0 {SMTP_PASS} try later")
        campaign = write_campaign(
            tmp_path,
            [{"url": s.url("smtp", user="user", password=SMTP_PASS)}],
            n=5,
            extra="throttle:\n  retries: 0\n",
        )
        second = run_stamp(*send_args(campaign, db), cwd=tmp_path, env=env())
        assert second.returncode in (1, 3), second.stderr
        assert s.count("user0@example.test") == 1
        status = run_stamp("status", campaign, "--db", db, cwd=tmp_path, env=env())
        status_json = run_stamp("status", campaign, "--db", db, "--json", cwd=tmp_path, env=env())
    assert "failed" in status.stdout and "unknown" in status.stdout
    outputs = (first.stdout, first.stderr, second.stdout, second.stderr)
    assert_no_leak(tmp_path, *outputs, status.stdout, status.stderr, status_json.stdout)


def test_http_provider_echoing_the_key(tmp_path: Path) -> None:
    with (
        SendGridFake(key=SG_KEY) as fake,
        SMTPTestServer(tls="starttls", auth=("user", "not-this-one")) as smtp,
    ):
        echo = {"errors": [{"message": f"bad key {SG_KEY} for Bearer {SG_KEY}", "field": None}]}
        fake.fail("reply", times=2, status=400, body=echo)
        fake.fail("unauthorized", times=1)
        fake.fail("reply", times=None, status=503, body={"message": f"down; key={SG_KEY}"})
        providers = [
            {"url": "sendgrid://${SG_KEY}", "endpoint": fake.url, "timeout": {"read": 2}},
            # refuses our AUTH: with both providers refusing, the run ends at once (exit 4)
            {"url": f"smtp://user:${{SMTP_PASS}}@127.0.0.1:{smtp.port}?cafile={smtp.ca_file}"},
        ]
        campaign = write_campaign(
            tmp_path, providers, n=6, extra="throttle:\n  retries: 1\n  backoff: 0\n"
        )
        db = tmp_path / "stamp.db"
        run = run_stamp(*send_args(campaign, db), cwd=tmp_path, env=env())
        check = run_stamp("providers", "check", campaign, cwd=tmp_path, env=env())
        check_json = run_stamp("providers", "check", campaign, "--json", cwd=tmp_path, env=env())
        status = run_stamp("status", campaign, "--db", db, cwd=tmp_path, env=env())
    assert run.returncode == 4, run.stdout
    assert "***" in run.stdout  # the echoed key was there, and was redacted
    assert check.returncode != 0
    outputs = (run.stdout, run.stderr, check.stdout, check.stderr, check_json.stdout)
    assert_no_leak(tmp_path, *outputs, status.stdout, status.stderr)


def test_outbox_and_dry_run_files_hold_no_secret(tmp_path: Path) -> None:
    campaign = write_campaign(
        tmp_path,
        [{"url": "outbox://out"}],
        n=4,
        template="<p>Hi {{ first_name }} <a href='{{ unsubscribe_url }}'>leave</a></p>",
    )
    db = tmp_path / "stamp.db"
    sent = run_stamp(*send_args(campaign, db), cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    dry = run_stamp("send", campaign, "--dry-run", "--log-format", "json", "--db", db, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    emls = list(tmp_path.rglob("*.eml"))
    assert len(emls) == 8
    # the token signed with the secret is there, the secret is not
    assert all(b"acme.example/u?t=" in p.read_bytes() for p in emls)
    assert_no_leak(tmp_path, sent.stdout, sent.stderr, dry.stdout, dry.stderr)


BAD_URLS: list[str | dict[str, str]] = [
    "smtp://user:${SMTP_PASS}@127.0.0.1:notaport",
    "smtp://user:${SMTP_PASS}@",
    # endpoint: a local fake refusing the key (nothing may reach the real api.sendgrid.com;
    # and a provider that is merely down makes a send wait for its probes)
    {"url": "sendgrid://${SG_KEY}?bogus_option=1", "endpoint": "FAKE"},
    "nosuchscheme://${SG_KEY}@host",
    "smtps://user:${SMTP_PASS}@127.0.0.1:1?cafile=/nonexistent/${SG_KEY}.pem",
    "smtp://${SG_KEY}:${SMTP_PASS}@127.0.0.1:1?timeout=${SG_KEY}",
]


@pytest.mark.parametrize("debug", [False, True])
def test_config_errors_and_tracebacks_name_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    """In-process (typer's runner) so that a STAMP_DEBUG=1 traceback can be grepped too."""
    for name, value in {**env(), "STAMP_UNSUBSCRIBE_SECRET": UNSUB_SECRET}.items():
        monkeypatch.setenv(name, value)
    if debug:
        monkeypatch.setenv("STAMP_DEBUG", "1")
    runner = CliRunner()
    outputs = []
    fake = SendGridFake(key=SG_KEY).start()
    fake.fail("unauthorized", times=None)
    for url in BAD_URLS:
        provider = dict(url) if isinstance(url, dict) else {"url": url}
        if provider.get("endpoint") == "FAKE":
            provider["endpoint"] = fake.url
        campaign = write_campaign(tmp_path, [provider], n=2)
        for args in (
            send_args(campaign, tmp_path / "stamp.db"),
            ["providers", "check", str(campaign)],
        ):
            result = runner.invoke(app, args)
            assert result.exit_code != 0, (url, result.output)
            text = result.output
            if result.exc_info is not None and not isinstance(result.exception, SystemExit):
                text += "".join(traceback.format_exception(*result.exc_info))
            outputs.append(text)
    fake.stop()
    assert_no_leak(tmp_path, *outputs)


def test_env_file_secrets_are_redacted_too(tmp_path: Path) -> None:
    """Secrets from the .env next to campaign.yml are secrets as well."""
    (tmp_path / ".env").write_text(f"SMTP_PASS={SMTP_PASS}\n")
    with SMTPTestServer(tls="starttls", auth=("user", "nope-nope")) as s:
        url = f"smtp://user:${{SMTP_PASS}}@127.0.0.1:{s.port}?cafile={s.ca_file}"
        campaign = write_campaign(tmp_path, [{"url": url}], n=3)
        run = run_stamp(*send_args(campaign, tmp_path / "stamp.db"), cwd=tmp_path)
    assert run.returncode == 4, run.stderr
    assert_no_leak(tmp_path, run.stdout, run.stderr)
