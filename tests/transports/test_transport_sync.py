"""SyncTransport conformance on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rlinf_http.transports import SyncTransport

from .conftest import Server, ServerConn

Serve = Callable[..., Server]


def client(**kwargs: object) -> httpx.Client:
    return httpx.Client(transport=SyncTransport(**kwargs), timeout=httpx.Timeout(10.0))  # type: ignore[arg-type]


def test_keepalive_reuse(echo_server: Server) -> None:
    with client() as c:
        for i in range(5):
            assert c.post(echo_server.url, content=b"b%d" % i).content == b"b%d" % i
    assert echo_server.connections_opened == 1


@pytest.mark.parametrize(
    "wire, body",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    ],
)
def test_framed_bodies(serve: Serve, wire: bytes, body: bytes) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.send(wire[:12])
            await asyncio.sleep(0.01)
            await conn.send(wire[12:])

    server = serve(handler)
    with client() as c:
        for _ in range(2):
            assert c.get(server.url).content == body
    assert server.connections_opened == 1


def test_close_delimited(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.0 200 OK\r\n\r\nuntil-")
        await conn.send(b"eof")
        conn.close()

    server = serve(handler)
    with client() as c:
        assert c.get(server.url).content == b"until-eof"
        assert c.get(server.url).content == b"until-eof"
    assert server.connections_opened == 2


def test_head(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")

    server = serve(handler)
    with client() as c:
        for _ in range(2):
            assert c.head(server.url).content == b""
    assert server.connections_opened == 1


def test_server_closed_idle_connection_retried(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.respond(b"once")
        await asyncio.sleep(0.05)
        conn.close()

    server = serve(handler)
    with client() as c:
        assert c.get(server.url).content == b"once"
        time.sleep(0.2)
        assert c.get(server.url).content == b"once"
    assert server.connections_opened == 2


def test_fresh_connection_not_retried(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        conn.abort()

    server = serve(handler)
    with client() as c, pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        c.get(server.url)
    assert server.connections_opened == 1


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ],
)
@pytest.mark.parametrize("how", ["close", "reset"])
def test_truncated(serve: Serve, wire: bytes, how: str) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(wire)
        await asyncio.sleep(0.05)
        conn.close() if how == "close" else conn.abort()

    server = serve(handler)
    with client() as c, pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        c.get(server.url)


def test_garbage(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"NOT HTTP\r\n\r\n")

    server = serve(handler)
    with client() as c, pytest.raises(httpx.RemoteProtocolError):
        c.get(server.url)


def test_read_timeout(serve: Serve) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await asyncio.sleep(3)

    server = serve(handler)
    transport = SyncTransport()
    with httpx.Client(transport=transport, timeout=httpx.Timeout(5, read=0.2)) as c:
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.get(server.url)
        assert time.monotonic() - start < 2
    assert transport.pool.total == 0


def test_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(address: object, timeout: float | None = None, **kwargs: object) -> socket.socket:
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    transport = SyncTransport(connect_timeout=0.1)
    with pytest.raises(httpx.ConnectTimeout):
        transport.handle_request(httpx.Request("GET", "http://127.0.0.1:9/"))
    assert transport.pool.total == 0


def test_connect_timeout_full_backlog() -> None:
    # A listener that never accepts and whose backlog is full: SYNs go unanswered.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        transport = SyncTransport(connect_timeout=0.3)
        start = time.monotonic()
        try:
            transport.handle_request(httpx.Request("GET", f"http://127.0.0.1:{port}/"))
        except httpx.ConnectTimeout:
            assert time.monotonic() - start < 3
        except httpx.TransportError:
            pytest.skip("the kernel completed the handshake despite the full backlog")
        else:  # pragma: no cover
            pytest.fail("request unexpectedly succeeded")
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_pool_timeout_and_cap(echo_server: Server) -> None:
    gate = threading.Event()

    def slow_body() -> Iterator[bytes]:
        gate.wait(5)
        yield b"x"

    transport = SyncTransport(max_connections=1)
    with httpx.Client(transport=transport, timeout=httpx.Timeout(5, pool=0.1)) as c:
        with ThreadPoolExecutor(1) as ex:
            holder = ex.submit(c.post, echo_server.url, content=slow_body())
            time.sleep(0.1)
            with pytest.raises(httpx.PoolTimeout):
                c.get(echo_server.url)
            gate.set()
            assert holder.result(5).content == b"x"
        assert c.get(echo_server.url).content == b"ok"
    assert echo_server.connections_opened == 1


def test_sixteen_threads(echo_server: Server) -> None:
    transport = SyncTransport(max_connections=8)
    with httpx.Client(transport=transport, timeout=10) as c:

        def work(i: int) -> bytes:
            return c.post(echo_server.url, content=b"%d" % i).content

        with ThreadPoolExecutor(16) as ex:
            results = list(ex.map(work, range(2000)))
    assert results == [b"%d" % i for i in range(2000)]
    assert echo_server.max_concurrent <= 8


def test_large_and_streamed_bodies(echo_server: Server) -> None:
    big = b"q" * (8 * 1024 * 1024)

    def gen() -> Iterator[bytes]:
        for i in range(50):
            yield b"%03d" % i

    with client() as c:
        assert c.post(echo_server.url, content=big).content == big
        assert c.post(echo_server.url, content=gen()).content == b"".join(
            b"%03d" % i for i in range(50)
        )


def test_streamed_response_and_early_close(serve: Serve) -> None:
    sent_second = threading.Event()

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request():
            await conn.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n"
            )
            await asyncio.sleep(0.3)
            sent_second.set()
            await conn.send(b"7\r\nsecond\n\r\n0\r\n\r\n")

    server = serve(handler)
    transport = SyncTransport()
    with httpx.Client(transport=transport) as c:
        with c.stream("GET", server.url) as r:
            it = r.iter_raw()
            assert next(it) == b"first\n"
            assert not sent_second.is_set()
            assert b"".join(it) == b"second\n"
        assert transport.pool.idle_count == 1
        sent_second.clear()
        with c.stream("GET", server.url) as r:
            assert next(r.iter_raw()) == b"first\n"
        assert transport.pool.total == 0
        with c.stream("GET", server.url) as r:
            assert r.read() == b"first\nsecond\n"
    assert server.connections_opened == 2


def test_ipv6(serve: Serve) -> None:
    try:
        server = serve(host="::1")
    except OSError:
        pytest.skip("no ::1")
    with client() as c:
        assert c.get(server.url).content == b"ok"


def test_tls(serve: Serve) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = serve(ssl=server_ctx)
    url = f"https://localhost:{server.port}"
    with client(ssl_context=client_ctx) as c:
        for _ in range(3):
            assert c.post(url, content=b"tls").content == b"tls"
    assert server.connections_opened == 1
    with client() as c, pytest.raises(httpx.ConnectError):
        c.get(url)


def test_closed_transport(echo_server: Server) -> None:
    transport = SyncTransport()
    request = httpx.Request("GET", echo_server.url)
    response = transport.handle_request(request)
    assert response.read() == b"ok"
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        transport.handle_request(request)
