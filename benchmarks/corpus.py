"""The template corpus of ``benchmarks/templates/``: each campaign, its rows, its renderers.

Every folder there is a campaign as a newsletter author writes it
(``campaign.yml``, its template and partials) with a ``data.py`` whose
``rows(n, seed)`` gives subscriber rows as a CSV export has them (text values,
empty cells). Used by ``bench_render_corpus.py`` and ``tests/test_render_corpus.py``.

    python benchmarks/corpus.py     # (re)write each folder's sample list.csv (20 rows)
"""

from __future__ import annotations

import csv
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH

TEMPLATES = BENCH / "templates"
SAMPLE_ROWS = 20


@dataclass(frozen=True)
class CorpusTemplate:
    name: str
    folder: Path
    rows: Callable[[int, int], list[dict[str, str]]]

    @property
    def campaign_file(self) -> Path:
        return self.folder / "campaign.yml"


def names() -> list[str]:
    return sorted(
        p.name
        for p in TEMPLATES.iterdir()
        if (p / "campaign.yml").is_file() and (p / "data.py").is_file()
    )


def load(name: str) -> CorpusTemplate:
    module = importlib.import_module(f"benchmarks.templates.{name}.data")
    folder = TEMPLATES / name
    return CorpusTemplate(name, folder, module.rows)


def write_list(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> int:
    for name in names():
        t = load(name)
        write_list(t.folder / "list.csv", t.rows(SAMPLE_ROWS, 0))
        print(t.folder / "list.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
