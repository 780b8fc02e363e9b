"""Provider faults (issue #8): the real Engine and Router against local SMTP and HTTP fakes.

A campaign lists two or three providers (the recording SMTP server, and the
SendGrid / Postmark fakes through ``endpoint:``). Faults are switched on the
primary before or during a run: 5xx storm, 429 with Retry-After, slow
answers, hanging, connection reset, TLS failure, refused AUTH. Afterwards:

* nobody is delivered twice, counting every server together;
* every ``sent`` row was delivered exactly once, by the provider the ledger names;
* every other row is in a truthful state: ``unknown`` (delivered at most
  once, and never handed to a second provider), ``failed``/``deferred`` with a
  reason, or ``pending`` (certainly not sent);
* failover happens only for answers that are certainly "not accepted";
* a provider that recovers gets traffic back.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provider_fakes import FakeServer, PostmarkFake, SendGridFake
from smtp_server import DROP, Pause, SMTPTestServer

from stampcli.cli.exit_codes import for_reason
from stampcli.config import Campaign
from stampcli.delivery.router import Router
from stampcli.delivery.run import CampaignRun, RunSummary
from stampcli.delivery.run_events import Event, ProviderState
from stampcli.records import Contact
from stampcli.store import campaigns, ledger
from stampcli.store.db import Store

DOMAIN = "example.test"


def people(n: int) -> list[Contact]:
    return [Contact(f"u{i}@{DOMAIN}", f"u{i}@{DOMAIN}", {"name": f"U{i}"}) for i in range(n)]


def smtp_provider(server: SMTPTestServer, **extra: Any) -> dict[str, Any]:
    url = server.url("smtp", tls="none") if server.tls == "none" else server.url("smtps")
    return {"url": url, "name": "smtp", "timeout": {"connect": 2, "read": 1}, **extra}


def http_provider(fake: FakeServer, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": fake.provider_url(),
        "endpoint": fake.url,
        "name": name,
        "timeout": {"connect": 2, "read": 1},
        **extra,
    }


def make_campaign(tmp_path: Path, providers: list[dict[str, Any]], **throttle: Any) -> Campaign:
    (tmp_path / "t.html").write_text("<p>Hi {{ name }}</p>")
    (tmp_path / "list.csv").write_text("email\n")
    return Campaign.model_validate(
        {
            "name": "faults",
            "from": "News <news@acme.example>",
            "subject": "Hello {{ name }}",
            "transactional": True,
            "template": tmp_path / "t.html",
            "audience": {"file": tmp_path / "list.csv"},
            "providers": providers,
            "throttle": {"retries": 3, "backoff": 0.05, **throttle},
            "auto_stop": {"enabled": False},
        }
    )


class Run:
    """One engine run with its events, and the delivery counts of every server."""

    def __init__(self, tmp_path: Path, campaign: Campaign, n: int) -> None:
        self.campaign = campaign
        self.n = n
        self.store = Store(tmp_path / "stamp.db")
        self.events: list[Event] = []
        self.router = Router(campaign, self.store, on_event=self.events.append)
        for route in self.router._routes:  # minutes of cool-down would make a slow test
            route.breaker.base_cool_down = route.breaker.cool_down = 0.3
            route.breaker.max_cool_down = 0.6
        self.engine = CampaignRun(
            campaign,
            self.store,
            router=self.router,
            contacts=people(n),
            on_event=self.events.append,
        )

    async def go(self) -> RunSummary:
        return await asyncio.wait_for(self.engine.run(), 60)

    def rows(self) -> dict[str, tuple[str, str | None, str | None]]:
        cid = campaigns.ensure(self.store, self.campaign.name).id
        return {r.key: (r.state, r.provider, r.last_error) for r in ledger.rows(self.store, cid)}

    def provider_states(self, name: str) -> list[str]:
        return [e.state for e in self.events if isinstance(e, ProviderState) and e.provider == name]


def delivered(
    address: str, smtp: SMTPTestServer | None, fakes: dict[str, FakeServer]
) -> Counter[str]:
    got: Counter[str] = Counter()
    if smtp is not None and smtp.count(address):
        got["smtp"] = smtp.count(address)
    for name, fake in fakes.items():
        if fake.accepted.get(address):
            got[name] = len(fake.accepted[address])
    return got


def check_truthful(
    run: Run, smtp: SMTPTestServer | None, fakes: dict[str, FakeServer]
) -> Counter[str]:
    """The invariants of the module docstring; returns the ledger's state counts."""
    rows = run.rows()
    assert len(rows) == run.n
    states: Counter[str] = Counter()
    for key, (state, provider, error) in rows.items():
        got = delivered(key, smtp, fakes)
        states[state] += 1
        assert sum(got.values()) <= 1, (key, state, got)
        if state == ledger.SENT:
            assert got == {provider: 1}, (key, provider, got)
        elif state == ledger.UNKNOWN:
            assert provider is None or set(got) <= {provider}, (key, provider, got)
            assert error, key
        elif state in (ledger.FAILED, ledger.DEFERRED):
            assert error, key
            assert not got, (key, state, got)
        else:
            assert state == ledger.PENDING, (key, state)
            assert not got, (key, state, got)
    counts = ledger.counts(run.store, campaigns.ensure(run.store, run.campaign.name).id)
    assert {k: v for k, v in counts.items() if v} == dict(states)
    return states


