"""Profile one stamp command with py-spy and print the hottest functions.

    python benchmarks/profile_cmd.py OUT.txt -- stamp send campaign.yml --yes --db x.db

py-spy lives in benchmarks/.work/tools-venv (pip install py-spy); this
prints the top functions by own time and by total time from its raw stacks.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import WORK


def ensure_pyspy() -> Path:
    venv = WORK / "tools-venv"
    exe = venv / "bin" / "py-spy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    return exe


def _func(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (path/file.py)``: lines of one function together."""
    head, sep, tail = frame.rpartition(":")
    return head + ")" if sep and tail.rstrip(")").isdigit() else frame


def summarize(raw: Path, top: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [_func(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    out = [f"{samples} samples", "", "own time:"]
    out += [f"  {100 * c / samples:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "total time:"]
    out += [f"  {100 * c / samples:5.1f}%  {f}" for f, c in total.most_common(top)]
    return "\n".join(out)


def main() -> None:
    out = Path(sys.argv[1])
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    exe = ensure_pyspy()
    subprocess.run(
        [
            str(exe),
            "record",
            "--subprocesses",
            "--format",
            "raw",
            "--rate",
            "200",
            "-o",
            str(out),
            "--",
            *cmd,
        ],
        check=False,
    )
    print(summarize(out))


if len(sys.argv) == 2:  # just summarize an existing raw file
    print(summarize(Path(sys.argv[1])))
    sys.exit(0)


if __name__ == "__main__":
    main()
