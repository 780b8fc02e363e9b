"""Instructions a render worker spends on one message, counted by valgrind: a noise-free A/B.

    python benchmarks/render_instructions.py                  # this tree
    python benchmarks/render_instructions.py --tree /tmp/old  # another checkout's stampcli

On this shared machine the time of one render moves by 30% from minute to
minute; the number of instructions does not (two runs of one tree here:
632,296 and 631,072 a message). This runs the worker's own loop
(``render_rows`` and the pipe frame) over the benchmark newsletter for the
Postmark-style JSON path (``--raw`` for the MIME path) twice under
``valgrind --tool=callgrind``, once with no messages and once with
``--messages``, and prints the difference per message.
Start-up, imports and the first 200 renders (the fast path's verification
and cache filling) are in both runs and cancel out. Needs valgrind (Debian
package ``valgrind``); takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PY, _apt_install
from benchmarks.gen_lists import recipients_csv
from benchmarks.stampside import SECRET_ENV, postmark_provider, write_campaign

WARM = 200  # renders before counting starts, in both runs

_CHILD = """
import csv, json, os, sys
sys.path.insert(0, os.environ["TREE"])
from stampcli.config import load_campaign
from stampcli.render.renderer import Renderer
from stampcli.render.worker import frame, render_rows
renderer = Renderer(load_campaign(sys.argv[1]), raw=sys.argv[2] == "raw")
n = int(sys.argv[4])
rows = []
with open(sys.argv[3], encoding="utf-8") as f:
    for i, row in enumerate(csv.DictReader(f)):
        if i >= {warm} + n:
            break
        email = row.pop("email")
        rows.append((email, email, json.dumps(row)))
render_rows(renderer, rows[:{warm}])
for k in range({warm}, {warm} + n, 100):
    frame(("ok", render_rows(renderer, rows[k : k + 100])))
""".replace("{warm}", str(WARM))


def count(tree: Path, campaign: Path, raw: bool, csv_path: Path, n: int) -> int:
    """Instructions of one child run rendering ``n`` messages after the warm-up."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(_CHILD)
    try:
        proc = subprocess.run(
            [
                *("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"),
                *(str(PY), f.name, str(campaign), "raw" if raw else "json", str(csv_path), str(n)),
            ],
            env={**os.environ, **SECRET_ENV, "TREE": str(tree)},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(f.name)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"valgrind run failed ({proc.returncode}): {proc.stderr[-600:]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--raw", action="store_true", help="the MIME path (SMTP) instead of JSON")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        if os.geteuid() != 0:
            raise SystemExit("valgrind is missing (Debian package valgrind) and not root")
        _apt_install(["valgrind"])
    provider = postmark_provider("http://127.0.0.1:9", 4)  # never contacted
    campaign = write_campaign(
        "render-instructions",
        audience={"file": str(recipients_csv(10_000))},
        provider=provider,
    )
    csv_path = recipients_csv(10_000)
    n = max(100, min(args.messages, 9_000) // 100 * 100)
    base = count(args.tree, campaign, args.raw, csv_path, 0)
    full = count(args.tree, campaign, args.raw, csv_path, n)
    per = (full - base) / n
    print(json.dumps({"tree": str(args.tree), "raw": args.raw, "messages": n,
                      "instructions_per_message": round(per)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
