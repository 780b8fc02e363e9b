"""The ceiling of the client library: aiosmtplib pushing pre-built messages, nothing else.

Opens CONNECTIONS connections to HOST:PORT and sends COUNT pre-built ~8 KB
messages over them (each connection takes the next message from a shared
counter). No rendering, no ledger, no throttle. Prints one JSON line:
{"messages": n, "seconds": s, "rate": n/s}.

    python benchmarks/bare_smtp.py PORT COUNT CONNECTIONS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from email.utils import formatdate


def build(i: int) -> tuple[str, bytes]:
    rcpt = f"user{i}@example.org"
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod. " * 100)[
        :7600
    ]
    lines = [body[j : j + 76] for j in range(0, len(body), 76)]
    msg = (
        "From: ACME News <news@example.com>\r\n"
        f"To: {rcpt}\r\n"
        f"Subject: Hello {i}\r\n"
        f"Date: {formatdate()}\r\n"
        f"Message-ID: <{i}.bench@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n" + "\r\n".join(lines) + "\r\n"
    )
    return rcpt, msg.encode()


async def main(port: int, count: int, conns: int) -> None:
    import aiosmtplib

    messages = [build(i) for i in range(min(count, 1000))]
    next_i = 0

    async def worker() -> int:
        nonlocal next_i
        sent = 0
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
        await smtp.connect()
        try:
            while next_i < count:
                i = next_i
                next_i += 1
                rcpt, raw = messages[i % len(messages)]
                await smtp.sendmail("news@example.com", [rcpt], raw)
                sent += 1
        finally:
            await smtp.quit()
        return sent

    t0 = time.perf_counter()
    done = await asyncio.gather(*(worker() for _ in range(conns)))
    seconds = time.perf_counter() - t0
    n = sum(done)
    print(json.dumps({"messages": n, "seconds": seconds, "rate": n / seconds}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
