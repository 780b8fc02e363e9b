"""The ceiling of the HTTP client: httpx posting pre-built provider payloads, nothing else.

MODE "single": one SendGrid-shaped ~8 KB JSON message per POST /v3/mail/send.
MODE "batch": Postmark-shaped batches of BATCH messages per POST /email/batch.
CONCURRENCY requests in flight over one AsyncClient. Prints one JSON line:
{"recipients": n, "requests": r, "seconds": s, "rate": n/s}.

    python benchmarks/bare_http.py BASE_URL MODE COUNT CONCURRENCY [BATCH]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

BODY = ("<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.</p>" * 60)[
    :6000
]
TEXT = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30


def sendgrid(i: int) -> bytes:
    return json.dumps(
        {
            "personalizations": [{"to": [{"email": f"user{i}@example.org"}]}],
            "from": {"email": "news@example.com", "name": "ACME News"},
            "subject": f"Hello {i}",
            "content": [
                {"type": "text/plain", "value": TEXT},
                {"type": "text/html", "value": BODY},
            ],
            "headers": {"List-Unsubscribe": "<https://acme.example/u?t=abc>"},
        }
    ).encode()


def postmark_entry(i: int) -> dict[str, object]:
    return {
        "From": "ACME News <news@example.com>",
        "To": f"user{i}@example.org",
        "Subject": f"Hello {i}",
        "HtmlBody": BODY,
        "TextBody": TEXT,
        "MessageStream": "broadcast",
    }


async def main(base: str, mode: str, count: int, conc: int, batch: int) -> None:
    import httpx

    if mode == "single":
        url = base + "/v3/mail/send"
        payloads = [sendgrid(i) for i in range(min(count, 1000))]
        per = 1
    else:
        url = base + "/email/batch"
        payloads = [
            json.dumps([postmark_entry(i * batch + j) for j in range(batch)]).encode()
            for i in range(4)
        ]
        per = batch
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    requests = (count + per - 1) // per
    next_i = 0
    done = 0

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal next_i, done
            while next_i < requests:
                i = next_i
                next_i += 1
                r = await client.post(url, content=payloads[i % len(payloads)], headers=headers)
                r.raise_for_status()
                done += min(per, count - i * per)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {"recipients": done, "requests": requests, "seconds": seconds, "rate": done / seconds}
        )
    )


if __name__ == "__main__":
    a = sys.argv
    asyncio.run(main(a[1], a[2], int(a[3]), int(a[4]), int(a[5]) if len(a) > 5 else 500))
