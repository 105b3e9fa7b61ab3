"""A trio HTTP/1.1 transport for httpx: non-blocking sockets, trio's I/O waits, httptools.

The framing (:mod:`._http11`) and the pool (:mod:`._pool`) are the ones the
asyncio and sync transports use; this module only moves bytes the trio way.
Plain connections are stdlib sockets in non-blocking mode driven by
``trio.lowlevel.wait_readable`` / ``wait_writable`` (one epoll wait per response
in the common case, no stream objects); TLS connections go through
:class:`trio.SSLStream`.  Import it only under trio: it imports trio.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, Literal, TypeVar

import httpx
import outcome
import trio

from ._common import (
    CLOSED_MESSAGE,
    KEEPALIVE_EXPIRY,
    TCP_QUICKACK,
    RawResponse,
    RawTimeouts,
    SocketOption,
)
from ._http11 import (
    COALESCE_LIMIT,
    LAST_CHUNK,
    BufferedStream,
    RequestHead,
    ResponseParser,
    encode_chunk,
    encode_request,
    origin_of,
    parse_raw_head,
    request_timeouts,
)
from ._pool import ConnectionPool, Origin, Slot
from ._wire import mark_failure, read_early_answer

__all__ = ["TrioTransport"]


#: Size of the read buffer shared by a transport's connections (tasks run one at
#: a time and the parser copies what it keeps before the next wait).
_READ_BUFFER = 64 * 1024

_INF = float("inf")
_TCP_QUICKACK = TCP_QUICKACK
_MSG_PEEK = socket.MSG_PEEK
_CLOSED_MESSAGE = CLOSED_MESSAGE
_monotonic = time.monotonic
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable
_IOErrors = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
T = TypeVar("T")


class _Waiter:
    """A task parked until the pool hands it a connection or a slot."""

    __slots__ = ("origin", "task")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.task: trio.lowlevel.Task | None = trio.lowlevel.current_task()

    def deliver(self, item: _Connection | Slot) -> bool:
        task = self.task
        if task is None:
            return False  # cancelled or timed out: the pool serves the next one
        self.task = None
        trio.lowlevel.reschedule(task, outcome.Value(item))
        return True

    def fail(self, exc: BaseException) -> None:
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task, outcome.Error(exc))

    def abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        # trio calls this only while the task is still parked (never after deliver).
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED


_READ_TIMEOUT = "Timed out while receiving data from the host."
_WRITE_TIMEOUT = "Timed out while sending data to the host."


async def _within(
    timeout: float, error: Callable[[], Exception], fn: Callable[..., Awaitable[T]], *args: Any
) -> T:
    """``await fn(*args)``, raising ``error()`` after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        return await fn(*args)
    raise error()


def _io_error(exc: BaseException, writing: bool) -> httpx.TransportError:
    detail = str(exc) or type(exc).__name__
    return httpx.WriteError(detail) if writing else httpx.ReadError(detail)


def _transport_error(exc: BaseException, writing: bool) -> BaseException | None:
    """Our ``httpx`` error for ``exc`` raised mid-exchange; None for a cancellation."""
    if isinstance(exc, _IOErrors):
        return _io_error(exc, writing)
    if isinstance(exc, httpx.TransportError):
        return exc
    return None


def _feed(parser: ResponseParser, data: memoryview) -> None:
    try:
        parser.feed(data)
    except httpx.RemoteProtocolError:
        if not parser.complete:
            raise
        # Garbage after a complete response: keep the response, not the connection.
        parser.trailing_data = True