@pytest.fixture
def smtp() -> Iterator[SMTPTestServer]:
    with SMTPTestServer(tls="none") as server:
        yield server


@pytest.fixture
def sendgrid() -> Iterator[SendGridFake]:
    with SendGridFake() as fake:
        yield fake


@pytest.fixture
def postmark() -> Iterator[PostmarkFake]:
    with PostmarkFake() as fake:
        yield fake


N = 60


# --------------------------------------------------------------------------- certainly not accepted


@pytest.mark.parametrize(
    "fault",
    ["421 on MAIL", "greeting 554", "drop before DATA", "refused auth", "tls failure", "closed"],
)
async def test_smtp_down_fails_over_to_http(
    tmp_path: Path, sendgrid: SendGridFake, fault: str
) -> None:
    kwargs: dict[str, Any] = {"tls": "none"}
    if fault == "refused auth":
        kwargs = {"tls": "implicit", "auth": ("user", "right")}
    elif fault == "tls failure":
        kwargs = {"tls": "implicit"}
    with SMTPTestServer(**kwargs) as server:
        # 421 is "throttled": wait on the same provider, then move on after max_throttle_wait
        provider = smtp_provider(server, max_throttle_wait=0.5)
        if fault == "421 on MAIL":
            server.on_mail("421 4.3.2 system not accepting network messages")
        elif fault == "greeting 554":
            for _ in range(200):
                server.on_greeting("554 5.3.2 no service")
        elif fault == "drop before DATA":
            server.on_mail(DROP)
        elif fault == "refused auth":
            provider["url"] = server.url("smtps", user="user", password="wrong")
        elif fault == "tls failure":
            provider["url"] = f"smtps://127.0.0.1:{server.port}"  # no cafile: untrusted cert
        elif fault == "closed":
            provider["url"] = "smtp://127.0.0.1:1?tls=none"
        campaign = make_campaign(tmp_path, [provider, http_provider(sendgrid, "sendgrid")])
        run = Run(tmp_path, campaign, N)
        summary = await run.go()
        states = check_truthful(run, server, {"sendgrid": sendgrid})
    assert states == {"sent": N}, summary
    assert sendgrid.accepted_count == N
    if fault != "421 on MAIL":  # throttling does not count against the circuit
        assert run.provider_states("smtp"), "the failing provider's circuit never moved"


@pytest.mark.parametrize("fault", ["server_error", "unauthorized"])
async def test_http_down_fails_over_to_smtp_and_postmark(
    tmp_path: Path, smtp: SMTPTestServer, sendgrid: SendGridFake, postmark: PostmarkFake, fault: str
) -> None:
    sendgrid.fail(fault, times=None, status=503)
    campaign = make_campaign(
        tmp_path,
        [http_provider(sendgrid, "sendgrid"), smtp_provider(smtp), http_provider(postmark, "pm")],
    )
    run = Run(tmp_path, campaign, N)
    await run.go()
    fakes: dict[str, FakeServer] = {"sendgrid": sendgrid, "pm": postmark}
    assert check_truthful(run, smtp, fakes) == {"sent": N}
    assert sendgrid.accepted_count == 0
    assert smtp.accepted + postmark.accepted_count == N
    assert smtp.accepted > 0


# --------------------------------------------------------------------------- maybe accepted


async def test_hang_and_reset_after_the_request_are_unknown_never_failed_over(
    tmp_path: Path, smtp: SMTPTestServer, sendgrid: SendGridFake
) -> None:
    sendgrid.hang_seconds = 3
    sendgrid.fail("hang", times=2)
    sendgrid.fail("reset", times=2)
    campaign = make_campaign(
        tmp_path,
        [http_provider(sendgrid, "sendgrid", concurrency=1), smtp_provider(smtp)],
    )
    run = Run(tmp_path, campaign, 20)
    await run.go()
    states = check_truthful(run, smtp, {"sendgrid": sendgrid})
    assert states["unknown"] == 4, states
    unknown = [k for k, (s, _, _) in run.rows().items() if s == ledger.UNKNOWN]
    assert all(smtp.count(k) == 0 for k in unknown), "a maybe-accepted message was failed over"
    assert states["sent"] == 16


