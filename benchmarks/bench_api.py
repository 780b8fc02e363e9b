"""10. The send API of ``stamp serve``: requests/s and latency, beside a bare FastAPI endpoint.

Everything runs in its own process on loopback: ``stamp serve --config`` (the real
app: keys, checks, the store writer, the queue, the router) with Postmark fakes
(``api_fake.py``) as providers, and the reference ``api_bare.py``, a FastAPI
endpoint that only validates the same request model and answers. The client is a
raw asyncio keep-alive loop that times every request.

* sync ``POST /v1/messages`` (``wait=true``: composed, sent to the fake, settled,
  answered) at concurrency 1, 10 and 100: requests/s, p50, p99; the bare endpoint at
  the same concurrency;
* async (``wait=false``): messages durably queued per second (goal >= 2,000/s), the
  server's CPU time per queued message (its background sender's share included)
  beside the bare endpoint's CPU per request (both read from /proc: steadier than
  rates on a shared machine), and the drain rate of the server's background sender;
* failover: two providers; the first is killed (SIGKILL) a third of the way through
  a sync run; the share of requests answered ``sent`` (goal: all of them).

Standalone: ``python -m benchmarks.bench_api [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import LOGS, PY, ROOT, free_port, log, wait_port

KEY = "stamp_bench-key-0123456789abcdefghijklmnop"
ADMIN = "bench-admin-key-0123456789abcdef"
BODY = json.dumps(
    {
        "from": "Shop <shop@acme.example>",
        "to": "ann@example.com",
        "subject": "Your receipt",
        "html": "<style>p{color:#333}</style><p>Thanks for your order, <b>Ann</b>.</p>",
    }
).encode()


def request(path: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def _flood(port: int, path: str, total: int, concurrency: int) -> dict[str, Any]:
    data = request(path)
    counter = iter(range(total))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    states: dict[str, int] = {}

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in counter:
                start = time.perf_counter()
                writer.write(data)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                latencies.append(time.perf_counter() - start)
                status = int(head[9:12])
                statuses[status] = statuses.get(status, 0) + 1
                with contextlib.suppress(ValueError):
                    state = json.loads(body).get("state", "")
                    states[state] = states.get(state, 0) + 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": total / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "statuses": statuses,
        "states": states,
        "seconds": seconds,
    }


def flood(port: int, path: str, total: int, concurrency: int) -> dict[str, Any]:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(_flood(port, path, total, concurrency))  # type: ignore[no-any-return]
    return asyncio.run(_flood(port, path, total, concurrency))


@contextlib.contextmanager
def proc(
    argv: list[str], name: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"api-{name}.log").open("w") as err:
        p = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        try:
            yield p
        finally:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


@contextlib.contextmanager
def fake(name: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    with proc([str(PY), str(ROOT / "benchmarks" / "api_fake.py")], name) as p:
        assert p.stdout is not None
        base, url = p.stdout.readline().split()
        yield (
            p,
            {
                "url": url,
                "endpoint": base,
                "name": name,
                "concurrency": 100,
                "timeout": {"connect": 1, "read": 5},
            },
        )


PIDS: dict[int, int] = {}  # port -> pid of the server listening there


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def stamp(tmp: Path, providers: list[dict[str, Any]], name: str) -> Iterator[int]:
    config = tmp / f"{name}.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "admin_key_env": "BENCH_ADMIN",
                "pools": [
                    {
                        "name": "app",
                        "key_env": "BENCH_KEY",
                        "from_domains": ["acme.example"],
                        "providers": providers,
                    }
                ],
            }
        )
    )
    db = tmp / f"{name}.db"
    port = free_port()
    argv = [
        str(PY),
        "-m",
        "stampcli",
        "serve",
        "--port",
        str(port),
        "--db",
        str(db),
        "--config",
        str(config),
        "--log-level",
        "warning",
    ]
    with proc(argv, f"stamp-{name}", {"BENCH_KEY": KEY, "BENCH_ADMIN": ADMIN}) as p:
        wait_port(port, 30)
        PIDS[port] = p.pid
        yield port


@contextlib.contextmanager
def bare() -> Iterator[int]:
    port = free_port()
    with proc([str(PY), str(ROOT / "benchmarks" / "api_bare.py"), str(port)], "bare") as p:
        wait_port(port, 30)
        PIDS[port] = p.pid
        yield port


def queue_counts(port: int) -> dict[str, int]:
    import httpx

    answer = httpx.get(
        f"http://127.0.0.1:{port}/v1/providers", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    return answer.json()["queue"]  # type: ignore[no-any-return]


def run(quick: bool) -> list[str]:
    lines: list[str] = []
    sizes = {1: 100, 10: 500, 100: 1000} if quick else {1: 500, 10: 3000, 100: 5000}
    async_n = 3000 if quick else 20_000
    with tempfile.TemporaryDirectory(prefix="stamp-api-bench-") as name:
        tmp = Path(name)
        with fake("postmark") as (_, provider), stamp(tmp, [provider], "sync") as sp, bare() as bp:
            for conc, n in sizes.items():
                s = flood(sp, "/v1/messages", n, conc)
                b = flood(bp, "/v1/messages", n, conc)
                log(
                    f"  sync c={conc}: stamp {s['rps']:,.0f}/s {s['states']}, "
                    f"bare {b['rps']:,.0f}/s"
                )
                lines.append(
                    f"sync POST /v1/messages, concurrency {conc} ({n} requests): "
                    f"{s['rps']:,.0f} req/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms"
                    f" (sent {s['states'].get('sent', 0)}/{n}) | bare FastAPI"
                    f" {b['rps']:,.0f} req/s, p50 {b['p50_ms']:.1f} ms,"
                    f" p99 {b['p99_ms']:.1f} ms | ratio {s['rps'] / b['rps']:.2f}"
                )
            c0 = cpu_seconds(PIDS[sp])
            a = flood(sp, "/v1/messages?wait=false", async_n, 50)
            a_cpu = (cpu_seconds(PIDS[sp]) - c0) / async_n * 1e6
            c0 = cpu_seconds(PIDS[bp])
            b = flood(bp, "/v1/messages", async_n, 50)
            b_cpu = (cpu_seconds(PIDS[bp]) - c0) / async_n * 1e6
            start = time.perf_counter()
            total = async_n + sum(sizes.values())
            while True:
                counts = queue_counts(sp)
                if counts.get("sent", 0) + counts.get("failed", 0) >= total:
                    break
                if time.perf_counter() - start > 300:
                    break
                time.sleep(0.1)
            drain = (time.perf_counter() - start) + a["seconds"]
            lines.append(
                f"async POST /v1/messages?wait=false, concurrency 50 ({async_n} requests): "
                f"{a['rps']:,.0f} msgs/s durably queued (202: {a['statuses'].get(202, 0)}), "
                f"p99 {a['p99_ms']:.0f} ms, server CPU {a_cpu:.0f} us/msg | "
                f"bare FastAPI {b['rps']:,.0f} req/s, CPU {b_cpu:.0f} us/req | "
                f"ratio {a['rps'] / b['rps']:.2f}; "
                f"drained (all sent) {async_n / drain:,.0f} msgs/s, queue {counts}"
            )
        with (
            fake("first") as (first_proc, first),
            fake("second") as (_, second),
            stamp(tmp, [first, second], "failover") as fp,
        ):
            n = 600 if quick else 3000

            async def both() -> dict[str, Any]:
                task = asyncio.create_task(_flood(fp, "/v1/messages", n, 10))
                await asyncio.sleep(0.8 if quick else 3.0)
                first_proc.send_signal(signal.SIGKILL)
                return await task

            r = asyncio.run(both())
            sent = r["states"].get("sent", 0)
            lines.append(
                f"failover: first provider SIGKILLed mid-run, sync c=10 ({n} requests): "
                f"{sent}/{n} sent ({sent / n:.1%}), {r['rps']:,.0f} req/s, "
                f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, states {r['states']}"
            )
    return lines


if __name__ == "__main__":
    for line in run("--quick" in sys.argv):
        print(line)