class _Connection:
    """One keep-alive HTTP/1.1 connection, used by one task at a time."""

    __slots__ = (
        "_failed",
        "_owner",
        "_parser",
        "_quickack",
        "_released",
        "_slot_held",
        "_sock",
        "_spare",
        "_tls",
        "closed",
        "expires_at",
        "keep_alive",
        "origin",
        "reused",
    )

    def __init__(
        self,
        owner: TrioTransport,
        origin: Origin,
        sock: socket.socket,
        tls: trio.SSLStream[trio.SocketStream] | None,
    ) -> None:
        self._owner = owner
        self.origin = origin
        self._sock = sock
        self._tls = tls
        self._quickack = _TCP_QUICKACK is not None and sock.family in (
            socket.AF_INET,
            socket.AF_INET6,
        )
        self._parser: ResponseParser | None = None
        self._spare: ResponseParser | None = None
        self._failed: httpx.TransportError | None = None
        self._slot_held = True
        self._released = False
        self.expires_at = _INF
        self.closed = False
        self.reused = False
        self.keep_alive = True

    # -- pool interface -----------------------------------------------------------------
    def is_usable(self) -> bool:
        """Open and quiet.  Checked with a non-blocking peek when taken from the pool,
        so a connection the server closed while idle is never written to."""
        if self.closed:
            return False
        if self._released:
            return True  # just finished a response cleanly (release path)
        try:
            self._sock.recv(1, _MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        # b"": the peer closed it; anything else: unsolicited bytes.
        return False

    def close(self) -> None:
        """Close without touching the pool's slot count (the pool accounts for it)."""
        self._slot_held = False
        self._abort()

    # -- internals ----------------------------------------------------------------------
    def _abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._owner._connections.discard(self)
        sock = self._sock
        try:
            # Wake any task blocked on this socket (transport closed under it).
            trio.lowlevel.notify_closing(sock)
        except RuntimeError:  # pragma: no cover - outside trio (e.g. garbage collection)
            pass
        sock.close()

    def _discard(self) -> None:
        """Close a busy connection and give its slot back."""
        self._abort()
        if self._slot_held:
            self._slot_held = False
            self._owner._pool.discard()

    def _begin(self, is_head: bool, keep_alive: bool) -> ResponseParser:
        parser = self._spare
        if parser is None:
            parser = ResponseParser(is_head)
        else:
            self._spare = None
            parser.restart(is_head)
        self._parser = parser
        self.keep_alive = keep_alive
        return parser

    def _finish(self) -> None:
        """The response is complete: back to the pool, or closed."""
        parser = self._parser
        assert parser is not None
        if parser.keep_alive and self.keep_alive and not parser.trailing_data and not self.closed:
            self._parser = None
            self._spare = parser
            self.reused = True
            self._owner._release(self)
        else:
            self._discard()

    async def _send_all(self, data: bytes | memoryview, timeout: float | None) -> None:
        tls = self._tls
        if tls is not None:
            if timeout is None:
                await tls.send_all(data)
            else:
                await _within(
                    timeout, lambda: httpx.WriteTimeout(_WRITE_TIMEOUT), tls.send_all, data
                )
            return
        sock = self._sock
        while True:
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            if timeout is None:
                await _wait_writable(sock)
            else:
                await _within(
                    timeout, lambda: httpx.WriteTimeout(_WRITE_TIMEOUT), _wait_writable, sock
                )

    async def _send_body(self, head: RequestHead, timeout: float | None) -> None:
        stream = head.stream
        chunked = head.chunked
        if isinstance(stream, bytes):
            await self._send_all(encode_chunk(stream) + LAST_CHUNK if chunked else stream, timeout)
            return
        if hasattr(stream, "__aiter__"):
            chunks = stream.__aiter__()
            try:
                async for chunk in chunks:
                    if chunk:
                        await self._send_all(encode_chunk(chunk) if chunked else chunk, timeout)
            finally:
                # Finalize a body generator left mid-way (trio warns about those).
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    with trio.CancelScope(shield=True):
                        await aclose()
        else:
            for chunk in stream:
                if chunk:
                    await self._send_all(encode_chunk(chunk) if chunked else chunk, timeout)
        if chunked:
            await self._send_all(LAST_CHUNK, timeout)

    async def _receive(self, parser: ResponseParser, timeout: float | None, wait: bool) -> None:
        """Feed the parser what the next read brings (waiting first when ``wait``)."""
        tls = self._tls
        if tls is not None:
            if timeout is None:
                data = await tls.receive_some(_READ_BUFFER)
            else:
                data = await _within(
                    timeout,
                    lambda: httpx.ReadTimeout(_READ_TIMEOUT),
                    tls.receive_some,
                    _READ_BUFFER,
                )
            if not data:
                parser.feed_eof()
                return
            _feed(parser, memoryview(data))
        else:
            sock = self._sock
            buffer = self._owner._read_buffer
            while True:
                if wait:
                    if timeout is None:
                        await _wait_readable(sock)
                    else:
                        await _within(
                            timeout, lambda: httpx.ReadTimeout(_READ_TIMEOUT), _wait_readable, sock
                        )
                try:
                    nbytes = sock.recv_into(buffer)
                except BlockingIOError:
                    wait = True
                    continue
                break
            if not nbytes:
                parser.feed_eof()
                return
            _feed(parser, buffer[:nbytes])
        if self._quickack and not parser.complete:
            # A streamed body arrives in small writes; a peer with Nagle's algorithm
            # on (the sglang router) holds each one until our ACK, which Linux
            # delays up to 40 ms. Quick ACKs keep stream chunks (TTFT) on time.
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)  # type: ignore[arg-type]
            except OSError:
                self._quickack = False

    async def raw(
        self,
        head: bytes,
        body: bytes,
        is_head: bool,
        keep_alive: bool,
        read_timeout: float | None,
        write_timeout: float | None,
    ) -> RawResponse:
        """One complete exchange; the connection is released or discarded before returning."""
        parser = self._begin(is_head, keep_alive)
        writing = True
        try:
            if not body:
                await self._send_all(head, write_timeout)
            elif len(body) <= COALESCE_LIMIT:
                await self._send_all(head + body, write_timeout)
            else:
                await self._send_all(head, write_timeout)
                await self._send_all(body, write_timeout)
            writing = False
            await self._receive(parser, read_timeout, True)
            while not parser.complete:
                await self._receive(parser, read_timeout, False)
        except BaseException as exc:
            self._failed_exchange(exc, parser, writing)
        result = parser.take_response()
        self._finish()
        return result

    def _failed_exchange(self, exc: BaseException, parser: ResponseParser, writing: bool) -> None:
        """Called from the ``except`` of an exchange: raise our (marked) error, or return
        when the server had answered in full while the request was still being written
        (that answer is the response)."""
        error = _transport_error(exc, writing)
        if error is not None and writing and self._answered_early(parser):
            return
        self._discard()
        if error is None:
            raise  # cancelled: the connection is gone with its half-done exchange
        mark_failure(error, parser.started, self.reused)
        if error is exc:
            raise
        raise error from exc

    async def send(
        self, head: RequestHead, read_timeout: float | None, write_timeout: float | None
    ) -> httpx.Response:
        """Send one request and return once the response head is in."""
        parser = self._begin(head.is_head, head.keep_alive)
        writing = True
        try:
            await self._send_all(head.data, write_timeout)
            if head.stream is not None:
                await self._send_body(head, write_timeout)
            writing = False
            wait = True
            while not parser.headers_complete:
                await self._receive_or_defer(parser, read_timeout, wait)
                wait = False
        except BaseException as exc:
            self._failed_exchange(exc, parser, writing)
        extensions = {"http_version": parser.http_version, "reason_phrase": parser.reason_phrase}
        if parser.complete:
            body = parser.take_body()
            self._finish()
            return httpx.Response(
                parser.status_code,
                headers=parser.headers,
                stream=BufferedStream(body),
                extensions=extensions,
            )
        return httpx.Response(
            parser.status_code,
            headers=parser.headers,
            stream=_ResponseStream(self, read_timeout),
            extensions=extensions,
        )

    async def receive_body(self, read_timeout: float | None) -> bytes:
        """The next piece of the body; ``b""`` at the end (the connection is then released)."""
        parser = self._parser
        assert parser is not None
        while True:
            if parser.chunks:
                return parser.take_body()
            if parser.complete:
                self._finish()
                return b""
            failed = self._failed
            if failed is not None:
                raise failed
            if self.closed:
                closed = httpx.ReadError("The connection was closed.")
                mark_failure(closed, True, self.reused)
                raise closed
            try:
                await self._receive_or_defer(parser, read_timeout, False)
            except _IOErrors as exc:
                error = _io_error(exc, False)
                mark_failure(error, True, self.reused)
                raise error from exc

    def _answered_early(self, parser: ResponseParser) -> bool:
        """A write failed: whether the server had already answered (then that answer
        is the response, and the connection is closed after it)."""
        if self._tls is None and read_early_answer(self._sock, parser):
            self.keep_alive = False
            return True
        return False

    async def _receive_or_defer(
        self, parser: ResponseParser, timeout: float | None, wait: bool
    ) -> None:
        """Receive more; a protocol failure once the head is in waits until the body
        bytes received before it are delivered (:meth:`receive_body` raises it then)."""
        try:
            await self._receive(parser, timeout, wait)
        except httpx.TransportError as exc:
            if not parser.headers_complete:
                raise
            mark_failure(exc, True, self.reused)
            self._failed = exc


