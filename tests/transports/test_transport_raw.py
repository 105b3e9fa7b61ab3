"""raw_request (bytes in, ``(status, headers, body)`` out) on both transports, over loopback."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlinf_http.transports import AsyncTransport, SyncTransport

from .conftest import Server, ServerConn, ServerThread

Serve = Callable[..., Server]
T = (10.0, 10.0, 10.0, 10.0)


def origin(server: Server) -> tuple[str, str, int]:
    return ("http", server.host, server.port)


def head(
    server: Server,
    method: str = "POST",
    path: str = "/generate",
    body: bytes = b"",
    extra: tuple[str, ...] = (),
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {server.host}:{server.port}", *extra]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def header(pairs: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in pairs:
        if key.lower() == name:
            return value
    return None


def wire_handler(wire: bytes, split: int = 10, close_after: bool = False) -> Callable[..., object]:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.send(wire[:split])
            await asyncio.sleep(0.005)
            await conn.send(wire[split:])
            if close_after:
                conn.close()
                return

    return handler


# -- async --------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_keepalive_reuse(echo_server: Server) -> None:
    transport = AsyncTransport()
    for i in range(5):
        body = b"body%d" % i
        status, headers, got = await transport.raw_request(
            origin(echo_server), head(echo_server, body=body), body, T
        )
        assert status == 200 and got == body
        assert headers == [(b"Content-Length", b"%d" % len(body))]
    assert echo_server.connections_opened == 1
    assert transport.pool.total == 1 and transport.pool.idle_count == 1
    assert echo_server.requests[0].header("host") == f"127.0.0.1:{echo_server.port}"
    # The handle_async_request path shares the pool and the connection.
    r = await transport.handle_async_request(
        httpx.Request("POST", echo_server.url, content=b"shared")
    )
    assert await r.aread() == b"shared"
    assert echo_server.connections_opened == 1
    await transport.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "wire, body",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            b"hello",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
        (b"HTTP/1.1 204 No Content\r\nETag: a\r\n\r\n", b""),
        (b"HTTP/1.1 304 Not Modified\r\nETag: a\r\n\r\n", b""),
    ],
    ids=["content-length", "chunked", "100-continue", "204", "304"],
)
async def test_framed_bodies(serve: Serve, wire: bytes, body: bytes) -> None:
    server = serve(wire_handler(wire))
    transport = AsyncTransport()
    for _ in range(3):
        status, _, got = await transport.raw_request(origin(server), head(server, "GET"), b"", T)
        assert got == body and status in (200, 204, 304)
    assert server.connections_opened == 1
    await transport.aclose()


@pytest.mark.anyio
async def test_close_delimited_body(serve: Serve) -> None:
    server = serve(
        wire_handler(b"HTTP/1.0 200 OK\r\nX: y\r\n\r\npart1-part2", split=22, close_after=True)
    )
    transport = AsyncTransport()
    for _ in range(2):
        status, headers, body = await transport.raw_request(
            origin(server), head(server, "GET"), b"", T
        )
        assert (status, headers, body) == (200, [(b"X", b"y")], b"part1-part2")
    assert server.connections_opened == 2
    assert transport.pool.total == 0
    await transport.aclose()


@pytest.mark.anyio
async def test_head_then_get_on_same_connection(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.method == "HEAD":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            else:
                await conn.respond(b"full")

    server = serve(handler)
    transport = AsyncTransport()
    o = origin(server)
    for _ in range(2):
        status, headers, body = await transport.raw_request(o, head(server, "HEAD"), b"", T)
        assert status == 200 and header(headers, b"content-length") == b"100" and body == b""
        assert (await transport.raw_request(o, head(server, "GET"), b"", T))[2] == b"full"
        assert (await transport.raw_request(o, head(server, "GET"), b"", T))[2] == b"full"
    assert server.connections_opened == 1
    await transport.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("side", ["server", "client"])
async def test_connection_close_not_reused(serve: Serve, side: str) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            extra = [("Connection", "close")] if side == "server" else []
            await conn.respond(b"x", headers=extra)

    server = serve(handler)
    transport = AsyncTransport()
    extra = ("Connection: close",) if side == "client" else ()
    for _ in range(3):
        result = await transport.raw_request(
            origin(server), head(server, "GET", extra=extra), b"", T
        )
        assert result[2] == b"x"
        assert transport.pool.total == 0
    assert server.connections_opened == 3
    await transport.aclose()


@pytest.mark.anyio
async def test_stale_reused_connection_is_not_resent(serve: Serve) -> None:
    # The server read the request on the reused connection, then reset it: the
    # transport does not send it again (the retry policy decides, and counts it).
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.respond(b"fresh")
        if await conn.read_request() is not None:
            conn.abort()  # reset without answering

    server = serve(handler)
    transport = AsyncTransport()
    result = await transport.raw_request(origin(server), head(server, body=b"b"), b"b", T)
    assert result[2] == b"fresh"
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
        await transport.raw_request(origin(server), head(server, body=b"b"), b"b", T)
    assert getattr(info.value, "stale_connection", False)
    assert not getattr(info.value, "response_started", False)
    assert server.connections_opened == 1
    assert len(server.requests) == 2
    assert transport.pool.total == 0
    await transport.aclose()


@pytest.mark.anyio
async def test_server_closed_idle_connection(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.respond(b"once")
        await asyncio.sleep(0.05)
        conn.close()

    server = serve(handler)
    transport = AsyncTransport()
    assert (await transport.raw_request(origin(server), head(server), b"", T))[2] == b"once"
    await asyncio.sleep(0.2)
    assert transport.pool.total == 0
    assert (await transport.raw_request(origin(server), head(server), b"", T))[2] == b"once"
    await transport.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["content-length", "chunked", "after-headers", "in-headers"],
)
@pytest.mark.parametrize("how", ["close", "reset"])
async def test_truncated_response(serve: Serve, wire: bytes, how: str) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(wire)
        await asyncio.sleep(0.05)
        conn.close() if how == "close" else conn.abort()

    server = serve(handler)
    transport = AsyncTransport()
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await transport.raw_request(origin(server), head(server), b"", T)
    assert transport.pool.total == 0
    await transport.aclose()


@pytest.mark.anyio
async def test_garbage_and_trailing_data(serve: Serve) -> None:
    server = serve(wire_handler(b"SPAM/9 what\r\n\r\n"))
    transport = AsyncTransport()
    with pytest.raises(httpx.RemoteProtocolError):
        await transport.raw_request(origin(server), head(server), b"", T)
    # A complete response followed by extra bytes: returned, connection not reused.
    server = serve(wire_handler(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", split=100))
    for _ in range(2):
        assert (await transport.raw_request(origin(server), head(server), b"", T))[2] == b"ok"
    assert server.connections_opened == 2
    assert transport.pool.total == 0
    await transport.aclose()


@pytest.mark.anyio
async def test_read_timeout(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/slow":
                await conn.send(b"HTTP/1.1 200 OK\r\n")
                await asyncio.sleep(5)
                return
            await conn.respond(b"quick")

    server = serve(handler)
    transport = AsyncTransport()
    o = origin(server)
    # A connection used before with a long timeout keeps its timer: a shorter one still applies.
    assert (await transport.raw_request(o, head(server), b"", (5, 30, 5, 5)))[2] == b"quick"
    with anyio.fail_after(3):
        with pytest.raises(httpx.ReadTimeout):
            await transport.raw_request(o, head(server, path="/slow"), b"", (5, 0.2, 5, 5))
    assert transport.pool.total == 0
    assert (await transport.raw_request(o, head(server), b"", (5, 0.2, 5, 5)))[2] == b"quick"
    await transport.aclose()


@pytest.mark.anyio
async def test_read_timeout_reset_by_activity(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
            for byte in b"abcdef":
                await asyncio.sleep(0.1)
                await conn.send(bytes([byte]))

    server = serve(handler)
    transport = AsyncTransport()
    for _ in range(2):
        result = await transport.raw_request(origin(server), head(server), b"", (5, 0.3, 5, 5))
        assert result[2] == b"abcdef"
    assert server.connections_opened == 1
    await transport.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("canceller", ["wait_for", "fail_after", "task_cancel"])
async def test_cancel_mid_response_discards_connection(serve: Serve, canceller: str) -> None:
    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/hang":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
                await asyncio.sleep(30)
                return
            await conn.respond(b"fine")

    server = serve(handler)
    transport = AsyncTransport(max_connections=1)
    o = origin(server)
    hang = transport.raw_request(o, head(server, path="/hang"), b"", (5, None, 5, None))
    if canceller == "wait_for":
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(hang, 0.2)
    elif canceller == "fail_after":
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.2):
                await hang
    else:
        task = asyncio.ensure_future(hang)
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert transport.pool.total == 0
    await asyncio.sleep(0.01)  # connection_lost runs on the next loop iteration
    assert transport.open_connections == 0
    with anyio.fail_after(5):
        assert (await transport.raw_request(o, head(server), b"", T))[2] == b"fine"
    assert server.connections_opened == 2
    await transport.aclose()


@pytest.mark.anyio
async def test_cancelled_pool_waiters_free_their_place(serve: Serve) -> None:
    release = threading.Event()

    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/hold":
                while not release.is_set():
                    await asyncio.sleep(0.01)
            await conn.respond(b"ok")

    server = serve(handler)
    transport = AsyncTransport(max_connections=2)
    o = origin(server)
    holders = [
        asyncio.ensure_future(transport.raw_request(o, head(server, path="/hold"), b"", T))
        for _ in range(2)
    ]
    await asyncio.sleep(0.1)
    assert transport.pool.total == 2
    waiters = [
        asyncio.ensure_future(transport.raw_request(o, head(server), b"", T)) for _ in range(50)
    ]
    await asyncio.sleep(0.05)
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    release.set()
    assert [r[2] for r in await asyncio.gather(*holders)] == [b"ok", b"ok"]
    assert transport.pool.total == 2 and transport.pool.idle_count == 2
    results = await asyncio.gather(
        *[transport.raw_request(o, head(server), b"", T) for _ in range(20)]
    )
    assert all(r[2] == b"ok" for r in results)
    assert server.max_concurrent <= 2
    await transport.aclose()


@pytest.mark.anyio
async def test_pool_timeout(serve: Serve) -> None:
    release = threading.Event()

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            while not release.is_set():
                await asyncio.sleep(0.01)
            await conn.respond(b"ok")

    server = serve(handler)
    transport = AsyncTransport(max_connections=1)
    o = origin(server)
    holder = asyncio.ensure_future(transport.raw_request(o, head(server), b"", T))
    await asyncio.sleep(0.05)
    with pytest.raises(httpx.PoolTimeout):
        await transport.raw_request(o, head(server), b"", (5, 5, 5, 0.1))
    release.set()
    assert (await holder)[2] == b"ok"
    assert transport.pool.total == 1
    await transport.aclose()


@pytest.mark.anyio
async def test_thousands_concurrent_with_small_cap(echo_server: Server) -> None:
    transport = AsyncTransport(max_connections=8)
    o = origin(echo_server)
    with anyio.fail_after(60):
        results = await asyncio.gather(
            *[
                transport.raw_request(o, head(echo_server, body=b"%d" % i), b"%d" % i, T)
                for i in range(3000)
            ]
        )
    assert [r[2] for r in results] == [b"%d" % i for i in range(3000)]
    assert echo_server.max_concurrent <= 8
    assert echo_server.connections_opened <= 8
    assert transport.pool.total <= 8
    await transport.aclose()


@pytest.mark.anyio
async def test_large_request_body_and_response(echo_server: Server) -> None:
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB: exercises write flow control
    transport = AsyncTransport()
    for _ in range(2):
        result = await transport.raw_request(
            origin(echo_server), head(echo_server, body=body), body, T
        )
        assert result[2] == body
    assert echo_server.connections_opened == 1
    await transport.aclose()


@pytest.mark.anyio
async def test_tls(serve: Serve) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = serve(ssl=server_ctx)
    o = ("https", "127.0.0.1", server.port)
    transport = AsyncTransport(ssl_context=client_ctx)
    for _ in range(3):
        assert (await transport.raw_request(o, head(server, body=b"s"), b"s", T))[2] == b"s"
    assert server.connections_opened == 1
    await transport.aclose()


@pytest.mark.anyio
async def test_connect_errors_and_closed_transport(echo_server: Server) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    transport = AsyncTransport()
    with pytest.raises(httpx.ConnectError):
        await transport.raw_request(("http", "127.0.0.1", port), b"GET / HTTP/1.1\r\n\r\n", b"", T)
    assert transport.pool.total == 0
    assert (await transport.raw_request(origin(echo_server), head(echo_server), b"", T))[0] == 200
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.raw_request(origin(echo_server), head(echo_server), b"", T)


def test_trio_is_rejected() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        await AsyncTransport().raw_request(
            ("http", "127.0.0.1", 9), b"GET / HTTP/1.1\r\n\r\n", b"", T
        )

    with pytest.raises(RuntimeError, match=r"httpx\.AsyncHTTPTransport"):
        trio.run(main)


# -- sync ---------------------------------------------------------------------------------
def test_sync_keepalive_framing_and_head(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.method == "HEAD":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            elif request.target == "/chunked":
                await conn.send(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nch\r\n0\r\n\r\n"
                )
            elif request.target == "/204":
                await conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                await conn.respond(request.body or b"ok")

    server = serve(handler)
    transport = SyncTransport()
    o = origin(server)
    for _ in range(2):
        assert transport.raw_request(o, head(server, body=b"ab"), b"ab", T)[2] == b"ab"
        assert transport.raw_request(o, head(server, "HEAD"), b"", T)[2] == b""
        assert transport.raw_request(o, head(server, "GET", "/chunked"), b"", T)[2] == b"ch"
        assert transport.raw_request(o, head(server, "GET", "/204"), b"", T)[:1] == (204,)
    assert server.connections_opened == 1
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        transport.raw_request(o, head(server), b"", T)


def test_sync_close_delimited_and_connection_close(serve: Serve) -> None:
    server = serve(wire_handler(b"HTTP/1.0 200 OK\r\n\r\nuntil-eof", close_after=True))
    transport = SyncTransport()
    for _ in range(2):
        assert transport.raw_request(origin(server), head(server, "GET"), b"", T)[2] == b"until-eof"
    assert server.connections_opened == 2 and transport.pool.total == 0

    server = serve(wire_handler(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"))
    for _ in range(2):
        result = transport.raw_request(
            origin(server), head(server, "GET", extra=("Connection: close",)), b"", T
        )
        assert result[2] == b"x"
    assert server.connections_opened == 2 and transport.pool.total == 0
    transport.close()


def test_sync_stale_retry_truncation_and_timeout(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/reset":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")
                await asyncio.sleep(0.05)
                conn.abort()
                return
            if request.target == "/slow":
                await asyncio.sleep(5)
                return
            await conn.respond(b"fresh")
            if request.target == "/last":
                if await conn.read_request() is not None:
                    conn.abort()  # stale: reset without answering
                return

    server = serve(handler)
    transport = SyncTransport()
    o = origin(server)
    assert transport.raw_request(o, head(server, path="/last"), b"", T)[2] == b"fresh"
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
        transport.raw_request(o, head(server), b"", T)  # stale: not resent by the transport
    assert getattr(info.value, "stale_connection", False)
    assert transport.raw_request(o, head(server), b"", T)[2] == b"fresh"
    assert server.connections_opened == 2
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        transport.raw_request(o, head(server, path="/reset"), b"", T)
    with pytest.raises(httpx.ReadTimeout):
        transport.raw_request(o, head(server, path="/slow"), b"", (5, 0.2, 5, 5))
    assert transport.pool.total == 0  # both failed connections were discarded
    assert transport.raw_request(o, head(server), b"", T)[2] == b"fresh"
    transport.close()


def test_sync_sixteen_threads(echo_server: Server) -> None:
    transport = SyncTransport(max_connections=8)
    o = origin(echo_server)

    def work(i: int) -> bool:
        for j in range(50):
            body = b"%d-%d" % (i, j)
            if transport.raw_request(o, head(echo_server, body=body), body, T)[2] != body:
                return False
        return True

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(work, range(16)))
    assert echo_server.max_concurrent <= 8
    assert transport.pool.total <= 8
    transport.close()


# -- raw_request and handle_*_request agree -----------------------------------------------
_TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12
)
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
_RESERVED = {"content-length", "transfer-encoding", "connection", "content-encoding"}


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bool, str]:
    """A valid response on the wire, whether the server closes after it, the method."""
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 418, 500, 503]))
    method = draw(st.sampled_from(["GET", "POST", "HEAD"]))
    headers = draw(
        st.lists(st.tuples(_TOKEN.filter(lambda n: n.lower() not in _RESERVED), _VALUE), max_size=6)
    )
    body = draw(st.binary(max_size=3000))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    interim = draw(st.booleans())
    no_body = status in (204, 304)
    if no_body:
        body = b""
    lines = [f"HTTP/1.1 {status} Reason {status}"] + [f"{k}: {v}" for k, v in headers]
    payload = b""
    if framing == "length" and not no_body:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    elif framing == "chunked" and not no_body:
        lines.append("Transfer-Encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 500), max_size=8))
        pos = 0
        for size in sizes:
            if pos < len(body):
                payload += b"%x\r\n%b\r\n" % (len(body[pos : pos + size]), body[pos : pos + size])
                pos += size
        if pos < len(body):
            payload += b"%x\r\n%b\r\n" % (len(body) - pos, body[pos:])
        payload += b"0\r\n\r\n"
    elif framing == "close":
        # Announced, so no client reuses the connection the server closes (an
        # unannounced close races with the next request, which is then not resent).
        lines.append("Connection: close")
        payload = body
    if method == "HEAD" and not no_body:
        payload = b""
    wire = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    if interim:
        wire = b"HTTP/1.1 100 Continue\r\n\r\n" + wire
    return wire, framing == "close", method


async def _replay_handler(conn: ServerConn) -> None:
    # The request body is the response to send; X-Split says where to pause.
    while (request := await conn.read_request()) is not None:
        wire = request.body
        split = int(request.header("x-split") or 0)
        await conn.send(wire[:split])
        await asyncio.sleep(0)
        await conn.send(wire[split:])
        if request.header("x-close"):
            conn.close()
            return


@pytest.fixture(scope="module")
def replay_server() -> object:
    thread = ServerThread()
    try:
        yield thread.serve(_replay_handler)
    finally:
        thread.stop()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=responses(), split=st.integers(0, 4000))
def test_raw_and_httpx_paths_agree(
    replay_server: Server, case: tuple[bytes, bool, str], split: int
) -> None:
    wire, close, method = case
    server = replay_server
    url = server.url + "/replay"
    extra = [("X-Split", str(split))] + ([("X-Close", "1")] if close else [])
    raw_head = head(server, method, "/replay", wire, tuple(f"{k}: {v}" for k, v in extra))
    o = origin(server)

    def request() -> httpx.Request:
        return httpx.Request(method, url, content=wire, headers=extra)

    async def run_async() -> list[tuple[int, list[tuple[bytes, bytes]], bytes]]:
        transport = AsyncTransport()
        results = [await transport.raw_request(o, raw_head, wire, T)]
        response = await transport.handle_async_request(request())
        body = b"".join([chunk async for chunk in response.aiter_raw()])
        results.append((response.status_code, list(response.headers.raw), body))
        results.append(await transport.raw_request(o, raw_head, wire, T))
        await transport.aclose()
        return results

    results = asyncio.run(run_async())
    sync = SyncTransport()
    results.append(sync.raw_request(o, raw_head, wire, T))
    response = sync.handle_request(request())
    results.append((response.status_code, list(response.headers.raw), response.read()))
    sync.close()
    assert all(r == results[0] for r in results[1:]), results
