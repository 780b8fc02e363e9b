"""``stamp report`` end to end: a real send through the local SendGrid fake, its events
through ``stamp serve``, then the report in all four formats.

The figures are checked against what was sent and posted; the HTML is parsed for any
external reference and counted for its charts, and rendered by headless Chromium to
a PNG that must not be blank; the workbook is opened with openpyxl and its native
charts counted; hostile values (a link with markup, a contact field that looks like
a formula) must come out as text.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import openpyxl
import pytest
from inbound_helpers import ecdsa_key, sendgrid_headers
from provider_fakes import SendGridFake
from serve_helpers import running
from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.server.run import build

PEOPLE = [f"u{i}@{'a' if i < 6 else 'b'}.example" for i in range(10)]
HOSTILE_URL = 'https://acme.example/x?q="><script>alert(1)</script>'
FORMULA = '=HYPERLINK("http://evil.example","x")'
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a campaign of 10 sent, then 8 delivered, 1 hard bounce, 1 complaint,
    opens from 4 (one a machine's), clicks from 2 (one on a hostile URL)."""
    tmp = tmp_path_factory.mktemp("report")
    private, public = ecdsa_key()
    db = tmp / "stamp.db"
    with SendGridFake() as fake:
        (tmp / "t.html").write_text(
            '<p>Hi {{ first_name }} <a href="https://acme.example/first">a</a> '
            '<a href="https://acme.example/second">b</a></p>'
        )
        with (tmp / "list.csv").open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["email", "first_name", "country"])
            for i, a in enumerate(PEOPLE):
                out.writerow([a, "U", "<script>alert(2)</script>" if i < 3 else FORMULA])
        campaign = tmp / "campaign.yml"
        campaign.write_text(
            "name: news\n"
            'from: "News <news@acme.example>"\n'
            'subject: "Hi"\n'
            "template: t.html\n"
            "transactional: true\n"
            "audience:\n  file: list.csv\n"
            "providers:\n"
            f'  - url: "{fake.provider_url()}"\n'
            f'    endpoint: "{fake.url}"\n'
        )
        result = CliRunner().invoke(app, ["send", str(campaign), "--yes", "--db", str(db)])
        assert result.exit_code == 0, result.output
        accepted = {a: fake.accepted[a][0] for a in PEOPLE}
    now = int(time.time()) + 1
    events = []

    def event(n: int, address: str, kind: str, **extra: object) -> None:
        got = accepted[address]
        events.append(
            {
                "email": address,
                "timestamp": now + n,
                "event": kind,
                "sg_event_id": f"ev-{len(events)}",
                "sg_message_id": f"{got.message_id}.filterdrecv-5645d9c87f-mwh5k-1-{n}",
                **got.fields["personalization"]["custom_args"],
                **extra,
            }
        )

    for n, a in enumerate(PEOPLE):
        if n == 9:
            event(n, a, "bounce", type="bounce", reason="550 5.1.1 no such user")
        elif n < 9:
            event(n, a, "delivered")
    event(0, PEOPLE[8], "spamreport")
    for a in PEOPLE[:3]:
        event(60, a, "open", useragent="Mozilla/5.0")
    event(61, PEOPLE[3], "open", sg_machine_open=True)
    event(120, PEOPLE[0], "click", url="https://acme.example/second")
    event(121, PEOPLE[1], "click", url=HOSTILE_URL)
    event(122, PEOPLE[1], "click", url=HOSTILE_URL)
    body = json.dumps(events).encode()
    built = build(db, {"SENDGRID_WEBHOOK_PUBLIC_KEY": public})
    with running(built) as url:
        answer = httpx.post(
            f"{url}/webhooks/sendgrid",
            content=body,
            headers=sendgrid_headers(private, body, str(now)),
        )
        assert answer.status_code == 200, answer.text
    return campaign


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["report", *args])
    return result.exit_code, result.output


def test_json_figures_are_exact(sent: Path) -> None:
    code, out = _run(str(sent), "--json", "--db", str(sent.parent / "stamp.db"))
    assert code == 0, out
    data = json.loads(out)
    c = data["counts"]
    assert data["schema"] == 1 and data["campaign"] == "news"
    assert (c["planned"], c["sent"], c["delivered"], c["bounced_hard"], c["complained"]) == (
        10,
        10,
        9,
        1,
        1,
    )
    assert (c["opened"], c["opened_human"], c["opens_machine"], c["clicked"], c["clicks"]) == (
        4,
        3,
        1,
        2,
        3,
    )
    assert data["rates"]["delivered"]["of_sent"] == 0.9
    assert data["rates"]["clicked"]["of_delivered"] == round(2 / 9, 6)
    [provider] = data["providers"]
    assert provider["messages"] == 10 and provider["answers"] == {"accepted": 10}
    assert (
        provider["calls_timed"] >= 1 and provider["answer_p50_ms"] is not None
    )  # timed at hand-off
    assert {d["group"]: d["messages"] for d in data["domains"]} == {"a.example": 6, "b.example": 4}
    # template order: /second is in the template, the hostile URL is not
    assert [(link["url"], link["clicks"]) for link in data["links"]] == [
        ("https://acme.example/second", 1),
        (HOSTILE_URL, 2),
    ]
    assert {f["figure"] for f in data["flags"]} == {"complained", "bounced_hard"}