class _ResponseStream(httpx.AsyncByteStream):
    """Body chunks as they arrive; releases or discards the connection at the end.

    Its own async iterator (no async generator): a consumer that stops early
    leaves nothing for trio's garbage-collection hooks to finalize.
    """

    def __init__(self, conn: _Connection, read_timeout: float | None) -> None:
        self._conn: _Connection | None = conn
        self._read_timeout = read_timeout

    def __aiter__(self) -> _ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        try:
            data = await conn.receive_body(self._read_timeout)
        except BaseException:
            self._conn = None
            conn._discard()
            raise
        if not data:
            self._conn = None
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        conn = self._conn
        if conn is not None:
            # Closed before the end: never hand a half-read connection out again.
            self._conn = None
            conn._discard()


class TrioTransport(httpx.AsyncBaseTransport):
    """A fast trio HTTP/1.1 transport for :class:`httpx.AsyncClient`.

    The trio twin of :class:`~rlinf_http.transports.AsyncTransport`: same pool
    (O(1) acquire/release, a global cap served to waiters in FIFO order), same
    framing, timeouts (httpx's per-request ``timeout`` extension; without it
    ``connect_timeout`` applies and everything else is unbounded), and
    ``raw_request`` fast path.  A pooled connection is checked (non-blocking
    peek) before it is written to, so one the server closed while idle is
    dropped without sending anything; once a request is written it is never
    sent again by the transport (the caller's retry policy decides), and once a
    response byte has arrived the error says so (``response_started``).  A
    cancelled request discards its connection.  Idle connections expire after
    ``keepalive_expiry`` seconds.  Environment proxies are never consulted.
    trio only.
    """

    #: takes complete requests (see :class:`~rlinf_http.transports._common.RawTransport`)
    raw_requests: ClassVar[Literal[True]] = True

    def __init__(
        self,
        *,
        max_connections: int = 16384,
        connect_timeout: float | None = 10.0,
        keepalive_expiry: float | None = KEEPALIVE_EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        self._pool: ConnectionPool[_Connection] = ConnectionPool(max_connections)
        self._connect_timeout = connect_timeout
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._socket_options = list(socket_options) if socket_options else []
        self._connections: set[_Connection] = set()
        self._closed = False
        self._read_buffer = memoryview(bytearray(_READ_BUFFER))

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The pool's bookkeeping (for metrics and tests)."""
        return self._pool

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError(_CLOSED_MESSAGE)
        head = encode_request(request)
        connect_timeout, read_timeout, write_timeout, pool_timeout = request_timeouts(
            request, self._connect_timeout
        )
        origin = origin_of(request.url)
        conn = await self._acquire(origin, pool_timeout, connect_timeout)
        return await conn.send(head, read_timeout, write_timeout)

    async def raw_request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes,
        timeouts: RawTimeouts,
    ) -> RawResponse:
        """Send a complete request and return the complete response, without httpx objects.

        Arguments and result as :meth:`AsyncTransport.raw_request
        <rlinf_http.transports.AsyncTransport.raw_request>`.
        """
        if self._closed:
            raise RuntimeError(_CLOSED_MESSAGE)
        connect_timeout, read_timeout, write_timeout, pool_timeout = timeouts
        is_head, keep_alive = parse_raw_head(head)
        item = self._pool.acquire(origin, _monotonic())
        if isinstance(item, _Connection):
            conn = item
        else:
            conn = await self._acquire_slow(item, origin, pool_timeout, connect_timeout)
        return await conn.raw(head, body, is_head, keep_alive, read_timeout, write_timeout)

    async def aclose(self) -> None:
        """Close every connection; later requests raise :class:`RuntimeError`."""
        if self._closed:
            return
        self._closed = True
        for conn in self._pool.close(RuntimeError(_CLOSED_MESSAGE)):
            conn.close()
        for conn in list(self._connections):
            conn._abort()
        self._connections.clear()

    # -- internals ----------------------------------------------------------------------
    async def _acquire(
        self, origin: Origin, pool_timeout: float | None, connect_timeout: float | None
    ) -> _Connection:
        item = self._pool.acquire(origin, _monotonic())
        if isinstance(item, _Connection):
            return item
        return await self._acquire_slow(item, origin, pool_timeout, connect_timeout)

    async def _acquire_slow(
        self,
        item: Slot | None,
        origin: Origin,
        pool_timeout: float | None,
        connect_timeout: float | None,
    ) -> _Connection:
        """Open a connection on ``SLOT``, or queue for one on None."""
        got: _Connection | Slot | None = item
        if got is None:
            waiter = _Waiter(origin)
            self._pool.wait(waiter)
            if pool_timeout is None:
                got = await trio.lowlevel.wait_task_rescheduled(waiter.abort)
            else:
                got = await _within(
                    pool_timeout,
                    lambda: httpx.PoolTimeout("Timed out waiting for a free connection."),
                    trio.lowlevel.wait_task_rescheduled,
                    waiter.abort,
                )
            if isinstance(got, _Connection):
                return got
        return await self._connect(origin, connect_timeout)

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        """Open a connection using a slot the caller already holds."""
        host, port = origin[1], origin[2]
        try:
            if timeout is None:
                conn = await self._open(origin)
            else:
                conn = await _within(
                    timeout,
                    lambda: httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}."),
                    self._open,
                    origin,
                )
        except BaseException as exc:
            self._pool.discard()
            if isinstance(exc, _IOErrors):
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        if self._closed:
            conn._discard()
            raise RuntimeError(_CLOSED_MESSAGE)
        self._connections.add(conn)
        return conn

    async def _open(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        error: OSError | None = None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for option in self._socket_options:
                    sock.setsockopt(*option)
                code = sock.connect_ex(address)
                if code == errno.EINPROGRESS:
                    await _wait_writable(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, f"connect to {host}:{port}: {os.strerror(code)}")
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            break
        else:
            raise error or OSError(f"no address for {host}:{port}")
        tls: trio.SSLStream[trio.SocketStream] | None = None
        if scheme == "https":
            try:
                tls = trio.SSLStream(
                    trio.SocketStream(trio.socket.from_stdlib_socket(sock)),
                    self._ssl(),
                    server_hostname=host,
                    https_compatible=True,
                )
                await tls.do_handshake()
            except BaseException:
                sock.close()
                raise
        return _Connection(self, origin, sock, tls)

    def _release(self, conn: _Connection) -> None:
        expiry = self._keepalive_expiry
        if expiry is not None:
            conn.expires_at = _monotonic() + expiry
        if self._closed:
            conn._discard()
            return
        conn._released = True
        try:
            self._pool.release(conn)
        finally:
            conn._released = False
