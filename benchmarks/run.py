"""stamp's performance suite: one command that sets up, measures and prints one table.

    python benchmarks/run.py                 # everything (~25 min on 2 cores)
    python benchmarks/run.py --quick         # smaller sizes, no 1M (< 3 min)
    python benchmarks/run.py --only render,smtp --repeat 5
    python benchmarks/run.py --json out.json

Set-up it does itself (cached in benchmarks/.work/): Postfix's smtp-sink and
nginx from Debian (apt-get when missing; Postfix's own daemon is never
started), premailer in this venv (benchmark-only), mailmerge in its own venv,
synthetic lists. Every figure is the median of several runs, measured side by
side with its reference in the same run (runs alternate), because the
machines are shared and noisy. Results: benchmarks/results/latest.{json,md}
(quick runs: quick.{json,md}; --only runs: partial.{json,md}).
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    RESULTS,
    Ctx,
    NotMeasured,
    Row,
    ensure_mailmerge,
    ensure_pip,
    ensure_system,
    log,
    machine,
    not_measured,
)

MEASUREMENTS = {
    "lists": ("bench_lists", "1. list loading"),
    "import": ("bench_import", "2. import"),
    "render": ("bench_render", "3. render"),
    "corpus": ("bench_render_corpus", "3b. render corpus"),
    "tracking": ("bench_tracking", "3c. render corpus, own tracking"),
    "smtp": ("bench_send_smtp", "4. send smtp"),
    "http": ("bench_send_http", "5. send http"),
    "rerun": ("bench_rerun", "7. rerun"),
    "memory": ("bench_memory", "6. memory"),
    "scaling": ("bench_scaling", "8. scaling"),
    "serve": ("bench_serve", "9. serve"),
    "dkim": ("bench_dkim", "3c. dkim"),
}
NOISE_NOTE = (
    "Figures are medians of several runs on a shared, noisy machine; each reference was "
    "measured in the same invocation, alternating with stamp's runs, so the ratios are "
    "more trustworthy than the absolute numbers."
)


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit in ("msg/s", "rows/s", "recipients/s"):
        return f"{v:,.0f} {unit}"
    if unit == "ms/msg":
        return f"{v:.3f} ms"
    if unit == "MB":
        return f"{v:,.0f} MB"
    if unit == "s":
        return f"{v:.2f} s" if v < 100 else f"{v:,.0f} s"
    return f"{v:g} {unit}"


def verdict(row: Row) -> str:
    if row.note.startswith("not measured"):
        return "NOT MEASURED"
    return {True: "PASS", False: "MISS", None: "-"}[row.passed]


def table_lines(rows: list[Row], md: bool) -> list[str]:
    head = ["#", "figure", "stamp", "reference", "ref.", "ratio", "runs", "target", "result"]
    body = []
    for r in rows:
        body.append(
            [
                r.measurement.split(".")[0],
                r.figure,
                fmt_value(r.value, r.unit),
                r.reference or "-",
                fmt_value(r.ref_value, r.unit),
                f"{r.ratio:.2f} {r.ratio_label}" if r.ratio is not None else "-",
                f"{len(r.runs)}/{len(r.ref_runs)}",
                r.target or "-",
                verdict(r),
            ]
        )
    if md:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "/") for c in b) + " |" for b in body]
        notes = [f"- {r.measurement}, {r.figure}: {r.note}" for r in rows if r.note]
        if notes:
            out += ["", "Notes:", "", *notes]
        return out
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    widths[3] = min(widths[3], 48)
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for b in body:
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(b, widths, strict=True)]
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    notes = [f"  {r.measurement} / {r.figure}: {r.note}" for r in rows if r.note]
    if notes:
        out += ["", "notes:", *notes]
    return out


def setup() -> list[str]:
    """Everything the suite needs; returns problems (the affected rows say not measured)."""
    problems = []
    for step, fn in (
        ("smtp-sink/nginx", ensure_system),
        ("premailer", lambda: ensure_pip("premailer", "premailer")),
        ("mailmerge", ensure_mailmerge),
    ):
        try:
            fn()
        except Exception as exc:
            problems.append(f"set-up of {step} failed: {exc}")
            log(problems[-1])
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller sizes, skip 1M (< 3 min)")
    ap.add_argument("--only", default="", help=f"comma list of: {', '.join(MEASUREMENTS)}")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure (default 3; 1 quick)")
    ap.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    args = ap.parse_args(argv)

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(MEASUREMENTS)
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        ap.error(f"unknown measurement(s) {', '.join(unknown)}; known: {', '.join(MEASUREMENTS)}")
    repeat = args.repeat or (1 if args.quick else 3)
    ctx = Ctx(quick=args.quick, repeat=repeat)
    started = time.time()
    mach = machine()
    log(
        f"machine: {mach['cpus']} CPUs, {mach['cpu_model']}, {mach['memory']}, "
        f"Python {mach['python']}"
    )
    problems = setup()

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    rows: list[Row] = []
    try:
        for name in names:
            module, label = MEASUREMENTS[name]
            log(f"--- {label}")
            t0 = time.perf_counter()
            try:
                mod = importlib.import_module(f"benchmarks.{module}")
                got = mod.run(ctx)
            except NotMeasured as exc:
                got = [not_measured(label, name, "", str(exc))]
            except Exception as exc:  # one broken measurement never stops the others
                traceback.print_exc()
                got = [not_measured(label, name, "", f"{type(exc).__name__}: {exc}")]
            rows += got
            for line in table_lines(got, md=False)[2:]:
                log(line)
            log(f"    ({time.perf_counter() - t0:.0f} s)")
    finally:
        ctx.close()
    rows.sort(key=lambda r: r.measurement)
    duration = time.time() - started

    command = "python benchmarks/run.py" + "".join(
        f" {a}" for a in (sys.argv[1:] if argv is None else argv)
    )
    print()
    print(f"stamp performance suite: {command}")
    print(
        f"machine: {mach['cpus']} CPUs ({mach['cpu_model']}), {mach['memory']}, "
        f"Python {mach['python']}, load at start {mach['load_at_start']}"
    )
    print(f"{NOISE_NOTE} Runs per figure: {repeat} (1 for the 1M sizes).")
    for p in problems:
        print(f"set-up problem: {p}")
    print()
    print("\n".join(table_lines(rows, md=False)))
    print(f"\n({duration / 60:.1f} min)")

    # only a full run replaces latest.*, the table the README quotes
    name = "quick" if args.quick else "partial" if args.only else "latest"
    out = args.json or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(started)),
        "duration_s": round(duration, 1),
        "machine": mach,
        "repeat": repeat,
        "quick": args.quick,
        "note": NOISE_NOTE,
        "setup_problems": problems,
        "rows": [r.as_dict() for r in rows],
    }
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = [
        f"Command: `{command}`, {doc['started']}, {duration / 60:.1f} min.",
        "",
        f"Machine: {mach['cpus']} CPUs ({mach['cpu_model']}), {mach['memory']} RAM, "
        f"Python {mach['python']}, {mach['os']}; load average at start {mach['load_at_start']}.",
        "",
        f"{NOISE_NOTE} Runs per figure: {repeat} (1 for the 1M sizes).",
        "",
        *table_lines(rows, md=True),
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(f"written: {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
