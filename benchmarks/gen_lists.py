"""Synthetic subscriber lists for the benchmarks, cached in benchmarks/.work/lists/.

Two kinds:

* ``contacts_<n>.csv`` / ``.xlsx``: what a marketer exports from a CRM. Mixed
  case and stray spaces in addresses, about 1% duplicates (same address with
  another case), about 0.5% invalid addresses, a few blank lines' worth of
  empty emails. Used for list loading and ``stamp import``.
* ``recipients_<n>.csv``: a clean list of exactly n unique, valid addresses,
  so that "n recipients" means n messages. Used for every send.

Addresses are on the reserved example.com/.net/.org domains; sends only ever
go to 127.0.0.1 sinks anyway.

    python benchmarks/gen_lists.py 10000 100000 1000000 --xlsx 100000
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import unicodedata
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import LISTS, log

FIRST = [
    "Anna", "Ben", "Chloé", "David", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas",
    "Karin", "Luca", "Maya", "Nils", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tara",
    "Umut", "Vera", "Wen", "Xavier", "Yara", "Zoë", "Émile", "Łukasz", "Søren", "Ana",
]  # fmt: skip
LAST = [
    "Müller", "Smith", "García", "Rossi", "Dubois", "Nowak", "Jensen", "Kowalski", "Silva",
    "Tanaka", "Öztürk", "Novak", "Ivanova", "Johansson", "Brown", "Lefèvre", "Schmidt",
    "Costa", "Meyer", "Kim",
]  # fmt: skip
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "ES", "IT", "PL", "SE", "AT"]
PLANS = ["free", "pro", "team", "enterprise"]
DOMAINS = ["example.com", "example.net", "example.org"]
HEADER = ["email", "first_name", "last_name", "country", "plan", "signup_date", "score"]

# The segment every benchmark uses: about 40% of rows.
SEGMENT = "country in ['DE', 'FR', 'NL', 'AT'] and plan != 'free'"


def _row(i: int, rng: random.Random) -> list[str]:
    first = FIRST[i % len(FIRST)]
    last = LAST[(i // 7) % len(LAST)]
    stem = unicodedata.normalize("NFKD", first.lower()).encode("ascii", "ignore").decode()
    email = f"{stem[:3]}.{i}@{DOMAINS[i % 3]}"
    return [
        email,
        first,
        last,
        COUNTRIES[rng.randrange(len(COUNTRIES))],
        PLANS[rng.randrange(len(PLANS))],
        f"20{rng.randrange(15, 25)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        str(rng.randrange(0, 1000)),
    ]


def _dirty_rows(n: int) -> list[list[str]]:
    rng = random.Random(n)
    rows = []
    for i in range(n):
        r = _row(i, rng)
        roll = rng.random()
        if roll < 0.01 and i > 10:  # duplicate of an earlier row, other case, padded
            r[0] = "  " + rows[rng.randrange(i)][0].strip().upper() + " "
        elif roll < 0.015:  # invalid address
            r[0] = r[0].replace("@", " at ")
        elif roll < 0.017:  # missing address
            r[0] = ""
        elif roll < 0.1:
            r[0] = r[0].capitalize()
        rows.append(r)
    return rows


def contacts_csv(n: int) -> Path:
    path = LISTS / f"contacts_{n}.csv"
    if not path.exists():
        log(f"generating {path.name}")
        LISTS.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(HEADER)
            w.writerows(_dirty_rows(n))
        tmp.rename(path)
    return path


def contacts_xlsx(n: int) -> Path:
    path = LISTS / f"contacts_{n}.xlsx"
    if not path.exists():
        from openpyxl import Workbook

        log(f"generating {path.name} (openpyxl write_only)")
        LISTS.mkdir(parents=True, exist_ok=True)
        wb = Workbook(write_only=True)
        ws = wb.create_sheet("contacts")
        ws.append(HEADER)
        for r in _dirty_rows(n):
            r[6] = int(r[6])  # a real number cell, as Excel exports have
            ws.append(r)
        tmp = path.with_name(path.stem + ".tmp.xlsx")
        wb.save(tmp)
        tmp.rename(path)
    return path


def recipients_csv(n: int) -> Path:
    path = LISTS / f"recipients_{n}.csv"
    if not path.exists():
        log(f"generating {path.name}")
        LISTS.mkdir(parents=True, exist_ok=True)
        rng = random.Random(n + 1)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(HEADER)
            for i in range(n):
                w.writerow(_row(i, rng))
        tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--xlsx", type=int, action="append", default=[])
    args = ap.parse_args()
    for n in args.sizes:
        print(contacts_csv(n))
        print(recipients_csv(n))
    for n in args.xlsx:
        print(contacts_xlsx(n))


if __name__ == "__main__":
    main()
