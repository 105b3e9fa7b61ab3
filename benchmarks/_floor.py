"""The floor: a minimal untyped HTTP/1.1 client, a measuring stick for the benchmarks.

NOT a client to use. It does only what the benchmarks' server needs: ``POST`` a JSON
body over keep-alive connections to one origin and ``json.loads`` a ``Content-Length``
or chunked answer, checking the status. No retries, no timeouts, no TLS, no proxies,
no typed results. What the typed ``async_generate`` costs above this is the price of
being a library (types, checks, retries, errors); ``backends.py`` reports the ratio.

Each request: an idle connection from a list (or a new one), one ``write`` of a head
built from a fixed prefix, one future resolved by an ``asyncio.Protocol`` fed through
``httptools``, ``json.loads`` of the body. Works on asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools


class FloorError(Exception):
    """A non-2xx status, a connection lost mid-answer, or a parser error."""


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.future: asyncio.Future[bytes] | None = None
        self.body: list[bytes] = []
        self.usable = True

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(FloorError(f"bad response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._fail(FloorError("connection lost"))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if not self.parser.should_keep_alive():
            self.usable = False
        body, self.body = b"".join(self.body), []
        future, self.future = self.future, None
        if future is not None and not future.done():
            if 200 <= status < 300:
                future.set_result(body)
            else:
                future.set_exception(FloorError(f"HTTP {status}"))

    def _fail(self, exc: Exception) -> None:
        self.usable = False
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class FloorClient:
    """``await client.post_json(path, payload)`` -> the decoded JSON answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Conn] = []
        self.prefix = b"Host: %s:%d\r\nContent-Type: application/json\r\n" % (host.encode(), port)

    async def post_json(self, path: str, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        head = b"POST %s HTTP/1.1\r\n%bContent-Length: %d\r\n\r\n" % (
            path.encode(),
            self.prefix,
            len(body),
        )
        if self.idle:
            conn = self.idle.pop()
        else:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(_Conn, self.host, self.port)
        conn.future = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        conn.transport.write(head + body)
        try:
            data = await conn.future
        except BaseException:
            conn.usable = False
            conn.transport.close()
            raise
        if conn.usable:
            self.idle.append(conn)
        return json.loads(data)

    async def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()
