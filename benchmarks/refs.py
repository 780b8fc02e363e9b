"""The references stamp is compared to, measured in the same run on the same inputs."""

from __future__ import annotations

import csv
import hashlib
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path
from typing import Any

from benchmarks.common import FIXTURES, MAILMERGE_VENV, ROOT, WORK, Proc, run_timed

# The sends use this self-contained newsletter (no images), so that mailmerge
# can send the very same content; the render cost (3.) uses the repository's
# example newsletter when it is there.
NEWSLETTER = FIXTURES / "newsletter.html"
EXAMPLE = ROOT / "templates" / "newsletter.html"
EXAMPLE_LOGO = ROOT / "templates" / "images" / "logo.png"
UNSUB = "https://acme.example/unsubscribe?t="
SUBJECT = "{{ first_name }}, what's new in November"
FROM = "ACME News <news@example.com>"


def dictreader_seconds(path: Path) -> tuple[float, int]:
    """Plain csv.DictReader over the file, every row materialised."""
    t0 = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as f:
        n = sum(1 for _ in csv.DictReader(f))
    return time.perf_counter() - t0, n


def sample_rows(path: Path, n: int) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        out = []
        for row in csv.DictReader(f):
            out.append(row)
            if len(out) >= n:
                break
    return out


class StraightforwardRenderer:
    """What a script would do: Jinja, then premailer, html2text and EmailMessage per message."""

    def __init__(self, template: Path = NEWSLETTER, logo: Path | None = None) -> None:
        import html2text
        import jinja2
        import premailer  # noqa: F401  (benchmark-only dependency)

        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        self.html = env.from_string(template.read_text(encoding="utf-8"))
        self.subject = env.from_string(SUBJECT)
        self.h2t = html2text
        self.logo = logo.read_bytes() if logo is not None else None

    def render(self, row: dict[str, Any]) -> bytes:
        import premailer

        subject = self.subject.render(row)
        token = hashlib.sha256(row["email"].encode()).hexdigest()[:32]
        ctx = {**row, "subject": subject, "unsubscribe_url": UNSUB + token}
        html = self.html.render(ctx)
        inlined = premailer.transform(html, keep_style_tags=True, disable_validation=True)
        conv = self.h2t.HTML2Text()
        text = conv.handle(inlined)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = FROM
        msg["To"] = row["email"]
        msg["Subject"] = subject
        msg["Date"] = formatdate()
        msg["Message-ID"] = f"<{row['email'].replace('@', '.')}@example.com>"
        msg["List-Unsubscribe"] = f"<{UNSUB}{token}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(text)
        msg.add_alternative(inlined, subtype="html")
        if self.logo is not None:
            html_part = msg.get_payload()[1]  # type: ignore[index]
            html_part.add_related(self.logo, "image", "png", cid="<logo>")
        return msg.as_bytes()


def straightforward_ms_per_message(
    rows: list[dict[str, str]], template: Path = NEWSLETTER, logo: Path | None = None
) -> float:
    r = StraightforwardRenderer(template, logo)
    r.render(rows[0])  # warm
    t0 = time.perf_counter()
    for row in rows:
        r.render(row)
    return (time.perf_counter() - t0) * 1000 / len(rows)


# --------------------------------------------------------------------------- mailmerge


MAILMERGE_DIR = WORK / "mailmerge"


def mailmerge_prepare(port: int) -> Path:
    """mailmerge's own files: server config (no auth, no TLS, no rate limit) and template.

    The template is the same newsletter as a multipart/alternative message in
    mailmerge's syntax (its header block, then MIME parts it renders with Jinja).
    The text part is html2text's output of the newsletter, made once: mailmerge
    has no text-from-HTML step of its own.
    """
    import html2text

    MAILMERGE_DIR.mkdir(parents=True, exist_ok=True)
    (MAILMERGE_DIR / "mailmerge_server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n"
    )
    html = NEWSLETTER.read_text(encoding="utf-8")
    text = html2text.html2text(html)
    tpl = (
        "TO: {{ email }}\n"
        f"SUBJECT: {SUBJECT}\n"
        f"FROM: {FROM}\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/alternative; boundary="bench-boundary"\n'
        "\n"
        "--bench-boundary\n"
        'Content-Type: text/plain; charset="utf-8"\n'
        "\n"
        f"{text}\n"
        "--bench-boundary\n"
        'Content-Type: text/html; charset="utf-8"\n'
        "\n"
        f"{html}\n"
        "--bench-boundary--\n"
    )
    path = MAILMERGE_DIR / "mailmerge_template.txt"
    path.write_text(tpl, encoding="utf-8")
    return path


def mailmerge_run(port: int, database: Path, limit: int) -> Proc:
    tpl = mailmerge_prepare(port)
    exe = MAILMERGE_VENV / "bin" / "mailmerge"
    return run_timed(
        [
            exe,
            "--no-dry-run",
            "--limit",
            str(limit),
            "--template",
            tpl,
            "--database",
            database,
            "--config",
            MAILMERGE_DIR / "mailmerge_server.conf",
            "--output-format",
            "raw",
        ],
        label=f"mailmerge-{limit}",
        cwd=MAILMERGE_DIR,
        timeout=3600,
    )
