"""Own open and click tracking (``tracking: {own: true}``): a real send to the outbox,
the .eml parsed, its pixel and links fetched from ``stamp serve`` (the real app under
uvicorn), the events recorded; forged tokens, open redirects, machine hits."""

from __future__ import annotations

import email
import io
import re
import time
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from serve_helpers import UNSUBSCRIBE_SECRET, event_rows, running
from test_store_contract import BACKENDS, Backend, backend, store  # noqa: F401  (the backend fixture's table)  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.compliance.tokens import b64
from stampcli.compliance.tracking_tokens import TrackingSigner, read_click
from stampcli.config import TrackingConfig, load_campaign
from stampcli.errors import ConfigError
from stampcli.events.machine import Classifier
from stampcli.events.model import EventType
from stampcli.records import NewRow
from stampcli.render.renderer import Renderer
from stampcli.server.run import build
from stampcli.service.events import record_events
from stampcli.service.tracking import DEDUPE_SECONDS, hit_event
from stampcli.store import protocols
from stampcli.store.db import Store

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PEOPLE = ["ann@example.com", "bob@example.com"]
TEMPLATE = """<html><head><style>a { color: red; }</style></head><body>
<p>Hello {{ first_name }}</p>
<p><a href="https://acme.example/news?a=1&amp;b=2">News</a></p>
{% for item in items %}<p><a href="{{ item }}">{{ loop.index }}</a></p>{% endfor %}
<p><a href="https://acme.example/account?e={{ email | urlencode }}">Account</a></p>
<p><a href="mailto:help@acme.example">Mail</a> <a href="tel:+4930123">Call</a>
<a href="#top">Top</a> <a href="https://acme.example/private/area">Private</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""


def _campaign(folder: Path, base_url: str, *, extra: str = "") -> Path:
    (folder / "t.html").write_text(TEMPLATE)
    (folder / "list.csv").write_text(
        "email,first_name\n" + "".join(f"{a},{a[:3].title()}\n" for a in PEOPLE)
    )
    path = folder / "campaign.yml"
    path.write_text(
        "name: news\n"
        'from: "News <news@acme.example>"\n'
        'subject: "Hi"\n'
        "template: t.html\n"
        "audience:\n  file: list.csv\n"
        "unsubscribe:\n"
        '  url: "https://acme.example/unsubscribe?t={{ unsubscribe_token }}"\n'
        "variables:\n"
        "  items: [https://blog.acme.example/one, https://blog.acme.example/two]\n"
        "tracking:\n"
        "  own: true\n"
        f"  base_url: {base_url}\n"
        '  skip: ["https://acme.example/private/*"]\n'
        f"{extra}"
        "providers:\n"
        '  - url: "outbox://out"\n'
    )
    return path


def _links(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def _message(folder: Path, address: str) -> email.message.EmailMessage:
    for path in sorted((folder / "out").rglob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if address in str(msg["To"]):
            return msg  # type: ignore[return-value]
    raise AssertionError(f"no .eml for {address}")


def _parts(msg: email.message.EmailMessage) -> tuple[str, str]:
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real send of the campaign to the outbox, with ``stamp serve`` up on the store;
    the server's clock runs an hour ahead (hits right after sending count as prefetch)."""
    monkeypatch.setenv("STAMP_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)
    db = tmp_path / "stamp.db"
    Store(db).close()
    ahead = [3600.0]
    built = build(
        db, {"STAMP_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET}, clock=lambda: time.time() + ahead[0]
    )
    with running(built) as url:
        campaign = _campaign(tmp_path, url)
        result = CliRunner().invoke(app, ["send", str(campaign), "--yes", "--db", str(db)])
        assert result.exit_code == 0, result.output
        yield {"url": url, "db": db, "folder": tmp_path, "built": built, "ahead": ahead}


def test_links_are_rewritten_and_the_pixel_added(sent: Any) -> None:
    html, text = _parts(_message(sent["folder"], PEOPLE[0]))
    base = sent["url"]
    links = _links(html)
    tracked = [link for link in links if link.startswith(f"{base}/c/")]
    # the static link, the two from campaign variables, the personal account link
    assert len(tracked) == 4
    left = [link for link in links if not link.startswith(f"{base}/c/")]
    assert "mailto:help@acme.example" in left and "tel:+4930123" in left and "#top" in left
    assert "https://acme.example/private/area" in left  # tracking.skip
    assert any(link.startswith("https://acme.example/unsubscribe?t=") for link in left)
    assert html.count(f"{base}/o/") == 1 and html.index("/o/") < html.index("</body>")
    # the text part keeps the real addresses
    assert "https://blog.acme.example/one" in text and f"{base}/c/" not in text


def test_a_click_redirects_to_the_original_and_counts_once_as_human(sent: Any) -> None:
    html, _ = _parts(_message(sent["folder"], PEOPLE[0]))
    base = sent["url"]
    tracked = [link for link in _links(html) if link.startswith(f"{base}/c/")]
    # Start the reader's clicks a second into a dedupe bucket: an identical click is the
    # same event within its bucket only, and this test's 150 s must not straddle two.
    now = time.time() + sent["ahead"][0]
    sent["ahead"][0] += DEDUPE_SECONDS - now % DEDUPE_SECONDS + 1
    originals = []
    for link in tracked:
        sent["ahead"][0] += 30  # a reader's pace (four links in seconds is a scanner's)
        answer = httpx.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
        assert answer.status_code == 302
        assert "no-store" in answer.headers["cache-control"]
        originals.append(answer.headers["location"])
    assert originals == [
        "https://acme.example/news?a=1&b=2",
        "https://blog.acme.example/one",
        "https://blog.acme.example/two",
        "https://acme.example/account?e=ann%40example.com",
    ]
    # a second click of the same link by the same reader: the same event
    sent["ahead"][0] += 30
    assert httpx.get(tracked[0], headers={"User-Agent": BROWSER}).status_code == 302
    rows = [r for r in event_rows(sent["db"]) if r["type"] == "clicked"]
    assert len(rows) == 4
    assert {r["url"] for r in rows} == set(originals)
    assert all(r["recipient"] == PEOPLE[0] and r["ledger_id"] is not None for r in rows)
    assert all(r["reason"] is None and r["matched_by"] == "metadata" for r in rows)
    with Store(sent["db"]) as st:
        cid = st.campaigns.get("news").id  # type: ignore[union-attr]
        counts = st.events.counts(cid)
    assert counts["clicked"] == 4 and counts["clicked_unique"] == 1
    assert counts["clicked_machine"] == 0


def test_the_pixel_is_a_gif_that_is_not_cached_and_records_one_open(sent: Any) -> None:
    html, _ = _parts(_message(sent["folder"], PEOPLE[1]))
    pixel = re.search(r'src="([^"]*/o/[^"]*)"', html)
    assert pixel is not None
    for _ in range(3):
        answer = httpx.get(pixel.group(1), headers={"User-Agent": BROWSER})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/gif"
        image = Image.open(io.BytesIO(answer.content))
        assert (image.format, image.size) == ("GIF", (1, 1))
        assert image.info.get("transparency") == 0
        assert "no-store" in answer.headers["cache-control"]
        assert answer.headers["pragma"] == "no-cache"
    opens = [r for r in event_rows(sent["db"]) if r["type"] == "opened"]
    assert len(opens) == 1 and opens[0]["recipient"] == PEOPLE[1]
    assert opens[0]["reason"] is None


def test_machine_hits_are_flagged_and_counted_apart(sent: Any) -> None:
    html, _ = _parts(_message(sent["folder"], PEOPLE[0]))
    pixel = re.search(r'src="([^"]*/o/[^"]*)"', html)
    assert pixel is not None
    # Apple Mail Privacy Protection: Apple's network, the bare user agent (via the proxy)
    httpx.get(pixel.group(1), headers={"User-Agent": "Mozilla/5.0", "X-Forwarded-For": "17.58.1.2"})
    link = next(x for x in _links(html) if x.startswith(f"{sent['url']}/c/"))
    httpx.head(link, headers={"User-Agent": BROWSER})  # a link checker
    httpx.get(link, headers={"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"})
    sent["ahead"][0] = 2.0  # seconds after sending: a prefetch
    httpx.get(pixel.group(1), headers={"User-Agent": BROWSER})
    rows = event_rows(sent["db"])
    reasons = sorted(r["reason"] for r in rows)
    assert len(rows) == 3  # the two machine clicks of one link in one hour are one event
    assert all(reason.startswith("machine: ") for reason in reasons)
    assert any("Apple Mail Privacy Protection" in r for r in reasons)
    assert any("prefetch" in r for r in reasons)
    with Store(sent["db"]) as st:
        counts = st.events.counts(st.campaigns.get("news").id)  # type: ignore[union-attr]
    assert counts["opened"] == 0 and counts["clicked"] == 0
    assert counts["opened_machine"] == 2 and counts["clicked_machine"] == 1
    campaign = str(sent["folder"] / "campaign.yml")
    shown = CliRunner().invoke(app, ["status", campaign, "--db", str(sent["db"])])
    assert shown.exit_code == 0, shown.output
    assert "by machines: 2 opens, 1 clicks" in shown.output
    assert " opens (" not in shown.output  # no human opens to show


def test_forged_altered_and_truncated_tokens_get_a_bare_404(sent: Any) -> None:
    html, _ = _parts(_message(sent["folder"], PEOPLE[0]))
    base = sent["url"]
    link = next(x for x in _links(html) if x.startswith(f"{base}/c/"))
    pixel = re.search(r'src="([^"]*/o/[^"]*)"', html)
    assert pixel is not None
    token = link.rsplit("/", 1)[1]
    url_part, link_sig, payload, sig = token.split(".")
    evil = b64(b"https://evil.example/phish")
    bad = [
        f"{base}/c/{token[:-3]}",  # truncated
        f"{base}/c/{url_part}.{link_sig}.{payload}.{sig[:-1]}A",  # altered signature
        f"{base}/c/{evil}.{link_sig}.{payload}.{sig}",  # another address: an open redirect
        f"{base}/c/{payload}.{sig}",  # an open token as a click
        f"{base}/c/not-a-token",
        f"{base}/o/{token}.gif",  # a click token as an open
        pixel.group(1).replace(".gif", ""),
        pixel.group(1)[:-8] + ".gif",
    ]
    for address in bad:
        answer = httpx.get(address, headers={"User-Agent": BROWSER}, follow_redirects=False)
        assert answer.status_code == 404, address
        assert answer.content == b"" and "location" not in answer.headers
    assert event_rows(sent["db"]) == []


def test_an_open_redirect_is_impossible_even_with_a_genuine_message_token(sent: Any) -> None:
    """The link part is signed per campaign: a link part signed for another campaign, or
    for an address stamp never sent, is refused."""
    html, _ = _parts(_message(sent["folder"], PEOPLE[0]))
    base = sent["url"]
    link = next(x for x in _links(html) if x.startswith(f"{base}/c/"))
    msg = ".".join(link.rsplit("/", 1)[1].split(".")[2:])
    other = TrackingSigner(UNSUBSCRIBE_SECRET, "another-campaign", 3600).link(
        "https://evil.example/"
    )
    wrong_key = TrackingSigner("x" * 32, "news", 3600).link("https://evil.example/")
    for part in (other, wrong_key):
        answer = httpx.get(f"{base}/c/{part}.{msg}", follow_redirects=False)
        assert answer.status_code == 404
    assert event_rows(sent["db"]) == []


def test_fast_and_straightforward_renders_agree(tmp_path: Path) -> None:
    env = {"STAMP_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET}
    camp = load_campaign(_campaign(tmp_path, "https://t.acme.example"), env=env)
    fast = Renderer(camp, env=env, clock=lambda: 1_800_000_000.0)
    slow = Renderer(camp, env=env, clock=lambda: 1_800_000_000.0, fast=False)
    for n in range(6):
        who = f"reader{n}@example.com"
        a = fast.render(who, who, {"first_name": f"R{n}"})
        b = slow.render(who, who, {"first_name": f"R{n}"})
        assert a.raw == b.raw
    assert fast.stats.fast >= 3 and fast.stats.mismatches == 0
    html = a.html or ""
    tokens = [x.rsplit("/", 1)[1] for x in _links(html) if "/c/" in x]
    hit = read_click(UNSUBSCRIBE_SECRET, tokens[-1])
    assert (hit.campaign, hit.key, hit.url) == (
        "news",
        "reader5@example.com",
        "https://acme.example/account?e=reader5%40example.com",
    )


@pytest.mark.parametrize(
    ("tracking", "message"),
    [
        ({"own": True}, "tracking.own needs tracking.base_url"),
        ({"own": True, "base_url": "http://t.acme.example"}, "is not an https:// URL"),
        ({"own": True, "base_url": "https://t.acme.example/?x=1"}, "without a query"),
        ({"own": True, "base_url": "https://t.x", "skip": [" "]}, "skip[0] is empty"),
        ({"base_url": "https://t.acme.example"}, "only with tracking.own: true"),
    ],
)
def test_bad_tracking_config_names_the_key(tracking: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        TrackingConfig(**tracking)


def test_bad_tracking_config_in_a_file_is_located(tmp_path: Path) -> None:
    path = _campaign(tmp_path, "ftp://t.acme.example")
    with pytest.raises(ConfigError, match=r"tracking\.base_url"):
        load_campaign(path, env={"STAMP_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET})


def test_tracking_without_the_secret_is_a_clear_error(tmp_path: Path) -> None:
    camp = load_campaign(_campaign(tmp_path, "https://t.acme.example"), env={})
    camp = camp.model_copy(update={"unsubscribe": None})
    with pytest.raises(ConfigError, match="tracking.own signs its links"):
        Renderer(camp, env={})


def test_providers_are_told_not_to_track_when_stamp_does() -> None:
    own = TrackingConfig(own=True, base_url="https://t.acme.example", opens=True)
    assert own.for_providers() == TrackingConfig(opens=False, clicks=False)
    assert own.own_opens and own.own_clicks
    assert not TrackingConfig(own=True, base_url="https://t.x", clicks=False).own_clicks
    assert TrackingConfig(opens=True).for_providers() == TrackingConfig(opens=True)


def test_machine_and_human_hits_are_counted_apart_in_both_stores(
    store: protocols.Store,  # noqa: F811
) -> None:
    cid = store.campaigns.ensure("news").id
    store.ledger.insert(cid, [NewRow("ann@example.com", "ann@example.com", "{}")])
    signer = TrackingSigner(UNSUBSCRIBE_SECRET, "news", 86400)
    token = signer.message("ann@example.com", 1_800_000_000)
    link = signer.link("https://acme.example/a")
    hit = read_click(UNSUBSCRIBE_SECRET, f"{link}.{token}")
    classify = Classifier()
    later = 1_800_003_600.0
    events = [
        hit_event(
            hit, "click", classify, method="GET", user_agent=BROWSER, ip="1.2.3.4", now=later
        ),
        hit_event(
            hit, "click", classify, method="GET", user_agent=BROWSER, ip="1.2.3.4", now=later + 1
        ),
        hit_event(
            hit, "click", classify, method="HEAD", user_agent=BROWSER, ip="1.2.3.4", now=later
        ),
    ]
    assert all(e is not None for e in events)
    assert [e.type for e in events if e] == [EventType.CLICKED] * 3
    result = record_events(store, [e for e in events if e is not None])
    assert result.stored == 2 and result.duplicates == 1
    counts = store.events.counts(cid)
    assert counts["clicked"] == 1 and counts["clicked_machine"] == 1
    expired = hit_event(
        hit, "click", classify, method="GET", user_agent=BROWSER, ip=None, now=1_800_000_000 + 86401
    )
    assert expired is None