async def test_smtp_timeout_and_drop_after_data_are_unknown(
    tmp_path: Path, smtp: SMTPTestServer, postmark: PostmarkFake
) -> None:
    smtp.on_data(f"u1@{DOMAIN}", Pause(1.5, "250 2.0.0 late"))  # read timeout is 1 s
    smtp.on_data(f"u2@{DOMAIN}", DROP)
    smtp.on_rcpt(f"u3@{DOMAIN}", "550 5.1.1 no such user")
    smtp.on_rcpt(f"u4@{DOMAIN}", "452 4.2.2 mailbox full")
    campaign = make_campaign(
        tmp_path, [smtp_provider(smtp), http_provider(postmark, "pm")], retries=1
    )
    run = Run(tmp_path, campaign, 12)
    await run.go()
    rows = run.rows()
    states = check_truthful(run, smtp, {"pm": postmark})
    assert rows[f"u1@{DOMAIN}"][0] == rows[f"u2@{DOMAIN}"][0] == ledger.UNKNOWN
    assert rows[f"u3@{DOMAIN}"][0] == ledger.FAILED and "550" in (rows[f"u3@{DOMAIN}"][2] or "")
    assert rows[f"u4@{DOMAIN}"][0] == ledger.DEFERRED
    assert postmark.accepted_count == 0, "recipient answers and maybe-accepted ones never fail over"
    assert states["sent"] == 8


# --------------------------------------------------------------------------- throttled, slow


async def test_429_with_retry_after_waits_on_the_same_provider(
    tmp_path: Path, smtp: SMTPTestServer, postmark: PostmarkFake
) -> None:
    postmark.fail("throttle", times=3, retry_after="1")
    campaign = make_campaign(tmp_path, [http_provider(postmark, "pm"), smtp_provider(smtp)])
    run = Run(tmp_path, campaign, 30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await run.go()
    assert check_truthful(run, smtp, {"pm": postmark}) == {"sent": 30}
    assert postmark.accepted_count == 30 and smtp.accepted == 0  # throttled: no failover
    assert loop.time() - started >= 1  # Retry-After was honoured


async def test_slow_provider_delivers_everyone(tmp_path: Path, smtp: SMTPTestServer) -> None:
    smtp.on_mail(Pause(0.3, "250 OK"))  # slow, but inside the read timeout
    campaign = make_campaign(tmp_path, [smtp_provider(smtp, concurrency=4)])
    run = Run(tmp_path, campaign, 16)
    summary = await run.go()
    assert check_truthful(run, smtp, {}) == {"sent": 16}
    assert for_reason(summary.reason) == 0


# --------------------------------------------------------------------------- recovery, chaos


async def test_recovered_provider_gets_traffic_back(
    tmp_path: Path, smtp: SMTPTestServer, sendgrid: SendGridFake
) -> None:
    sendgrid.fail("server_error", times=None, status=502)
    campaign = make_campaign(
        tmp_path,
        [http_provider(sendgrid, "sendgrid", rate="100/s"), smtp_provider(smtp, rate="100/s")],
    )
    run = Run(tmp_path, campaign, 300)
    opened = asyncio.Event()
    recorder = run.events.append

    def on_event(event: Event) -> None:
        recorder(event)
        if isinstance(event, ProviderState) and (event.provider, event.state) == (
            "sendgrid",
            "open",
        ):
            opened.set()

    run.router.on_event = on_event
    task = asyncio.create_task(run.go())
    await asyncio.wait_for(opened.wait(), 20)
    sendgrid.clear_faults()  # healthy again
    await task
    assert check_truthful(run, smtp, {"sendgrid": sendgrid}) == {"sent": 300}
    assert smtp.accepted > 0, "traffic never failed over"
    assert sendgrid.accepted_count > 0, "the recovered provider got no traffic back"
    assert run.provider_states("sendgrid")[-1] == "closed"


def _chaos(fake: SendGridFake, stop: threading.Event, seed: int) -> None:
    import random

    rng = random.Random(seed)
    modes = ["healthy", "server_error", "throttle", "reset", "hang", "unauthorized"]
    while not stop.wait(rng.uniform(0.05, 0.2)):
        fake.clear_faults()
        mode = rng.choice(modes)
        if mode == "healthy":
            continue
        fake.fail(mode, times=rng.randint(1, 6), status=500, retry_after="0.1")


@pytest.mark.parametrize("seed", [1, 2])
async def test_chaos_switching_faults_mid_run(
    tmp_path: Path, smtp: SMTPTestServer, sendgrid: SendGridFake, postmark: PostmarkFake, seed: int
) -> None:
    sendgrid.hang_seconds = 1.5
    campaign = make_campaign(
        tmp_path,
        [
            http_provider(sendgrid, "sendgrid", rate="200/s"),
            http_provider(postmark, "pm", rate="100/s"),
            smtp_provider(smtp, rate="100/s"),
        ],
    )
    run = Run(tmp_path, campaign, 250)
    stop = threading.Event()
    chaos = threading.Thread(target=_chaos, args=(sendgrid, stop, seed), daemon=True)
    chaos.start()
    try:
        await run.go()
    finally:
        stop.set()
        chaos.join(5)
    fakes: dict[str, FakeServer] = {"sendgrid": sendgrid, "pm": postmark}
    states = check_truthful(run, smtp, fakes)
    assert states["sent"] + states["unknown"] + states["pending"] == 250, states
    assert states["sent"] >= 200, states
