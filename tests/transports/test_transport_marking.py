"""Every transport marks a failure after response bytes arrived ``response_started``
(never resent), on every path: ``raw_request``, the response head, and the body of
a streamed response, including a protocol error deferred behind the body bytes that
arrived before it. Real loopback sockets; asyncio, trio and the sync transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from rlinf_http.transports import SyncTransport

from .conftest import Server, ServerConn

Serve = Callable[..., Server]
TransportClass = Callable[..., httpx.AsyncBaseTransport]

#: (what the server sends after the request, how it ends the connection)
_FAULTS = {
    "reset-mid-body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "reset"),
    "close-mid-body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "close"),
    "garbage-after-chunk": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZZZ\r\n",
        "hold",
    ),
}


def _faulty(wire: bytes, how: str) -> Callable[[ServerConn], object]:
    async def handler(conn: ServerConn) -> None:
        # One good response first: the faulty one goes out on a reused connection,
        # so a wrong mark would read "stale" (retryable) instead of "started".
        await conn.read_request()
        await conn.respond(b"fresh")
        if await conn.read_request() is None:
            return
        await conn.send(wire)
        await asyncio.sleep(0.05)
        if how == "reset":
            conn.abort()
        elif how == "close":
            conn.close()
        else:
            await asyncio.sleep(5)  # the client gives up first (a protocol error)

    return handler


def _assert_started(exc: BaseException) -> None:
    assert getattr(exc, "response_started", False), f"{exc!r} not marked response_started"
    assert not getattr(exc, "stale_connection", False)


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list(_FAULTS))
async def test_async_stream_body_failure_is_marked_started(
    serve: Serve, Transport: TransportClass, fault: str
) -> None:
    server = serve(_faulty(*_FAULTS[fault]))
    async with httpx.AsyncClient(transport=Transport(), timeout=10.0) as c:
        assert (await c.get(server.url)).content == b"fresh"
        got = b""
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
            async with c.stream("GET", server.url) as response:
                async for chunk in response.aiter_raw():
                    got += chunk
        assert got == b"abc"  # the bytes before the failure were delivered first
        _assert_started(info.value)
    assert len(server.requests) == 2


@pytest.mark.parametrize("fault", list(_FAULTS))
def test_sync_stream_body_failure_is_marked_started(serve: Serve, fault: str) -> None:
    server = serve(_faulty(*_FAULTS[fault]))
    with httpx.Client(transport=SyncTransport(), timeout=10.0) as c:
        assert c.get(server.url).content == b"fresh"
        got = b""
        with (
            pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info,
            c.stream("GET", server.url) as response,
        ):
            for chunk in response.iter_raw():
                got += chunk
        assert got == b"abc"
        _assert_started(info.value)
    assert len(server.requests) == 2


# -- an answer that arrives while the request body is still being written -------------

#: Larger than what loopback socket buffers hold while the server does not read.
_BIG_BODY = b"x" * (32 * 1024 * 1024)
_EARLY_ANSWER = b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"


async def _answers_early(conn: ServerConn) -> None:
    # The second request goes out on a reused connection: the server answers it after
    # its head, stops reading the body, and resets the connection. The client's write
    # fails after the answer arrived: the answer is the response (never a "stale"
    # connection to resend on).
    await conn.read_request()
    await conn.respond(b"fresh")
    try:
        await conn.reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    conn.server.requests.append(None)  # type: ignore[arg-type]
    conn.writer.transport.pause_reading()
    await conn.send(_EARLY_ANSWER)
    await asyncio.sleep(0.1)
    conn.abort()


_POST_HEAD = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(_BIG_BODY)
_GET_HEAD = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
_TIMEOUTS = (10.0, 10.0, 10.0, 10.0)


@pytest.mark.anyio
async def test_async_answer_before_the_body_is_written_is_the_response(
    serve: Serve, Transport: TransportClass
) -> None:
    server = serve(_answers_early)
    origin = ("http", "127.0.0.1", server.port)
    transport = Transport()
    try:
        assert (await transport.raw_request(origin, _GET_HEAD, b"", _TIMEOUTS))[2] == b"fresh"
        status, _, body = await transport.raw_request(origin, _POST_HEAD, _BIG_BODY, _TIMEOUTS)
        assert (status, body) == (413, b"big")
        assert (await transport.raw_request(origin, _GET_HEAD, b"", _TIMEOUTS))[2] == b"fresh"
    finally:
        await transport.aclose()
    async with httpx.AsyncClient(transport=Transport(), timeout=10.0) as c:
        assert (await c.get(server.url)).content == b"fresh"
        response = await c.post(server.url, content=_BIG_BODY)
        assert (response.status_code, response.content) == (413, b"big")
        assert (await c.get(server.url)).content == b"fresh"
    assert len(server.requests) == 6  # nothing resent
    assert server.connections_opened == 4  # the answered connection was not reused


def test_sync_answer_before_the_body_is_written_is_the_response(serve: Serve) -> None:
    server = serve(_answers_early)
    origin = ("http", "127.0.0.1", server.port)
    with SyncTransport() as transport:
        assert transport.raw_request(origin, _GET_HEAD, b"", _TIMEOUTS)[2] == b"fresh"
        status, _, body = transport.raw_request(origin, _POST_HEAD, _BIG_BODY, _TIMEOUTS)
        assert (status, body) == (413, b"big")
        assert transport.raw_request(origin, _GET_HEAD, b"", _TIMEOUTS)[2] == b"fresh"
    with httpx.Client(transport=SyncTransport(), timeout=10.0) as c:
        assert c.get(server.url).content == b"fresh"
        response = c.post(server.url, content=_BIG_BODY)
        assert (response.status_code, response.content) == (413, b"big")
        assert c.get(server.url).content == b"fresh"
    assert len(server.requests) == 6
    assert server.connections_opened == 4
