"""Pulling suppressions through local servers that speak each provider's API, with paging."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from suppression_fakes import (
    AWS_ACCESS,
    AWS_SECRET,
    KEY,
    FakeState,
    brevo_state,
    fake_api,
    mailgun_state,
    mailjet_state,
    mandrill_state,
    postmark_state,
    sendgrid_state,
    ses_state,
    sparkpost_state,
)

from stampcli.config import Campaign, ProviderConfig
from stampcli.errors import ConfigError
from stampcli.providers.pull import pull_all, pull_one
from stampcli.store import suppressions as sup
from stampcli.store.db import Store

URLS = {
    "sendgrid": f"sendgrid://{KEY}",
    "mailgun": f"mailgun://{KEY}@mg.example.com",
    "postmark": f"postmark://{KEY}",
    "ses": f"ses://{AWS_ACCESS}:{AWS_SECRET}@eu-west-1",
    "mailjet": f"mailjet://{KEY}:{KEY[::-1]}",
    "brevo": f"brevo://{KEY}",
    "mandrill": f"mandrill://{KEY}",
    "sparkpost": f"sparkpost://{KEY}",
}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "stamp.db") as s:
        yield s


def provider(kind: str, endpoint: str, **extra: Any) -> ProviderConfig:
    return ProviderConfig.model_validate({"url": URLS[kind], "endpoint": endpoint, **extra})


def reasons(store: Store) -> dict[str, str]:
    return {s.key: s.reason for s in sup.iter_suppressions(store)}


CASES: list[tuple[str, Callable[[], FakeState], int, int, dict[str, str]]] = [
    # kind, state, records fetched, pages requested, a few expected reasons
    (
        "sendgrid",
        sendgrid_state,
        1105,
        3 + 4,  # bounces: 500+500+100; the other four lists one page each
        {
            "bounce1099@example.com": "hard_bounce",
            "blocked@example.com": "hard_bounce",
            "spam@example.com": "complaint",
            "typo@example.comm": "invalid",
            "left@example.com": "unsubscribed",
        },
    ),
    (
        "mailgun",
        mailgun_state,
        2502,
        4 + 2 + 2,  # 1000+1000+500 then an empty page; one page and an empty one each
        {
            "gone2499@example.com": "hard_bounce",
            "angry@example.com": "complaint",
            "quit@example.com": "unsubscribed",
        },
    ),
    (
        "postmark",
        postmark_state,
        3,
        1,
        {
            "address@wildbit.example": "unsubscribed",
            "bounce.address@wildbit.example": "hard_bounce",
            "spam.complaint.address@wildbit.example": "complaint",
        },
    ),
    (
        "ses",
        ses_state,
        2100,
        3,
        {"ses0@example.com": "complaint", "ses2099@example.com": "hard_bounce"},
    ),
    (
        "mailjet",
        mailjet_state,
        750,
        1,
        {"mj0@example.com": "unsubscribed", "mj1498@example.com": "unsubscribed"},
    ),
    (
        "brevo",
        brevo_state,
        250,
        3,
        {
            "br0@example.com": "hard_bounce",
            "br1@example.com": "complaint",
            "br2@example.com": "unsubscribed",
            "br3@example.com": "manual",
        },
    ),
    (
        "mandrill",
        mandrill_state,
        85,  # 120 less soft bounces (17), sender problems (17) and one expired; one call
        1,
        {
            "md0@example.com": "hard_bounce",
            "md2@example.com": "complaint",
            "md10@example.com": "unsubscribed",
            "md4@example.com": "manual",
            "md5@example.com": "invalid",
        },
    ),
    (
        "sparkpost",
        sparkpost_state,
        22_500,  # 25,000 less the 2,500 that stop only transactional mail
        3,  # 10,000 a page
        {
            "sp0@example.com": "hard_bounce",
            "sp1@example.com": "complaint",
            "sp2@example.com": "unsubscribed",
            "sp3@example.com": "manual",
        },
    ),
]


@pytest.mark.parametrize(("kind", "make", "fetched", "pages", "expected"), CASES)
def test_each_provider_pages_through_everything(
    store: Store,
    kind: str,
    make: Callable[[], FakeState],
    fetched: int,
    pages: int,
    expected: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    state = make()
    with fake_api(state) as base:
        result = pull_one(provider(kind, base), store)
    assert result.error is None, result.error
    assert result.fetched == fetched
    assert len(state.requests) == pages
    got = reasons(store)
    assert {k: got.get(k) for k in expected} == expected
    assert result.new == len(got) == fetched - result.invalid
    assert all(s.source == kind for s in sup.iter_suppressions(store))


def test_mailjet_asks_only_for_excluded_contacts(store: Store) -> None:
    state = mailjet_state(10)
    with fake_api(state) as base:
        pull_one(provider("mailjet", base), store)
    assert state.requests[0].query["IsExcludedFromCampaigns"] == "true"
    assert sorted(reasons(store)) == [f"mj{i}@example.com" for i in (0, 2, 4, 6, 8)]


def test_postmark_reads_the_configured_stream(store: Store) -> None:
    with fake_api(postmark_state()) as base:
        cfg = ProviderConfig.model_validate(
            {"url": f"postmark://{KEY}?stream=outbound", "endpoint": base}
        )
        pull_one(cfg, store)
    assert reasons(store) == {"other-stream@wildbit.example": "hard_bounce"}


def test_mandrill_key_goes_in_the_body_and_soft_bounces_stay_out(store: Store) -> None:
    state = mandrill_state(10)
    with fake_api(state) as base:
        result = pull_one(provider("mandrill", base), store)
    assert result.error is None
    got = reasons(store)
    assert "md1@example.com" not in got  # a soft bounce
    assert "md6@example.com" not in got  # invalid-sender: about us, not the recipient
    assert "md3@example.com" not in got  # expired
    details = {x.key: x.detail for x in sup.iter_suppressions(store)}
    assert details["md0@example.com"] == "hard-bounce: 550 mailbox unavailable"
    with fake_api(mandrill_state(10)) as base:
        wrong = ProviderConfig.model_validate({"url": "mandrill://other-key", "endpoint": base})
        refused = pull_one(wrong, store)
    assert refused.error is not None and "500" in refused.error and "other-key" not in refused.error


def test_a_full_mandrill_answer_is_merged_and_reported_as_possibly_cut(store: Store) -> None:
    with fake_api(mandrill_state(1500)) as base:
        result = pull_one(provider("mandrill", base), store)
    assert result.error is None  # a warning: the API shows no more
    assert result.warning is not None and "maximum of 1000" in result.warning
    assert result.new == len(reasons(store)) > 600  # what the answer held is merged


def _campaign(providers: list[dict[str, Any]]) -> Campaign:
    return Campaign.model_validate(
        {
            "name": "news",
            "from": "News <news@acme.example>",
            "subject": "Hi",
            "template": "t.html",
            "audience": {"file": "l.csv"},
            "providers": providers,
            "path": Path("/camp/campaign.yml"),
        }
    )


def test_pull_all_merges_so_failover_never_mails_a_suppressed_address(store: Store) -> None:
    sg, mg = sendgrid_state(3), mailgun_state(2)
    mg.lists["complaints"].append({"address": "Bounce1@example.com", "created_at": ""})
    with fake_api(sg) as sg_url, fake_api(mg) as mg_url:
        campaign = _campaign(
            [
                {"url": URLS["sendgrid"], "endpoint": sg_url},
                {"url": URLS["mailgun"], "endpoint": mg_url},
                {"url": "outbox://out"},
            ]
        )
        report = pull_all(campaign, store)
    assert report.ok
    assert [p.provider for p in report.providers] == ["sendgrid", "mailgun", "outbox"]
    assert report.providers[2].skipped is not None
    audience = ["bounce0@example.com", "gone1@example.com", "angry@example.com", "ok@example.com"]
    assert sup.suppressed(store, audience) == set(audience[:3])
    assert report.new == len(reasons(store))  # the address both named counts once
    assert reasons(store)["bounce1@example.com"] == "complaint"


def test_only_named_providers_and_unknown_names(store: Store) -> None:
    sg, mg = sendgrid_state(1), mailgun_state(1)
    with fake_api(sg) as sg_url, fake_api(mg) as mg_url:
        campaign = _campaign(
            [
                {"url": URLS["sendgrid"], "endpoint": sg_url},
                {"url": URLS["mailgun"], "endpoint": mg_url, "name": "mg-eu"},
            ]
        )
        report = pull_all(campaign, store, ["mg-eu"])
        assert [p.provider for p in report.providers] == ["mg-eu"]
        assert sg.requests == []
        with pytest.raises(ConfigError, match="no provider named 'nope'"):
            pull_all(campaign, store, ["nope"])


def test_throttling_is_waited_out(store: Store) -> None:
    state = sendgrid_state(2)
    state.throttle_once = True
    waits: list[float] = []
    with fake_api(state) as base:
        result = pull_one(provider("sendgrid", base), store, sleep=waits.append)
    assert result.error is None and waits == [0.0]
    assert "bounce1@example.com" in reasons(store)


def test_failure_is_reported_without_secrets_and_partial_pages_kept(store: Store) -> None:
    state = sendgrid_state(1100)
    state.fail_status, state.fail_after_pages = 500, 2
    with fake_api(state) as base:
        result = pull_one(provider("sendgrid", base), store)
    assert result.error is not None
    assert "answered 500" in result.error and "/v3/suppression/bounces" in result.error
    assert KEY not in result.error
    assert result.new == 1000  # the two pages that came are merged


def test_wrong_credentials_and_unreachable(store: Store) -> None:
    with fake_api(sendgrid_state(1)) as base:
        cfg = ProviderConfig.model_validate({"url": "sendgrid://wrong-key-123", "endpoint": base})
        result = pull_one(cfg, store)
    assert result.error is not None and "401" in result.error
    down = pull_one(provider("brevo", "http://127.0.0.1:9"), store)
    assert down.error is not None and "ConnectError" in down.error


def test_ses_without_credentials_says_how_to_give_them(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    cfg = ProviderConfig.model_validate(
        {"url": "ses://eu-west-1", "endpoint": "http://127.0.0.1:9"}
    )
    result = pull_one(cfg, store)
    assert result.error is not None and "no AWS credentials" in result.error
