"""An asyncio HTTP/1.1 transport for httpx: Protocol callbacks + httptools."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, ClassVar, Literal

import httpx

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
from ._pool import SLOT, ConnectionPool, Origin, Slot
from ._wire import mark_failure

__all__ = ["AsyncTransport", "SocketOption"]


#: Pause reading from the socket when this much response body is buffered.
_HIGH_WATER = 256 * 1024

#: Size of the read buffer shared by a transport's connections.  Reading into a
#: preallocated buffer (``asyncio.BufferedProtocol``) avoids allocating asyncio's
#: default 256 KiB ``recv`` result per read, which glibc may serve with mmap/munmap.
_READ_BUFFER = 64 * 1024

_INF = float("inf")

_TCP_QUICKACK = TCP_QUICKACK

_TRIO_MESSAGE = (
    "rlinf_http.transports.AsyncTransport runs on asyncio only; under trio use "
    "rlinf_http.transports.TrioTransport (the rlinf-http client picks it automatically)."
)
_CLOSED_MESSAGE = CLOSED_MESSAGE
_get_running_loop = asyncio.get_running_loop
#: Keep-alive expiry clock (the pool only compares its own readings).
_monotonic = time.monotonic


class _Retry(Exception):
    """A pooled connection was found closed before the request was written: use another."""


class _Waiter:
    __slots__ = ("future", "origin")

    def __init__(self, origin: Origin, future: asyncio.Future[Any]) -> None:
        self.origin = origin
        self.future = future

    def deliver(self, item: _Connection | Slot) -> bool:
        future = self.future
        if future.done():
            return False
        future.set_result(item)
        return True

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


def _expire_waiter(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(httpx.PoolTimeout("Timed out waiting for a free connection."))


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection; also the asyncio Protocol of its socket."""

    __slots__ = (
        "_drain_waiter",
        "_error",
        "_last_activity",
        "_loop",
        "_owner",
        "_parser",
        "_quickack",
        "_raw",
        "_read_paused",
        "_read_timeout",
        "_slot_held",
        "_spare",
        "_timer",
        "_transport",
        "_waiter",
        "_want_headers",
        "_write_paused",
        "_writing",
        "closed",
        "expires_at",
        "keep_alive",
        "origin",
        "reused",
    )

    def __init__(self, owner: AsyncTransport, origin: Origin, loop: asyncio.AbstractEventLoop):
        self._owner = owner
        self._loop = loop
        self.origin = origin
        self.expires_at = _INF
        self._transport: asyncio.Transport | None = None
        #: The parser of the response in progress; None while idle.
        self._parser: ResponseParser | None = None
        #: The parser of the previous response, kept for the next one.
        self._spare: ResponseParser | None = None
        #: ``raw_request``: resolved with the complete response, or failed.
        self._raw: asyncio.Future[RawResponse] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._want_headers = True
        self._error: BaseException | None = None
        self._read_paused = False
        self._quickack: Any = None
        self._write_paused = False
        self._writing = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._slot_held = True
        self.closed = False
        self.reused = False
        self.keep_alive = True

    # -- asyncio.BufferedProtocol -------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        # Shared by every connection of the transport: callbacks run one at a time on
        # the loop and the parser copies what it keeps before buffer_updated returns.
        return self._owner._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        parser = self._parser
        if parser is None:
            # Unsolicited bytes on an idle connection: it can't be reused.
            self._error = httpx.RemoteProtocolError("Received data on an idle connection.")
            self._abort()
            return
        try:
            parser.feed(self._owner._read_buffer[:nbytes])
        except httpx.RemoteProtocolError as exc:
            self._error = exc
            self._abort()
        if self._timer is not None:
            self._last_activity = self._loop.time()
        raw = self._raw
        if raw is not None:
            # raw_request collects the whole body: no flow control needed.
            if parser.complete or self._error is not None:
                self._settle(raw)
            return
        waiter = self._waiter
        if waiter is not None and (
            self._error is not None
            or (parser.headers_complete if self._want_headers else parser.chunks or parser.complete)
        ):
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        quickack = self._quickack
        if quickack is not None and not parser.complete:
            # A streamed body arrives in small writes; a peer with Nagle's algorithm
            # on (the sglang router) holds each one until our ACK, which Linux
            # delays up to 40 ms. Quick ACKs keep stream chunks (TTFT) on time.
            try:
                quickack.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:
                self._quickack = None
        if parser.body_size > _HIGH_WATER and not self._read_paused and not parser.complete:
            self._read_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (same interface).
        self._transport = transport  # type: ignore[assignment]
        if _TCP_QUICKACK is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                self._quickack = sock

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost does the work

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._owner._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        parser = self._parser
        if parser is None:
            if self._error is None:
                self._error = httpx.RemoteProtocolError("The connection was closed.")
            self._owner._connection_lost_idle(self)
        elif not parser.complete and self._error is None:
            if exc is None:
                try:
                    parser.feed_eof()
                except httpx.RemoteProtocolError as error:
                    self._error = error
            elif self._writing:
                self._error = httpx.WriteError(str(exc) or type(exc).__name__)
            else:
                self._error = httpx.ReadError(str(exc) or type(exc).__name__)
        self._wake()
        drain = self._drain_waiter
        if drain is not None:
            self._drain_waiter = None
            if not drain.done():
                drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None:
            self._drain_waiter = None
            if not drain.done():
                drain.set_result(None)

    # -- pool interface -----------------------------------------------------------------
    def is_usable(self) -> bool:
        return not self.closed and self._error is None

    def close(self) -> None:
        """Close without touching the pool's slot count (the pool accounts for it)."""
        self._slot_held = False
        self._abort()

    # -- internals ----------------------------------------------------------------------
    def _abort(self) -> None:
        self.closed = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def _discard(self) -> None:
        """Close a busy connection and give its slot back."""
        self._abort()
        if self._slot_held:
            self._slot_held = False
            self._owner._pool.discard()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        raw = self._raw
        if raw is not None:
            self._settle(raw)

    def _settle(self, raw: asyncio.Future[RawResponse]) -> None:
        """Resolve a raw request: complete response (connection released) or error."""
        self._raw = None
        if raw.done():
            return  # cancelled: raw_request discards the connection
        parser = self._parser
        assert parser is not None
        if parser.complete:
            result = parser.take_response()
            self._finish()
            raw.set_result(result)
        else:
            error = self._error or httpx.ReadError("The connection was closed.")
            mark_failure(error, parser.started, self.reused)
            raw.set_exception(error)

    def _arm_timer(self, timeout: float) -> None:
        # One timer per connection, kept across requests: it re-arms itself from
        # the last activity and stops once the connection is idle.
        loop = self._loop
        now = self._last_activity = loop.time()
        timer = self._timer
        if timer is None:
            self._timer = loop.call_later(timeout, self._on_timer)
        elif timer.when() > now + timeout:
            timer.cancel()
            self._timer = loop.call_later(timeout, self._on_timer)

    def _on_timer(self) -> None:
        timeout = self._read_timeout
        if timeout is None or self._parser is None:
            self._timer = None
            return
        now = self._loop.time()
        remaining = self._last_activity + timeout - now
        if remaining > 0 or self._writing or (self._waiter is None and self._raw is None):
            # Data arrived meanwhile, or nobody is reading right now: check later.
            self._timer = self._loop.call_later(max(remaining, timeout / 4), self._on_timer)
            return
        self._timer = None
        self._error = httpx.ReadTimeout("Timed out while receiving data from the host.")
        self._abort()
        self._wake()

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        if self._timer is not None:
            self._last_activity = self._loop.time()
        await waiter

    async def _drain(self, timeout: float | None) -> None:
        while self._write_paused and not self.closed:
            drain = self._drain_waiter = self._loop.create_future()
            if timeout is None:
                await drain
            else:
                try:
                    await asyncio.wait_for(drain, timeout)
                except asyncio.TimeoutError:
                    raise httpx.WriteTimeout("Timed out while sending data to the host.") from None

    async def _send_body(self, head: RequestHead, write_timeout: float | None) -> None:
        transport = self._transport
        assert transport is not None
        stream = head.stream
        chunked = head.chunked
        if isinstance(stream, bytes):
            transport.write(encode_chunk(stream) + LAST_CHUNK if chunked else stream)
            await self._drain(write_timeout)
            return
        if hasattr(stream, "__aiter__"):
            async for chunk in stream:
                if self.closed:
                    return
                if chunk:
                    transport.write(encode_chunk(chunk) if chunked else chunk)
                    if self._write_paused:
                        await self._drain(write_timeout)
        else:
            for chunk in stream:
                if self.closed:
                    return
                if chunk:
                    transport.write(encode_chunk(chunk) if chunked else chunk)
                    if self._write_paused:
                        await self._drain(write_timeout)
        if chunked and not self.closed:
            transport.write(LAST_CHUNK)

    def _begin(self, is_head: bool, keep_alive: bool, read_timeout: float | None) -> ResponseParser:
        """Set up for one request/response exchange (both request paths)."""
        parser = self._spare
        if parser is None:
            parser = ResponseParser(is_head)
        else:
            self._spare = None
            parser.restart(is_head)
        self._parser = parser
        self.keep_alive = keep_alive
        self._error = None
        self._read_timeout = read_timeout
        if read_timeout is not None:
            self._arm_timer(read_timeout)
        return parser

    def start_raw(
        self,
        head: bytes,
        body: bytes,
        is_head: bool,
        keep_alive: bool,
        read_timeout: float | None,
    ) -> asyncio.Future[RawResponse]:
        """Write a complete request; the future resolves with the complete response."""
        self._begin(is_head, keep_alive, read_timeout)
        raw = self._raw = self._loop.create_future()
        transport = self._transport
        assert transport is not None
        if not body:
            transport.write(head)
        elif len(body) <= COALESCE_LIMIT:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
        if self._write_paused:
            self._writing = True
        return raw

    async def drain_raw(self, write_timeout: float | None) -> None:
        """Wait until a raw request is fully handed to the kernel (write flow control)."""
        await self._drain(write_timeout)
        self._writing = False
        self._last_activity = self._loop.time()

    def raw_failed(self, raw: asyncio.Future[RawResponse] | None, exc: BaseException) -> None:
        """Clean up after a raw request failed here."""
        if raw is not None and raw.done() and not raw.cancelled() and raw.exception() is None:
            return  # complete (cancelled afterwards): already released
        self._raw = None
        self._writing = False
        parser = self._parser
        mark_failure(exc, parser is not None and parser.started, self.reused)
        self._discard()

    async def send(
        self, head: RequestHead, read_timeout: float | None, write_timeout: float | None
    ) -> httpx.Response:
        """Send one request and return once the response head is in."""
        if self.closed:
            if self.reused:
                # Died between release and reuse.
                self._discard_keep_slot()
                raise _Retry()
            self._discard()
            raise httpx.ConnectError("The connection was closed right after it was opened.")
        parser = self._begin(head.is_head, head.keep_alive, read_timeout)
        self._want_headers = True
        transport = self._transport
        assert transport is not None
        try:
            self._writing = True
            transport.write(head.data)
            if head.stream is not None:
                await self._send_body(head, write_timeout)
            elif self._write_paused:
                await self._drain(write_timeout)
            self._writing = False
            if not parser.headers_complete:
                while not parser.headers_complete:
                    if self._error is not None:
                        raise self._error
                    if self.closed:
                        raise httpx.ReadError("The connection was closed.")
                    await self._wait()
        except BaseException as exc:
            self._writing = False
            self._discard()
            mark_failure(exc, parser.started, self.reused)
            raise
        self._want_headers = False
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
            stream=_ResponseStream(self),
            extensions=extensions,
        )

    async def receive_body(self) -> bytes:
        """The next piece of the body; ``b""`` at the end (the connection is then released)."""
        parser = self._parser
        assert parser is not None
        while True:
            if parser.chunks:
                data = parser.take_body()
                if self._read_paused and not self.closed:
                    self._read_paused = False
                    assert self._transport is not None
                    self._transport.resume_reading()
                return data
            if parser.complete:
                self._finish()
                return b""
            if self._error is not None or self.closed:
                # The head is in: the server has the request (never resend it).
                error = self._error or httpx.ReadError("The connection was closed.")
                mark_failure(error, True, self.reused)
                raise error
            await self._wait()

    def _finish(self) -> None:
        """The response is complete: back to the pool, or closed."""
        parser = self._parser
        assert parser is not None
        if (
            parser.keep_alive
            and self.keep_alive
            and not parser.trailing_data
            and self._error is None
            and not self.closed
        ):
            if self._read_paused:
                self._read_paused = False
                assert self._transport is not None
                self._transport.resume_reading()
            self._parser = None
            self._spare = parser
            self.reused = True
            self._owner._release(self)
        else:
            self._discard()

    def _discard_keep_slot(self) -> None:
        self._slot_held = False
        self._abort()


