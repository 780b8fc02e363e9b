"""Driving stamp through its real entry points: campaign files, the CLI, the ledger."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import STAMP, WORK, NotMeasured, Proc, fmt_n, run_timed
from benchmarks.corpus import load, write_list
from benchmarks.refs import FROM, NEWSLETTER, SUBJECT

CAMPAIGNS = WORK / "campaigns"
SECRET_ENV = {"STAMP_UNSUBSCRIBE_SECRET": "bench-secret-0123456789abcdef0123456789"}


def smtp_provider(port: int, concurrency: int = 16) -> dict[str, Any]:
    return {
        "url": f"smtp://127.0.0.1:{port}?tls=none&ehlo=bench.example",
        "concurrency": concurrency,
    }


def sendgrid_provider(base: str, concurrency: int) -> dict[str, Any]:
    return {"url": "sendgrid://bench-key", "endpoint": base, "concurrency": concurrency}


def postmark_provider(base: str, concurrency: int, batch: int = 500) -> dict[str, Any]:
    return {
        "url": "postmark://bench-token",
        "endpoint": base,
        "concurrency": concurrency,
        "batch_size": batch,
    }


def write_campaign(
    name: str,
    *,
    audience: dict[str, Any],
    provider: dict[str, Any],
    folder: Path | None = None,
    template: Path = NEWSLETTER,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A campaign.yml (and a copy of the template) in .work/campaigns/NAME/."""
    folder = folder or CAMPAIGNS / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "newsletter.html")
    doc: dict[str, Any] = {
        "name": name,
        "from": FROM,
        "subject": SUBJECT,
        "template": "newsletter.html",
        "audience": audience,
        "unsubscribe": {
            "url": "https://acme.example/unsubscribe?t={{ unsubscribe_token }}",
            "mailto": "unsubscribe@acme.example",
        },
        "list_id": "ACME News <news.acme.example>",
        "providers": [provider],
        **(extra or {}),
    }
    path = folder / "campaign.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def corpus_campaign(template: str, n: int, provider: dict[str, Any], tag: str) -> Path:
    """A corpus template's folder (``benchmarks/templates/TEMPLATE``) copied to
    .work/campaigns/TAG-TEMPLATE-N/, its audience ``n`` rows of its own generator, its one
    provider ``provider``: the campaign exactly as its author wrote it, sent somewhere local."""
    t = load(template)
    folder = CAMPAIGNS / f"{tag}-{template}-{fmt_n(n)}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(t.folder, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    rows_csv = WORK / "corpus" / f"{template}-{fmt_n(n)}.csv"
    if not rows_csv.is_file():
        rows_csv.parent.mkdir(parents=True, exist_ok=True)
        write_list(rows_csv, t.rows(n, 1))
    doc: dict[str, Any] = yaml.safe_load(t.campaign_file.read_text(encoding="utf-8"))
    doc["audience"] = {**doc.get("audience", {}), "file": str(rows_csv)}
    doc["providers"] = [provider]
    path = folder / "campaign.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def fresh_db(name: str) -> Path:
    db = WORK / "db" / f"{name}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return db


def stamp(*args: str | Path, label: str, db: Path, timeout: float = 3600) -> Proc:
    if not STAMP.exists():
        raise NotMeasured(f"{STAMP} not found (is stampcli installed in this venv?)")
    return run_timed(
        [STAMP, *args, "--db", db],
        label=label,
        env={**SECRET_ENV, "NO_COLOR": "1"},
        timeout=timeout,
    )


def send(campaign: Path, db: Path, label: str, timeout: float = 3600) -> Proc:
    return stamp(
        "send", campaign, "--yes", "--log-format", "json", label=label, db=db, timeout=timeout
    )


def ledger_states(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT state, count(*) FROM ledger GROUP BY state").fetchall())
    finally:
        con.close()


def contacts_count(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM contacts").fetchone()[0])
    finally:
        con.close()


def require_ok(proc: Proc, what: str) -> None:
    if proc.returncode != 0:
        tail = proc.tail(300).replace("\n", " | ")
        raise NotMeasured(f"{what} exited {proc.returncode}: {tail}")


def require_sent(db: Path, n: int, what: str) -> None:
    try:
        states = ledger_states(db)
    except sqlite3.Error as exc:
        raise NotMeasured(f"{what}: cannot read the ledger: {exc}") from None
    if states.get("sent", 0) != n:
        raise NotMeasured(f"{what}: expected {n} sent in the ledger, found {states}")
