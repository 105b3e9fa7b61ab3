"""AsyncTransport conformance on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest

from rlinf_http.transports import AsyncTransport

from .conftest import Server, ServerConn

pytestmark = pytest.mark.anyio

Serve = Callable[..., Server]


def client(**kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=AsyncTransport(**kwargs), timeout=httpx.Timeout(10.0))  # type: ignore[arg-type]


async def test_keepalive_reuses_one_connection(echo_server: Server) -> None:
    async with client() as c:
        for i in range(5):
            r = await c.post(echo_server.url + "/generate", content=b"body%d" % i)
            assert r.status_code == 200 and r.content == b"body%d" % i
            assert r.http_version == "HTTP/1.1"
    assert echo_server.connections_opened == 1
    assert echo_server.requests[0].header("host") == f"127.0.0.1:{echo_server.port}"


@pytest.mark.parametrize(
    "wire, body",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
            b"hello",
        ),
    ],
)
async def test_framed_bodies(serve: Serve, wire: bytes, body: bytes) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            # Send byte by byte sometimes, to exercise incremental parsing.
            await conn.send(wire[:10])
            await asyncio.sleep(0.01)
            await conn.send(wire[10:])

    server = serve(handler)
    async with client() as c:
        for _ in range(2):
            r = await c.get(server.url)
            assert r.content == body
    assert server.connections_opened == 1


async def test_close_delimited_body_and_http10(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.0 200 OK\r\n\r\npart1-")
        await asyncio.sleep(0.01)
        await conn.send(b"part2")
        conn.close()

    server = serve(handler)
    async with client() as c:
        r = await c.get(server.url)
        assert r.content == b"part1-part2" and r.http_version == "HTTP/1.0"
        r = await c.get(server.url)
        assert r.content == b"part1-part2"
    assert server.connections_opened == 2


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(serve: Serve, status: int) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.send(b"HTTP/1.1 %d X\r\nETag: a\r\n\r\n" % status)

    server = serve(handler)
    async with client() as c:
        for _ in range(3):
            r = await c.get(server.url)
            assert r.status_code == status and r.content == b""
    assert server.connections_opened == 1


async def test_head_with_content_length(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            if request.method == "HEAD":
                await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            else:
                await conn.respond(b"full")

    server = serve(handler)
    async with client() as c:
        r = await c.head(server.url)
        assert r.headers["content-length"] == "100" and r.content == b""
        assert (await c.get(server.url)).content == b"full"
    assert server.connections_opened == 1


async def test_100_continue_interim(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0.01)
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = serve(handler)
    async with client() as c:
        r = await c.post(server.url, content=b"x")
        assert r.status_code == 200 and r.content == b"ok"


@pytest.mark.parametrize("side", ["server", "client"])
async def test_connection_close_not_reused(serve: Serve, side: str) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            if side == "server":
                await conn.respond(b"x", headers=[("Connection", "close")])
            else:
                await conn.respond(b"x")

    server = serve(handler)
    headers = {"Connection": "close"} if side == "client" else {}
    async with client() as c:
        for _ in range(3):
            assert (await c.get(server.url, headers=headers)).content == b"x"
    assert server.connections_opened == 3


async def test_server_closes_idle_connection(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.respond(b"once")  # keep-alive response, then close while idle
        await asyncio.sleep(0.05)
        conn.close()

    server = serve(handler)
    transport = AsyncTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        assert (await c.get(server.url)).content == b"once"
        await asyncio.sleep(0.2)
        assert transport.pool.total == 0  # connection_lost removed it from the pool
        assert (await c.get(server.url)).content == b"once"
    assert server.connections_opened == 2


async def test_stale_reused_connection_is_not_resent(serve: Serve) -> None:
    # The server resets the reused connection after reading the request: the request
    # reached it, so the transport does not resend it; the error says it was stale.
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.respond(b"fresh")
        request = await conn.read_request()
        if request is not None:
            conn.abort()  # reset without answering

    server = serve(handler)
    async with client() as c:
        assert (await c.get(server.url)).content == b"fresh"
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as info:
            await c.get(server.url)
        assert getattr(info.value, "stale_connection", False)
        assert (await c.get(server.url)).content == b"fresh"
    assert server.connections_opened == 2
    assert len(server.requests) == 3


async def test_fresh_connection_failure_not_retried(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        conn.close()

    server = serve(handler)
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url)
    assert server.connections_opened == 1


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
    ],
    ids=["content-length", "chunked", "after-headers"],
)
@pytest.mark.parametrize("how", ["close", "reset"])
async def test_truncated_body(serve: Serve, wire: bytes, how: str) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(wire)
        await asyncio.sleep(0.05)
        conn.close() if how == "close" else conn.abort()

    server = serve(handler)
    async with client() as c:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await c.get(server.url)


async def test_garbage_status_line(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"SPAM/9 what\r\n\r\n")

    server = serve(handler)
    async with client() as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get(server.url)


async def test_read_timeout_on_slow_headers(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\n")
        await asyncio.sleep(5)

    server = serve(handler)
    async with httpx.AsyncClient(
        transport=AsyncTransport(), timeout=httpx.Timeout(5, read=0.2)
    ) as c:
        with anyio.fail_after(3):
            with pytest.raises(httpx.ReadTimeout):
                await c.get(server.url)


async def test_read_timeout_reset_by_activity(serve: Serve) -> None:
    # Each byte arrives within the read timeout, the whole response takes longer.
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcdef":
            await asyncio.sleep(0.1)
            await conn.send(bytes([byte]))

    server = serve(handler)
    async with httpx.AsyncClient(
        transport=AsyncTransport(), timeout=httpx.Timeout(5, read=0.3)
    ) as c:
        assert (await c.get(server.url)).content == b"abcdef"


def never_answer_handler(hold: asyncio.Event | None = None) -> Callable[[ServerConn], object]:
    async def handler(conn: ServerConn) -> None:
        request = await conn.read_request()
        if request is not None and request.target == "/hang":
            await asyncio.sleep(30)
            return
        while request is not None:
            await conn.respond(b"fine")
            request = await conn.read_request()

    return handler


@pytest.mark.parametrize("canceller", ["wait_for", "fail_after", "task_group"])
async def test_cancel_discards_connection(serve: Serve, canceller: str) -> None:
    server = serve(never_answer_handler())
    transport = AsyncTransport(max_connections=1)
    async with httpx.AsyncClient(transport=transport, timeout=None) as c:
        if canceller == "wait_for":
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(c.get(server.url + "/hang"), 0.2)
        elif canceller == "fail_after":
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.2):
                    await c.get(server.url + "/hang")
        else:
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.get, server.url + "/hang")
                await asyncio.sleep(0.2)
                tg.cancel_scope.cancel()
        assert transport.pool.total == 0
        with anyio.fail_after(5):
            assert (await c.get(server.url + "/ok")).content == b"fine"
    assert server.connections_opened == 2


async def test_pool_cancellation_does_not_leak_slots(echo_server: Server) -> None:
    transport = AsyncTransport(max_connections=2)
    gate = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        await gate.wait()
        yield b"x"

    async with httpx.AsyncClient(transport=transport, timeout=None) as c:
        holders = [
            asyncio.ensure_future(c.post(echo_server.url, content=slow_body())) for _ in range(2)
        ]
        await asyncio.sleep(0.1)
        assert transport.pool.total == 2
        waiters = [asyncio.ensure_future(c.get(echo_server.url)) for _ in range(50)]
        await asyncio.sleep(0.05)
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        gate.set()
        assert [r.content for r in await asyncio.gather(*holders)] == [b"x", b"x"]
        assert transport.pool.total == 2 and transport.pool.idle_count == 2
        rs = await asyncio.gather(*[c.get(echo_server.url) for _ in range(20)])
        assert all(r.content == b"ok" for r in rs)
    assert echo_server.max_concurrent <= 2


async def test_pool_timeout(echo_server: Server) -> None:
    gate = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        await gate.wait()
        yield b"x"

    transport = AsyncTransport(max_connections=1)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, pool=0.1)) as c:
        holder = asyncio.ensure_future(c.post(echo_server.url, content=slow_body()))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await c.get(echo_server.url)
        gate.set()
        assert (await holder).content == b"x"
        assert (await c.get(echo_server.url)).content == b"ok"
        assert transport.pool.total == 1


async def test_fifo_order_of_waiters(serve: Serve) -> None:
    order: list[str] = []

    async def handler(conn: ServerConn) -> None:
        while (request := await conn.read_request()) is not None:
            order.append(request.target)
            await conn.respond(b"ok")

    server = serve(handler)
    gate = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        await gate.wait()
        yield b"x"

    async with httpx.AsyncClient(transport=AsyncTransport(max_connections=1), timeout=None) as c:
        first = asyncio.ensure_future(c.post(server.url + "/first", content=slow_body()))
        await asyncio.sleep(0.05)
        tasks = []
        for i in range(20):
            tasks.append(asyncio.ensure_future(c.get(server.url + f"/{i}")))
            await asyncio.sleep(0)  # enqueue in a known order
        await asyncio.sleep(0.05)
        gate.set()
        await first
        await asyncio.gather(*tasks)
    assert order == ["/first"] + [f"/{i}" for i in range(20)]


async def test_thousands_concurrent_with_small_cap(echo_server: Server) -> None:
    transport = AsyncTransport(max_connections=8)
    async with httpx.AsyncClient(transport=transport, timeout=None) as c:
        with anyio.fail_after(60):
            rs = await asyncio.gather(
                *[c.post(echo_server.url, content=b"%d" % i) for i in range(3000)]
            )
    assert [r.content for r in rs] == [b"%d" % i for i in range(3000)]
    assert echo_server.max_concurrent <= 8
    assert echo_server.connections_opened <= 8


async def test_large_request_body(echo_server: Server) -> None:
    body = bytes(range(256)) * (8 * 4096)  # 8 MiB
    async with client() as c:
        r = await c.post(echo_server.url, content=body)
    assert len(r.content) == len(body) and r.content == body


async def test_streamed_request_body(echo_server: Server) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(100):
            yield b"%04d" % i
            await asyncio.sleep(0)

    async with client() as c:
        r = await c.post(echo_server.url, content=gen())
    assert r.content == b"".join(b"%04d" % i for i in range(100))
    assert echo_server.requests[0].header("transfer-encoding") == "chunked"


async def test_streamed_response_incremental(serve: Serve) -> None:
    second_sent = asyncio.Event()  # lives on the server loop; only read via is_set()

    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        await conn.send(b"d\r\ndata: first\n\n\r\n")
        await asyncio.sleep(0.3)
        second_sent.set()
        await conn.send(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")

    server = serve(handler)
    async with client() as c:
        async with c.stream("GET", server.url) as r:
            chunks = r.aiter_raw()
            first = await chunks.__anext__()
            assert first == b"data: first\n\n"
            assert not second_sent.is_set()
            rest = [chunk async for chunk in chunks]
            assert b"".join(rest) == b"data: second\n\n"


async def test_large_streamed_response_flow_control(serve: Serve) -> None:
    payload = b"z" * (4 * 1024 * 1024)

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.respond(payload)

    server = serve(handler)
    async with client() as c:
        async with c.stream("GET", server.url) as r:
            total = 0
            async for chunk in r.aiter_raw():
                total += len(chunk)
                await asyncio.sleep(0)
        assert total == len(payload)
        assert len((await c.get(server.url)).content) == len(payload)
    assert server.connections_opened == 1


async def test_early_close_of_stream_closes_connection(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await asyncio.sleep(0.2)
            await conn.send(b"3\r\ndef\r\n0\r\n\r\n")

    server = serve(handler)
    transport = AsyncTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        async with c.stream("GET", server.url) as r:
            async for chunk in r.aiter_raw():
                assert chunk == b"abc"
                break
        assert transport.pool.total == 0 and transport.pool.idle_count == 0
        assert (await c.get(server.url)).content == b"abcdef"
    assert server.connections_opened == 2


async def test_ipv6_loopback(serve: Serve) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = serve(host="::1")
    except OSError:
        pytest.skip("no ::1")
    async with client() as c:
        r = await c.post(server.url, content=b"six")
    assert r.content == b"six"
    assert server.requests[0].header("host") == f"[::1]:{server.port}"


async def test_tls(serve: Serve) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = serve(ssl=server_ctx)
    url = f"https://127.0.0.1:{server.port}"
    async with client(ssl_context=client_ctx) as c:
        for _ in range(3):
            assert (await c.post(url, content=b"secret")).content == b"secret"
    assert server.connections_opened == 1
    # Without trusting the CA the handshake fails as a ConnectError.
    async with client() as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(url)


async def test_connect_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    transport = AsyncTransport()
    async with httpx.AsyncClient(transport=transport) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/")
    assert transport.pool.total == 0


async def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hang(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(30)

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "create_connection", hang)
    transport = AsyncTransport(connect_timeout=0.1)
    with anyio.fail_after(3):
        with pytest.raises(httpx.ConnectTimeout):
            await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:9/"))
        with pytest.raises(httpx.ConnectTimeout):
            await transport.handle_async_request(
                httpx.Request(
                    "GET", "http://127.0.0.1:9/", extensions={"timeout": {"connect": 0.1}}
                )
            )
    assert transport.pool.total == 0


async def test_direct_use_and_closed_transport(echo_server: Server) -> None:
    transport = AsyncTransport()
    request = httpx.Request("POST", echo_server.url + "/generate", content=b"direct")
    response = await transport.handle_async_request(request)
    assert response.status_code == 200
    assert await response.aread() == b"direct"
    await transport.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(request)


async def test_aclose_with_waiters(echo_server: Server) -> None:
    gate = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        await gate.wait()
        yield b"x"

    transport = AsyncTransport(max_connections=1)
    c = httpx.AsyncClient(transport=transport, timeout=None)
    holder = asyncio.ensure_future(c.post(echo_server.url, content=slow_body()))
    waiter = asyncio.ensure_future(c.get(echo_server.url))
    await asyncio.sleep(0.1)
    await transport.aclose()
    gate.set()
    results = await asyncio.gather(holder, waiter, return_exceptions=True)
    assert all(isinstance(r, (httpx.TransportError, RuntimeError)) for r in results), results
    await c.aclose()


def test_trio_is_rejected() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        await AsyncTransport().handle_async_request(httpx.Request("GET", "http://127.0.0.1:9/"))

    with pytest.raises(RuntimeError, match=r"httpx\.AsyncHTTPTransport"):
        trio.run(main)
