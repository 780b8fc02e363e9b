"""A minimal HTTP/1.1 server answering batch provider calls with one result per message.

nginx answers the one-message-per-call providers (a fixed 202), but a batch
API must answer with exactly one entry per message it got, which nginx cannot
count. This server reads the body, counts the entries without parsing the
JSON (the number of ``"To":`` keys for Postmark, ``"to":`` for Resend), and
answers at once. Plain asyncio protocol, keep-alive, no framework.

    python benchmarks/batch_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

PM_ITEM = (
    b'{"ErrorCode":0,"Message":"OK","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817",'
    b'"SubmittedAt":"2024-11-23T10:00:00Z","To":"x@example.com"}'
)
RS_ITEM = b'{"id":"4ef9a417-02e9-4d39-ad75-9611e0fcc33c"}'


def answer(path: bytes, body: bytes) -> tuple[bytes, bytes]:
    if path.startswith(b"/emails/batch"):
        n = body.count(b'"to":')
        return b"200 OK", b'{"data":[' + b",".join([RS_ITEM] * n) + b"]}"
    if path.startswith(b"/emails"):
        return b"200 OK", RS_ITEM
    if path.startswith(b"/email/batch"):
        n = body.count(b'"To":')
        return b"200 OK", b"[" + b",".join([PM_ITEM] * n) + b"]"
    if path.startswith(b"/email"):
        return b"200 OK", PM_ITEM
    if path.startswith(b"/v3/mail/send"):
        return b"202 Accepted", b""
    return b"200 OK", b"{}"


class Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            path = head.split(b" ", 2)[1]
            status, payload = answer(path, body)
            self.t.write(  # type: ignore[attr-defined]
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"X-Message-Id: bench-1\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