class _ResponseStream(httpx.AsyncByteStream):
    """Body chunks as they arrive; releases or discards the connection at the end."""

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                data = await conn.receive_body()
                if not data:
                    self._conn = None
                    return
                yield data
        except BaseException:
            if self._conn is not None:
                self._conn = None
                conn._discard()
            raise

    async def aclose(self) -> None:
        conn = self._conn
        if conn is not None:
            # Closed before the end: never hand a half-read connection out again.
            self._conn = None
            conn._discard()


class AsyncTransport(httpx.AsyncBaseTransport):
    """A fast asyncio HTTP/1.1 transport for :class:`httpx.AsyncClient`.

    Connections are asyncio Protocols whose responses are parsed by httptools.
    Keep-alive connections are pooled per origin with O(1) acquire/release and a
    global cap (``max_connections``) served to waiters in FIFO order.  Requests
    honour httpx's per-request ``timeout`` extension (``connect``, ``read``,
    ``write``, ``pool``; None means unbounded); without it ``connect_timeout``
    applies and everything else is unbounded.  A request is sent once: only a
    pooled connection seen closed *before* the request is written is replaced by
    a fresh one.  A failure says on the exception whether response bytes had
    arrived (``response_started``) or a reused connection died under the request
    (``stale_connection``), for a retry policy to decide (see ``_wire``).  Idle
    connections expire after ``keepalive_expiry`` seconds (4, below uvicorn's 5).
    Environment proxies are never consulted.  asyncio only.
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
        self._loop: asyncio.AbstractEventLoop | None = None
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
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(_TRIO_MESSAGE) from None
        if self._closed:
            raise RuntimeError(_CLOSED_MESSAGE)
        if loop is not self._loop:
            self._bind_loop(loop)
        head = encode_request(request)
        connect_timeout, read_timeout, write_timeout, pool_timeout = request_timeouts(
            request, self._connect_timeout
        )
        origin = origin_of(request.url)

        item = self._pool.acquire(origin, _monotonic())
        if isinstance(item, _Connection):
            conn = item
        else:
            conn = await self._acquire(item, origin, loop, pool_timeout, connect_timeout)
        try:
            return await conn.send(head, read_timeout, write_timeout)
        except _Retry:
            pass
        conn = await self._connect(origin, loop, connect_timeout)
        return await conn.send(head, read_timeout, write_timeout)

    async def raw_request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes,
        timeouts: RawTimeouts,
    ) -> RawResponse:
        """Send a complete request and return the complete response, without httpx objects.

        ``origin`` is ``(scheme, host, port)`` as the pool keys it: ``"http"`` or
        ``"https"``, the ASCII (IDNA) host without brackets, the port.  ``head`` is
        the serialised request head (request line, ``Host``, ``Content-Length``
        when there is a body, ending with ``b"\\r\\n\\r\\n"``), ``body`` the whole
        body (may be empty).  ``timeouts`` are ``(connect, read, write, pool)``
        seconds, None for unbounded.  Returns ``(status, headers, body)`` with the
        header pairs as received.  Pooling, keep-alive, retries, cancellation,
        timeouts and exceptions are those of :meth:`handle_async_request`.
        """
        try:
            loop = _get_running_loop()
        except RuntimeError:
            raise RuntimeError(_TRIO_MESSAGE) from None
        if self._closed:
            raise RuntimeError(_CLOSED_MESSAGE)
        if loop is not self._loop:
            self._bind_loop(loop)
        connect_timeout, read_timeout, write_timeout, pool_timeout = timeouts
        is_head, keep_alive = parse_raw_head(head)
        item = self._pool.acquire(origin, _monotonic())
        if isinstance(item, _Connection):
            conn = item
        else:
            conn = await self._acquire(item, origin, loop, pool_timeout, connect_timeout)
        if conn.closed and conn.reused:
            # Died between release and reuse, before anything was written: a fresh one.
            conn._discard_keep_slot()
            conn = await self._connect(origin, loop, connect_timeout)
        raw = None
        try:
            if conn.closed:
                raise httpx.ConnectError("The connection was closed right after it was opened.")
            raw = conn.start_raw(head, body, is_head, keep_alive, read_timeout)
            if conn._writing:
                await conn.drain_raw(write_timeout)
            return await raw
        except BaseException as exc:
            conn.raw_failed(raw, exc)
            raise

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
    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            # Used from a new event loop: connections of the old one are unusable.
            for conn in self._pool.close(RuntimeError("event loop changed")):
                conn._slot_held = False
            for conn in list(self._connections):
                conn._slot_held = False
                conn.closed = True
            self._connections.clear()
            self._pool = ConnectionPool(self._pool.max_connections)
        self._loop = loop

    async def _acquire(
        self,
        item: Slot | None,
        origin: Origin,
        loop: asyncio.AbstractEventLoop,
        pool_timeout: float | None,
        connect_timeout: float | None,
    ) -> _Connection:
        """The slow path of acquiring: open a connection on ``SLOT``, or wait on None."""
        pool = self._pool
        got: _Connection | Slot | None = item
        if got is None:
            future: asyncio.Future[_Connection | Slot] = loop.create_future()
            pool.wait(_Waiter(origin, future))
            handle = (
                None
                if pool_timeout is None
                else loop.call_later(pool_timeout, _expire_waiter, future)
            )
            try:
                got = await future
            except BaseException:
                if future.done() and not future.cancelled() and future.exception() is None:
                    # Served and cancelled in the same iteration: give it back.
                    served = future.result()
                    if served is SLOT:
                        pool.discard()
                    else:
                        assert isinstance(served, _Connection)
                        pool.release(served)
                raise
            finally:
                if handle is not None:
                    handle.cancel()
        if got is SLOT:
            return await self._connect(origin, loop, connect_timeout)
        assert isinstance(got, _Connection)
        return got

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def _connect(
        self, origin: Origin, loop: asyncio.AbstractEventLoop, timeout: float | None
    ) -> _Connection:
        """Open a connection using a slot the caller already holds."""
        scheme, host, port = origin
        conn = _Connection(self, origin, loop)
        tls = self._ssl() if scheme == "https" else None
        try:
            coro = loop.create_connection(
                lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
            )
            if timeout is None:
                await coro
            else:
                await asyncio.wait_for(coro, timeout)
        except BaseException as exc:
            self._pool.discard()
            if isinstance(exc, asyncio.TimeoutError):
                raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from exc
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        if self._socket_options:
            assert conn._transport is not None
            sock: socket.socket = conn._transport.get_extra_info("socket")
            for option in self._socket_options:
                sock.setsockopt(*option)
        self._connections.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        expiry = self._keepalive_expiry
        if expiry is not None:
            assert self._loop is not None
            conn.expires_at = _monotonic() + expiry
        if self._closed:
            conn._discard()
        else:
            self._pool.release(conn)

    def _connection_lost_idle(self, conn: _Connection) -> None:
        if self._pool.remove_idle(conn):
            conn._slot_held = False
