"""Helpers for the render tests: a campaign folder written into tmp_path, parsed messages."""

from __future__ import annotations

import email
import email.policy
import shutil
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml

from stampcli.config import Campaign, load_campaign
from stampcli.render.renderer import Renderer

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
EXAMPLES = ROOT / "examples"
SECRET = "test-secret-0123456789abcdef"
ENV = {"STAMP_UNSUBSCRIBE_SECRET": SECRET}

SIMPLE_HTML = """<!DOCTYPE html>
<html><head><title>{{ subject }}</title>
<style>p { color: #333333; } @media (max-width: 600px) { p { font-size: 18px; } }</style>
</head><body>
<p>Hi {{ first_name }},</p>
<p>Our November news: shared workspaces and faster exports for every plan.</p>
<p><a href="https://acme.example/blog">Read the blog</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>
"""


def write_campaign(
    folder: Path,
    template: str = SIMPLE_HTML,
    template_name: str = "t.html",
    files: dict[str, str | bytes] | None = None,
    csv: str = "email,first_name\nada@example.com,Ada\n",
    **overrides: Any,
) -> Path:
    """A campaign.yml with its template and list in ``folder``; returns the yml path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / template_name).write_text(template, encoding="utf-8")
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    (folder / "list.csv").write_text(csv, encoding="utf-8")
    data: dict[str, Any] = {
        "name": "november-news",
        "from": "ACME News <news@acme.example>",
        "subject": "{{ first_name }}, what's new",
        "template": template_name,
        "audience": {"file": "list.csv"},
        "unsubscribe": {
            "url": "https://acme.example/unsubscribe?t={{ unsubscribe_token }}",
            "mailto": "unsubscribe@acme.example",
        },
        "list_id": "ACME News <news.acme.example>",
        "providers": [{"url": "outbox://out"}],
    }
    for key, value in overrides.items():
        data[key.rstrip("_")] = value
    path = folder / "campaign.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def campaign(folder: Path, **kwargs: Any) -> Campaign:
    return load_campaign(write_campaign(folder, **kwargs), env=ENV)


def renderer(folder: Path, **kwargs: Any) -> Renderer:
    return Renderer(campaign(folder, **kwargs), env=ENV, clock=lambda: 1_700_000_000.0)


def example(name: str, tmp: Path) -> Campaign:
    """An example campaign; its outbox points into ``tmp`` so nothing is written to the tree."""
    del tmp
    return load_campaign(EXAMPLES / name, env=ENV)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def all_defects(msg: EmailMessage) -> list[Any]:
    found: list[Any] = []
    for part in msg.walk():
        found.extend(part.defects)
        for name, value in part.items():
            found.extend(getattr(value, "defects", ()))
            del name
    return found


def copy_templates(dest: Path) -> Path:
    shutil.copytree(TEMPLATES, dest)
    return dest
