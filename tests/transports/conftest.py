"""Raw loopback servers for transport conformance tests.

Servers run on their own asyncio loop in a background thread, so both the sync
and the async transports can talk to them.  A test supplies a handler
``async def handler(conn: ServerConn) -> None`` that reads requests and writes
raw bytes, which lets tests misbehave in precise ways.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import Any

import anyio
import anyio.abc
import pytest

from rlinf_http.transports import AsyncTransport


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # Async conformance tests run on both backends, each with its own transport.
    return str(request.param)


@pytest.fixture
def Transport(anyio_backend: str) -> Callable[..., Any]:
    """The rlinf-http async transport class of the running backend."""
    if anyio_backend == "trio":
        from rlinf_http.transports import TrioTransport

        return TrioTransport
    return AsyncTransport


class TaskCancelled(Exception):
    """Recorded as the error of a spawned call that was cancelled."""


class Spawned:
    """A call running in a task group: its result or error, and a way to cancel it."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.finished = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def cancel(self) -> None:
        self.scope.cancel()

    async def wait(self) -> Any:
        await self.finished.wait()
        if self.error is not None:
            raise self.error
        return self.result


def spawn(
    tg: anyio.abc.TaskGroup, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
) -> Spawned:
    """Start ``fn(*args, **kwargs)`` in ``tg`` (asyncio or trio); errors are kept, not raised."""
    spawned = Spawned()

    async def run() -> None:
        with spawned.scope:
            try:
                spawned.result = await fn(*args, **kwargs)
            except Exception as exc:
                spawned.error = exc
        if spawned.scope.cancelled_caught:
            spawned.error = TaskCancelled()
        spawned.finished.set()

    tg.start_soon(run)
    return spawned


async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """``asyncio.gather`` for both backends: results in order, the first error raised."""
    results: list[Any] = [None] * len(calls)

    async def run(i: int, call: Awaitable[Any]) -> None:
        results[i] = await call

    async with anyio.create_task_group() as tg:
        for i, call in enumerate(calls):
            tg.start_soon(run, i, call)
    return results


class Request:
    def __init__(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class ServerConn:
    """One accepted connection, as seen by a test handler."""

    def __init__(
        self, server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer

    async def read_request(self) -> Request | None:
        """The next request, or None at EOF."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers.append((key.strip(), value.strip()))
        request = Request(method, target, headers, b"")
        length = request.header("content-length")
        if length is not None:
            request.body = await self.reader.readexactly(int(length))
        elif (request.header("transfer-encoding") or "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            request.body = b"".join(parts)
        self.server.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def respond(
        self,
        body: bytes = b"ok",
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        head = [f"HTTP/1.1 {status} X"]
        for key, value in headers or []:
            head.append(f"{key}: {value}")
        head.append(f"Content-Length: {len(body)}")
        await self.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        transport = self.writer.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # RST instead of FIN.
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        transport.abort()


Handler = Callable[[ServerConn], Awaitable[None]]


async def echo_handler(conn: ServerConn) -> None:
    """Keep-alive server answering every request with its body (or b"ok")."""
    while True:
        request = await conn.read_request()
        if request is None:
            return
        await conn.respond(request.body or b"ok")


class Server:
    """A TCP server on a background loop; counts connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handler: Handler) -> None:
        self.loop = loop
        self.handler = handler
        self.requests: list[Request] = []
        self.connections_opened = 0
        self.current = 0
        self.max_concurrent = 0
        self.port = 0
        self.host = "127.0.0.1"
        self._server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_opened += 1
        self.current += 1
        self.max_concurrent = max(self.max_concurrent, self.current)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        try:
            await self.handler(ServerConn(self, reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self.current -= 1
            self.tasks.discard(task)
            self.writers.discard(writer)
            writer.close()

    async def start(self, host: str = "127.0.0.1", ssl: Any = None) -> None:
        self.host = host
        self._server = await asyncio.start_server(
            self._on_connect, host, 0, ssl=ssl, backlog=4096, limit=2**24
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        tasks = list(self.tasks)
        for task in tasks:  # a handler may wait on something else than its connection
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)


class ServerThread:
    """An asyncio loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[Server] = []

    def run(self, coro: Awaitable[Any]) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout=10)

    def serve(
        self, handler: Handler = echo_handler, host: str = "127.0.0.1", ssl: Any = None
    ) -> Server:
        server = Server(self.loop, handler)
        self.run(server.start(host, ssl))
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in self.servers:
            self.run(server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def server_thread() -> Iterator[ServerThread]:
    thread = ServerThread()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def serve(server_thread: ServerThread) -> Callable[..., Server]:
    return server_thread.serve


@pytest.fixture
def echo_server(serve: Callable[..., Server]) -> Server:
    return serve(echo_handler)
