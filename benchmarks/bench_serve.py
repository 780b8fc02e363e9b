"""9. ``stamp serve``: floods of signed webhooks on loopback, beside a bare ASGI reference.

Two shapes, as the providers send them:

* SendGrid: batches of 1,000 events a request (its Event Webhook batches),
  ECDSA-signed, a few connections at once;
* Mailgun: one event a request, HMAC-signed, many connections at once.

stamp is the real ``stamp serve`` in a subprocess (verification, parsing,
the writer thread with group commit, 200 only after the commit). The
reference, measured in the same run alternating with stamp, is
``serve_bare.py``: a minimal ASGI app under the same uvicorn that only parses
and records the same rows into the same kind of fresh store. The client is a
raw asyncio keep-alive loop (bodies built and signed on the fly, unique event
ids, so nothing is deduplicated away); it runs on the same 2 cores. A full run
also floods stamp with 1M batched events and samples its RSS, which must stay
flat. Every run checks that the store holds every acknowledged event.

Beside each rate, the server's CPU time per event (user + system, every thread,
from ``/proc``): the client and other jobs share the cores, so the rate moves
with the machine's load by 2x between runs, while the CPU an event costs the
server moves far less; ``1e6 / it`` is the rate the server would reach on a core
of its own (it is one Python process: one core for its Python work).

Standalone: ``python -m benchmarks.bench_serve [--quick]``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.common import (
    LOGS,
    PY,
    ROOT,
    Ctx,
    Row,
    all_pass,
    check,
    fmt_n,
    free_port,
    log,
    median,
    wait_port,
)

M = "9. serve"
BATCH = 1000
BATCH_TARGET, SINGLE_TARGET, RATIO_TARGET = 20_000.0, 1_500.0, 0.5
MAILGUN_KEY = "key-bench-0123456789abcdef0123456789"

_PRIVATE = ec.generate_private_key(ec.SECP256R1())
_PUBLIC = base64.b64encode(
    _PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
ENV = {"SENDGRID_WEBHOOK_PUBLIC_KEY": _PUBLIC, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


# --------------------------------------------------------------------------- bodies


def sendgrid_request(first: int) -> bytes:
    """A signed SendGrid Event Webhook POST with events ``first`` .. ``first + 999``."""
    now = int(time.time())
    body = (
        b"["
        + b",".join(
            b'{"email":"user%d@example.com","timestamp":%d,"smtp-id":"<%d@example.com>",'
            b'"event":"delivered","category":["newsletter"],"sg_event_id":"bench-%d",'
            b'"sg_message_id":"m%d.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
            b'"response":"250 OK","campaign":"bench","recipient":"user%d@example.com"}'
            % (i, now, i, i, i, i)
            for i in range(first, first + BATCH)
        )
        + b"]"
    )
    stamp = str(now).encode()
    signature = base64.b64encode(_PRIVATE.sign(stamp + body, ec.ECDSA(hashes.SHA256())))
    return (
        b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        b"X-Twilio-Email-Event-Webhook-Signature: " + signature + b"\r\n"
        b"X-Twilio-Email-Event-Webhook-Timestamp: " + stamp + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


def mailgun_request(index: int) -> bytes:
    """A signed Mailgun webhook POST carrying one event."""
    token = secrets.token_hex(25).encode()
    stamp = str(int(time.time())).encode()
    signature = hmac.new(MAILGUN_KEY.encode(), stamp + token, hashlib.sha256).hexdigest().encode()
    body = (
        b'{"signature":{"timestamp":"%s","token":"%s","signature":"%s"},'
        b'"event-data":{"event":"delivered","timestamp":%d,"id":"ev%d",'
        b'"recipient":"user%d@example.com","message":{"headers":{"message-id":"%d@mg.example.com"}},'
        b'"user-variables":{"campaign":"bench","recipient":"user%d@example.com"},'
        b'"delivery-status":{"message":"250 OK","code":250}}}'
        % (stamp, token, signature, int(time.time()), index, index, index, index)
    )
    return (
        b"POST /webhooks/mailgun HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body


# --------------------------------------------------------------------------- client


async def _flood(
    port: int, make: Callable[[int], bytes], requests: int, connections: int
) -> tuple[int, int]:
    """Send ``requests`` requests over ``connections`` keep-alive connections: (200s, others)."""
    counter = iter(range(requests))
    ok = bad = 0

    async def worker() -> None:
        nonlocal ok, bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in counter:
                writer.write(make(index))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if status == 200:
                    ok += 1
                else:
                    bad += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return ok, bad


def flood(port: int, make: Callable[[int], bytes], requests: int, connections: int) -> tuple:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(_flood(port, make, requests, connections))  # type: ignore[no-any-return]
    return asyncio.run(_flood(port, make, requests, connections))


# --------------------------------------------------------------------------- servers


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, every thread (0.0 if unknown)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def server(kind: str, provider: str, db: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``stamp serve`` (kind "stamp") or the bare reference, on a free port."""
    port = free_port()
    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    if kind == "stamp":
        argv = [str(PY), "-m", "stampcli", "serve", "--port", str(port), "--db", str(db)]
        argv += ["--log-level", "warning"]
    else:
        argv = [str(PY), str(ROOT / "benchmarks" / "serve_bare.py"), provider, str(port), str(db)]
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"serve-{kind}-{provider}.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_port(port, 30)
            proc.port = port  # type: ignore[attr-defined]
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stored_events(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def fresh_db(tmp: Path, name: str) -> Path:
    db = tmp / f"{name}-{secrets.token_hex(4)}.db"
    subprocess.run(
        [str(PY), "-c", f"from stampcli.store.db import Store; Store({str(db)!r}).close()"],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return db


def one_run(
    kind: str, provider: str, tmp: Path, requests: int, connections: int, *, sample: bool = False
) -> tuple[float, list[float], float]:
    """Events per second of one flood, RSS samples (MB, every 0.5 s when ``sample``), and
    the server's CPU time per event in microseconds (all its threads: on a shared
    machine this moves far less with the load than the rate does)."""
    make = sendgrid_request if provider == "sendgrid" else mailgun_request
    per = BATCH if provider == "sendgrid" else 1
    db = fresh_db(tmp, f"{kind}-{provider}")
    samples: list[float] = []
    with server(kind, provider, db) as proc:
        flood(proc.port, make, min(connections, 2) * 1, 2)  # type: ignore[attr-defined]
        stop = threading.Event()

        def sampler() -> None:
            while not stop.wait(0.5):
                samples.append(_rss_mb(proc.pid))

        thread = threading.Thread(target=sampler, daemon=True)
        if sample:
            thread.start()
        base = 10**9
        cpu = _cpu_seconds(proc.pid)
        start = time.perf_counter()
        ok, bad = flood(
            proc.port,  # type: ignore[attr-defined]
            lambda i: make(base + i * per),
            requests,
            connections,
        )
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds(proc.pid) - cpu
        stop.set()
    if bad or ok != requests:
        raise RuntimeError(f"{kind} {provider}: {bad} of {requests} requests not answered 200")
    got = stored_events(db)
    if got < requests * per:
        raise RuntimeError(f"{kind} {provider}: {got} events stored of {requests * per} acked")
    with contextlib.suppress(OSError):
        db.unlink()
    return requests * per / seconds, samples, cpu / (requests * per) * 1e6


def run(ctx: Ctx) -> list[Row]:
    rows = []
    batched_events = ctx.n  # 100k (10k with --quick)
    single_requests = 20_000 if not ctx.quick else 5_000
    with tempfile.TemporaryDirectory(prefix="stamp-serve-bench-") as name:
        tmp = Path(name)
        for provider, requests, connections, unit, target in (
            ("sendgrid", batched_events // BATCH, 4, "events/s", BATCH_TARGET),
            ("mailgun", single_requests, 64, "requests/s", SINGLE_TARGET),
        ):
            runs, refs, cpus, ref_cpus = [], [], [], []
            for _ in range(ctx.repeat):
                rate, _, cpu = one_run("stamp", provider, tmp, requests, connections)
                runs.append(rate)
                cpus.append(cpu)
                rate, _, cpu = one_run("bare", provider, tmp, requests, connections)
                refs.append(rate)
                ref_cpus.append(cpu)
                log(
                    f"    {provider}: stamp {runs[-1]:,.0f}, bare {refs[-1]:,.0f} {unit}; "
                    f"server CPU {cpus[-1]:.1f} / {ref_cpus[-1]:.1f} us an event"
                )
            value, ref = median(runs), median(refs)
            ratio = value / ref if ref else None
            shape = (
                f"{fmt_n(batched_events)} events, {BATCH:,}/request, {connections} connections"
                if provider == "sendgrid"
                else f"{fmt_n(requests)} one-event requests, {connections} connections"
            )
            rows.append(
                Row(
                    M,
                    f"stamp serve, {provider}-shaped flood ({shape})",
                    unit,
                    value,
                    runs,
                    "bare ASGI app: parse + record the same rows, inline commit",
                    ref,
                    refs,
                    ratio,
                    "x the bare reference",
                    f">= {target:,.0f} {unit}, >= {RATIO_TARGET}x the reference",
                    all_pass(check(value, ">=", target), check(ratio, ">=", RATIO_TARGET)),
                )
            )
            cpu, ref_cpu = median(cpus), median(ref_cpus)
            rows.append(
                Row(
                    M,
                    f"stamp serve, {provider}-shaped flood: server CPU per event (all threads)",
                    "us/event",
                    cpu,
                    cpus,
                    "bare ASGI app, the same flood",
                    ref_cpu,
                    ref_cpus,
                    cpu / ref_cpu if ref_cpu else None,
                    "x the reference's CPU",
                    "",
                    None,
                    note="what the rate would be on a core of its own: 1e6 / this",
                )
            )
        if ctx.big:
            rate, samples, _ = one_run("stamp", "sendgrid", tmp, ctx.big // BATCH, 4, sample=True)
            early = median(samples[2:6]) if len(samples) > 6 else (samples or [0.0])[0]
            peak = max(samples or [0.0])
            rows.append(
                Row(
                    M,
                    f"stamp serve RSS over {fmt_n(ctx.big)} batched events ({rate:,.0f} events/s)",
                    "MB",
                    peak,
                    [peak],
                    "RSS after the first ~100k events",
                    early,
                    [early],
                    peak / early if early else None,
                    "x the early RSS",
                    "flat: peak <= 1.25x the early RSS",
                    check(peak / early if early else None, "<=", 1.25),
                )
            )
    return rows


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(Ctx(quick=quick, repeat=1 if quick else 3)):
        ref = f"{row.ref_value:,.1f}" if row.ref_value else "-"
        ratio = f"{row.ratio:.2f}" if row.ratio else "-"
        print(f"{row.figure}: {row.value:,.1f} {row.unit} | ref {ref} | ratio {ratio}")
