"""The stamp command itself: version, help texts, `python -m stampcli`, `stamp init`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stampcli import __version__
from stampcli.cli.app import app

runner = CliRunner()

COMMANDS = [
    "init",
    "import",
    "lists",
    "preview",
    "check",
    "send",
    "status",
    "retry",
    "providers",
    "suppress",
    "unsubscribe",
]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"stamp {__version__}"


def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stampcli", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"stamp {__version__}"


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output, name


def test_every_command_has_help() -> None:
    for name in COMMANDS:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert "Usage:" in result.output
        # a real sentence of help, not just the usage line
        assert len(result.output.split()) > 12, (name, result.output)


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["sned"])
    assert result.exit_code == 2


def test_init_writes_a_campaign_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    result = runner.invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    for name in ("campaign.yml", "newsletter.html", "subscribers.csv", ".env", ".gitignore"):
        assert (target / name).is_file(), name
    assert "STAMP_UNSUBSCRIBE_SECRET=" in (target / ".env").read_text()
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 2
    assert "already exist" in again.output
    assert runner.invoke(app, ["init", str(target), "--force"]).exit_code == 0


def test_init_campaign_loads(tmp_path: Path) -> None:
    from stampcli.config import load_campaign

    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    campaign = load_campaign(tmp_path / "campaign.yml")
    assert campaign.providers[0].scheme == "outbox"
    assert campaign.audience.file == (tmp_path / "subscribers.csv").resolve()


def test_init_files_are_the_shipped_examples() -> None:
    """`stamp init` copies package data; it must not drift from templates/ and examples/."""
    root = Path(__file__).resolve().parent.parent
    defaults = root / "stampcli" / "defaults"
    pairs = {
        "newsletter.html": "templates/newsletter.html",
        "images/logo.png": "templates/images/logo.png",
        "subscribers.csv": "examples/lists/customers.csv",
    }
    for shipped, source in pairs.items():
        assert (defaults / shipped).read_bytes() == (root / source).read_bytes(), shipped


def test_init_then_send_writes_one_eml_per_subscriber(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STAMP_UNSUBSCRIBE_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init", "demo"]).exit_code == 0
    result = runner.invoke(app, ["send", "demo/campaign.yml", "--yes", "--log-format", "json"])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "demo" / "subscribers.csv").read_text().strip().splitlines()[1:]
    emls = list((tmp_path / "demo" / "outbox").rglob("*.eml"))
    assert len(emls) == len(rows)
    again = runner.invoke(app, ["send", "demo/campaign.yml", "--yes", "--log-format", "json"])
    assert again.exit_code == 0
    assert len(list((tmp_path / "demo" / "outbox").rglob("*.eml"))) == len(rows)


def test_main_loads_only_the_command_it_runs() -> None:
    """`stamp import` must not pay for the send engine's imports (cron start-up)."""
    code = "\n".join(
        [
            "import contextlib, sys",
            "sys.argv = ['stamp', 'lists', '--help']",
            "from stampcli.cli import app",
            "with contextlib.suppress(SystemExit):",
            "    app.main()",
            "m = sys.modules",
            "print('stampcli.delivery.engine' in m, 'stampcli.cli.lists_cmd' in m)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False True"


def test_the_command_init_prints_works_without_a_terminal(tmp_path: Path) -> None:
    """The hint after `stamp init` must run as printed from a script (no prompt to answer)."""
    stamp = [sys.executable, "-m", "stampcli"]
    made = subprocess.run(
        [*stamp, "init", "demo"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    [hint] = [line for line in made.stdout.splitlines() if line.startswith("Next:")]
    command = hint.removeprefix("Next: ").split(" (")[0].split()
    assert command[:2] == ["stamp", "send"] and "--yes" in command
    sent = subprocess.run(
        [*stamp, *command[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert sent.returncode == 0, sent.stderr
    assert len(list((tmp_path / "demo" / "outbox").rglob("*.eml"))) == 25
