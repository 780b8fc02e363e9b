"""``stamp import --replace``, ``stamp lists delete|remove`` and ``stamp forget`` from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from stampcli.cli.app import app
from stampcli.store.db import Store

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("email,first_name\n" + "".join(f"{r},{r[0].upper()}\n" for r in rows))
    return path


def _keys(tmp_path: Path, name: str) -> set[str]:
    with Store(tmp_path / "stamp.db") as s:  # conftest: STAMP_DB is tmp_path/stamp.db
        return s.contacts.list_keys(name)


def test_import_replace_removes_members_the_file_no_longer_has(tmp_path: Path) -> None:
    first = _write(tmp_path / "news.csv", ["ann@x.test", "bob@x.test", "cy@x.test"])
    assert invoke("import", str(first)).exit_code == 0
    second = _write(tmp_path / "news2.csv", ["ann@x.test", "dan@x.test"])
    result = invoke("import", str(second), "--list", "news", "--replace", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["removed"] == 2 and summary["replace"] is True and summary["new"] == 1
    assert _keys(tmp_path, "news") == {"ann@x.test", "dan@x.test"}
    # a file with no usable address does not empty the list
    empty = tmp_path / "empty.csv"
    empty.write_text("email,first_name\nnot-an-address,X\n")
    result = invoke("import", str(empty), "--list", "news", "--replace")
    assert result.exit_code == 2 and "would empty list 'news'" in result.stderr
    assert _keys(tmp_path, "news") == {"ann@x.test", "dan@x.test"}


def test_lists_delete_needs_yes_without_a_terminal(tmp_path: Path) -> None:
    invoke("import", str(_write(tmp_path / "news.csv", ["ann@x.test"])))
    result = invoke("lists", "delete", "news")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert _keys(tmp_path, "news") == {"ann@x.test"}
    result = invoke("lists", "delete", "news", "--yes", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"list": "news", "deleted": True, "contacts": 1}
    assert json.loads(invoke("lists", "--json").stdout) == []
    result = invoke("lists", "delete", "news", "--yes")
    assert result.exit_code == 2 and "no list named 'news'" in result.stderr


def test_lists_remove_names_bad_addresses_and_counts(tmp_path: Path) -> None:
    invoke("import", str(_write(tmp_path / "news.csv", ["ann@x.test", "bob@x.test"])))
    result = invoke("lists", "remove", "news", "not-an-address")
    assert result.exit_code == 2 and "'not-an-address'" in result.stderr
    result = invoke("lists", "remove", "news", "ANN@x.test", "zed@x.test", "--json")
    assert json.loads(result.stdout) == {"list": "news", "asked": 2, "removed": 1}
    assert _keys(tmp_path, "news") == {"bob@x.test"}


def test_forget_then_reimport_never_mails_the_person(tmp_path: Path) -> None:
    lst = _write(tmp_path / "news.csv", ["ann@x.test", "bob@x.test"])
    invoke("import", str(lst))
    (tmp_path / "t.html").write_text("<p>Hello {{ first_name }}</p>")
    campaign = tmp_path / "campaign.yml"
    campaign.write_text(
        "name: n1\nfrom: news@acme.example\nsubject: Hi\ntemplate: t.html\n"
        "transactional: true\naudience:\n  list: news\nproviders:\n  - url: outbox://out\n"
    )
    assert invoke("send", str(campaign), "--yes").exit_code == 0
    result = invoke("forget", "Ann@X.test", "--yes", "--json")
    assert result.exit_code == 0, result.output
    (done,) = json.loads(result.stdout)["forgotten"]
    assert done["contacts"] == 1 and done["ledger"] == 1 and done["lists"] == ["news"]
    assert done["suppression"].startswith("sha256:") and "ann@" not in result.stdout
    invoke("import", str(lst))  # the address comes back with the next export
    campaign.write_text(campaign.read_text().replace("name: n1", "name: n2"))
    result = invoke("send", str(campaign), "--yes", "--log-format", "json")
    assert result.exit_code == 0, result.output
    sent = sorted(p.name for p in (tmp_path / "out" / "n2").glob("*.eml"))
    assert sent == ["bob@x.test.eml"]
    with Store(tmp_path / "stamp.db") as s:
        n1 = s.campaigns.get("n1")
        assert n1 is not None
        assert {r.key for r in s.ledger.rows(n1.id)} == {"bob@x.test", done["suppression"]}
