"""A minimal HTTP/1.1 server answering batch provider calls with one result per message.

nginx answers the one-message-per-call providers (a fixed 202), but a batch
API must answer with exactly one entry per message it got, which nginx cannot
count. This server counts the entries as the body streams in, without parsing or
keeping it (the number of ``"To":`` keys for Postmark, ``"to":`` for Resend),
and answers at once. Plain asyncio protocol, keep-alive, no framework.

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


def counted(path: bytes) -> bytes | None:
    """The key counted in a batch call's body, or None for a call answered as it is."""
    if path.startswith(b"/emails/batch"):
        return b'"to":'
    if path.startswith(b"/email/batch"):
        return b'"To":'
    return None


def answer(path: bytes, n: int) -> tuple[bytes, bytes]:
    """The status and body for a call to ``path`` whose body held ``n`` counted keys."""
    if path.startswith(b"/emails/batch"):
        return b"200 OK", b'{"data":[' + b",".join([RS_ITEM] * n) + b"]}"
    if path.startswith(b"/emails"):
        return b"200 OK", RS_ITEM
    if path.startswith(b"/email/batch"):
        return b"200 OK", b"[" + b",".join([PM_ITEM] * n) + b"]"
    if path.startswith(b"/email"):
        return b"200 OK", PM_ITEM
    if path.startswith(b"/v3/mail/send"):
        return b"202 Accepted", b""
    return b"200 OK", b"{}"


class Http(asyncio.Protocol):
    # The body is counted as it streams in, never kept: a 500-message batch is ~3.5 MB,
    # and buffering and copying it made this server use a tenth of the machine's CPU
    # during a send, taken from the client it measures.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport
        self.buf = bytearray()  # an incomplete request head
        self.path: bytes | None = None  # of the request whose body is arriving
        self.need = 0  # bytes of that body still to come
        self.key: bytes | None = None
        self.count = 0
        self.tail = b""  # the previous read's last bytes: a key may span two reads

    def data_received(self, data: bytes) -> None:
        while data:
            if self.path is None:
                self.buf += data
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end])
                data = bytes(self.buf[end + 4 :])
                self.buf.clear()
                self.need = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        self.need = int(value)
                self.path = head.split(b" ", 2)[1]
                self.key, self.count, self.tail = counted(self.path), 0, b""
            if len(data) > self.need:
                body, data = data[: self.need], data[self.need :]
            else:
                body, data = data, b""
            self.need -= len(body)
            if self.key is not None:
                seen = self.tail + body
                self.count += seen.count(self.key)
                self.tail = seen[-(len(self.key) - 1) :]
            if self.need == 0:
                self._respond()

    def _respond(self) -> None:
        assert self.path is not None
        status, payload = answer(self.path, self.count)
        self.path = None
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