def test_terminal_fits_80_columns(sent: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["report", str(sent), "--by", "country", "--db", str(sent.parent / "stamp.db")],
        env={"COLUMNS": "80"},
        terminal_width=80,
    )
    assert result.exit_code == 0, result.output
    assert "Funnel" in result.output and "Recipient domains" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "srcset") and value:
                self.refs.append(value)


def test_html_is_self_contained_and_escaped(sent: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    code, out = _run(
        str(sent), "--by", "country", "--html", str(page), "--db", str(sent.parent / "stamp.db")
    )
    assert code == 0, out
    text = page.read_text()
    parser = _Refs()
    parser.feed(text)
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert all(r.startswith("#") for r in parser.refs), parser.refs
    assert not re.findall(r"url\(\s*['\"]?(?!#)", text)
    assert "@import" not in text and "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;script&gt;alert(2)" in text
    # one SVG chart per section that has figures to chart
    for key in ("funnel", "sends", "events", "providers", "domains", "links", "segments"):
        section = re.search(rf'<section id="{key}">(.*?)</section>', text, re.S)
        assert section is not None and section.group(1).count("<svg") == 1, key
    assert text.count("<svg") == 7


def test_workbook_has_native_charts_and_text_cells(sent: Path, tmp_path: Path) -> None:
    book_path = tmp_path / "r.xlsx"
    code, out = _run(
        str(sent),
        "--by",
        "country",
        "--xlsx",
        str(book_path),
        "--db",
        str(sent.parent / "stamp.db"),
    )
    assert code == 0, out
    book = openpyxl.load_workbook(book_path)
    assert book.sheetnames[:3] == ["About", "Funnel", "Sends per minute"]
    charts = {ws.title: len(ws._charts) for ws in book.worksheets}
    assert sum(charts.values()) == 7 and charts["Funnel"] == 1 and charts["Links"] == 1
    funnel = book["Funnel"]
    assert funnel.freeze_panes == "A2" and funnel.auto_filter.ref
    sent_row = next(r for r in funnel.iter_rows(min_row=2) if r[0].value == "delivered")
    assert sent_row[1].value == 9 and sent_row[2].number_format == "0.0%"
    seg = book["Segments"]
    values = [c.value for c in seg["A"]]
    assert FORMULA in values
    cell = next(c for c in seg["A"] if c.value == FORMULA)
    assert cell.data_type == "s"  # text, never a formula
    links = [c.value for c in book["Links"]["A"]]
    assert HOSTILE_URL in links


def test_all_campaigns_and_errors(sent: Path, tmp_path: Path) -> None:
    db = str(sent.parent / "stamp.db")
    code, out = _run("--all", "--json", "--db", db)
    assert code == 0 and [c["campaign"] for c in json.loads(out)["campaigns"]] == ["news"]
    code, out = _run("--all", "--since", "2100-01-01", "--json", "--db", db)
    assert code == 0 and json.loads(out)["campaigns"] == []
    page = tmp_path / "all.html"
    assert _run("--all", "--html", str(page), "--db", db)[0] == 0
    assert page.read_text().count("<svg") == 1
    code, out = _run("nope", "--db", db)
    assert code == 2 and "no campaign called 'nope'" in out
    code, out = _run("news", "--html", str(tmp_path / "missing" / "r.html"), "--db", db)
    assert code == 2 and "cannot write the report" in out
    code, out = _run("--all", "--since", "last tuesday", "--db", db)
    assert code == 2 and "--since" in out
    code, out = _run("news", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no store" in out
    assert _run("--db", db)[0] == 2  # neither a campaign nor --all


def test_chromium_renders_the_page(sent: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it"
        )
    from PIL import Image

    page = tmp_path / "r.html"
    assert _run(str(sent), "--html", str(page), "--db", str(sent.parent / "stamp.db"))[0] == 0
    png = tmp_path / "r.png"
    profile = tmp_path / "profile"
    subprocess.run(
        [
            (Path(CHROMIUM).exists() and CHROMIUM) or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1000,2000",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(png) as image:
        assert image.size == (1000, 2000)
        grey = image.convert("L")
        histogram = grey.histogram()
        # not blank: a good share of pixels are not the background, and the charts bring colour
        background = max(histogram)
        assert sum(histogram) - background > 0.03 * sum(histogram)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50
