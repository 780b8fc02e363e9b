"""Every command's --help shows what a user types (no Python types) and the defaults."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from stampcli.cli.app import app

runner = CliRunner()


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        found += _paths(sub, (*prefix, name))
    return found


COMMANDS = _paths(typer.main.get_command(app))


def help_of(*path: str) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_walked() -> None:
    assert ("send",) in COMMANDS and ("suppress", "add") in COMMANDS and len(COMMANDS) > 15


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "stamp")
def test_help_shows_no_python_types(path: tuple[str, ...]) -> None:
    text = help_of(*path)
    assert not re.search(r"<(bool|str|int|float|path|list\[[^\]]*\]|int range)>", text), text
    assert "list[str]" not in text


def test_metavars_are_what_a_user_types() -> None:
    send = help_of("send")
    assert re.search(r"--yes\s+-y\s+Send without asking", send)
    assert re.search(r"--limit\s+N ", send)
    assert "auto|rich|json" in send and "[default: auto]" in send
    assert "CAMPAIGN_FILE" in send
    assert re.search(r"ADDRESSES\s+Addresses to suppress", help_of("suppress", "add"))


def test_options_without_a_shown_default_say_it() -> None:
    preview = help_of("preview")
    assert "eml|html|text" in preview and "(default: from --output's suffix" in preview
    export = help_of("suppress", "export")
    assert "(default: xlsx for an --output ending in .xlsx, else csv)" in export
    assert "(default: stdout, for CSV)" in export
