"""Built-in fast loopback server for the benchmarks (asyncio Protocol + httptools).

``POST /generate`` answers a fixed sglang-like JSON body; ``GET /stream?n=N``
answers N small SSE events (chunked), each written separately, then
``data: [DONE]``.  Run: ``python benchmarks/_server.py PORTFILE`` (binds a free
127.0.0.1 port and writes it to PORTFILE).  With ``--hold`` it reads every request
and never answers: ``backends.py`` counts a client's live objects per request in
flight against it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httptools

GENERATE_BODY = json.dumps(
    {
        "text": " The answer is 42.",
        "output_ids": [578, 4320, 374, 220, 2983, 13],
        "meta_info": {
            "id": "0c3f4d2a9b6e4f7c8d1e2f3a4b5c6d7e",
            "finish_reason": {"type": "stop", "matched": 151645},
            "prompt_tokens": 12,
            "completion_tokens": 6,
            "cached_tokens": 0,
            "e2e_latency": 0.0123,
        },
    },
    separators=(",", ":"),
).encode()

_GENERATE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
    % (len(GENERATE_BODY), GENERATE_BODY)
)
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
_EVENT = b'data: {"text":"tok","meta_info":{"completion_tokens":%d}}\n\n'


_TASKS: set[asyncio.Task[None]] = set()
_HOLD = "--hold" in sys.argv[2:]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        url, self.url = self.url, b""
        assert self.transport is not None
        if _HOLD:
            return
        if url.startswith(b"/stream"):
            n = int(url.partition(b"n=")[2] or b"100")
            task = asyncio.ensure_future(self._stream(n))
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)
        else:
            self.transport.write(_GENERATE_RESPONSE)

    async def _stream(self, n: int) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(_STREAM_HEAD)
        for i in range(n):
            transport.write(_chunk(_EVENT % i))
            if i % 16 == 15:
                await asyncio.sleep(0)
        transport.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


async def _main(portfile: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", 0, backlog=8192)
    port = server.sockets[0].getsockname()[1]
    with open(portfile, "w") as f:
        f.write(str(port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(_main(sys.argv[1]))
    except KeyboardInterrupt:
        pass
