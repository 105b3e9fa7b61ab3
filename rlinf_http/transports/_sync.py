"""A blocking-socket HTTP/1.1 transport for httpx: thread-safe, httptools parsing."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

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
from ._wire import (
    READ_DEADLINE_EXTENSION,
    mark_failure,
    read_early_answer,
    read_timeout_within_deadline,
)

__all__ = ["KEEPALIVE_EXPIRY", "SocketOption", "SyncTransport"]

_RECV_SIZE = 65536

_TCP_QUICKACK = TCP_QUICKACK
_INF = float("inf")
_CLOSED_MESSAGE = CLOSED_MESSAGE
_monotonic = time.monotonic


#: What a failed request write raises (see ``_Connection._answered_early``).
_WRITE_ERRORS = (httpx.WriteError, httpx.WriteTimeout)


class _Retry(Exception):
    """A pooled connection was found closed before the request was written: use another."""


def _peer_gone(sock: socket.socket) -> bool:
    """An idle connection the peer closed (or sent stray bytes on): readable at once."""
    try:
        if _poll is not None:
            poller = _poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


_poll = getattr(select, "poll", None)


class _Waiter:
    __slots__ = ("dead", "error", "item", "lock", "origin")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.lock = threading.Lock()
        self.lock.acquire()
        self.item: _Connection | Slot | None = None
        self.error: BaseException | None = None
        self.dead = False

    # Called with the transport's lock held.
    def deliver(self, item: _Connection | Slot) -> bool:
        if self.dead:
            return False
        self.item = item
        self.dead = True
        self.lock.release()
        return True

    def fail(self, exc: BaseException) -> None:
        if not self.dead:
            self.error = exc
            self.dead = True
            self.lock.release()


class _Connection:
    """One keep-alive HTTP/1.1 connection over a blocking socket."""

    __slots__ = (
        "_failed",
        "_owner",
        "_parser",
        "_spare",
        "_timeout",
        "closed",
        "expires_at",
        "keep_alive",
        "origin",
        "reused",
        "sock",
    )

    def __init__(self, owner: SyncTransport, origin: Origin, sock: socket.socket) -> None:
        self._owner = owner
        self.origin = origin
        self.sock = sock
        self._timeout: float | None = sock.gettimeout()
        self._parser: ResponseParser | None = None
        #: A read failure held back while the body bytes before it are delivered.
        self._failed: httpx.TransportError | None = None
        #: The parser of the previous response, kept for the next one.
        self._spare: ResponseParser | None = None
        self.expires_at = _INF
        self.closed = False
        self.reused = False
        self.keep_alive = True

    # -- pool interface -----------------------------------------------------------------
    def is_usable(self) -> bool:
        return not self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._owner._forget(self)
            try:
                self.sock.close()
            except OSError:  # pragma: no cover
                pass

    # -- I/O ----------------------------------------------------------------------------
    def _settimeout(self, timeout: float | None) -> None:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def _discard(self) -> None:
        self.close()
        self._owner._discard_slot()

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise httpx.WriteTimeout("Timed out while sending data to the host.") from None
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc

    def _read_more(self, parser: ResponseParser) -> None:
        timeout = read_timeout_within_deadline(self._timeout)
        try:
            if timeout != self._timeout:  # inside a read_deadline() block
                if timeout is not None and timeout <= 0:
                    raise TimeoutError
                self.sock.settimeout(timeout)
                try:
                    data = self.sock.recv(_RECV_SIZE)
                finally:
                    self.sock.settimeout(self._timeout)
            else:
                data = self.sock.recv(_RECV_SIZE)
        except TimeoutError:
            raise httpx.ReadTimeout("Timed out while receiving data from the host.") from None
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        if data:
            parser.feed(data)
            if _TCP_QUICKACK is not None and not parser.complete:
                # See the async transport: quick ACKs keep streamed chunks from a
                # peer with Nagle's algorithm on (the sglang router) on time.
                try:
                    self.sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
                except OSError:
                    pass
        else:
            parser.feed_eof()

    def _answered_early(self, parser: ResponseParser) -> bool:
        """A write failed: whether the server had already answered (then that answer
        is the response, and the connection is closed after it)."""
        if read_early_answer(self.sock, parser):
            self.keep_alive = False
            return True
        return False

    def _send_body(self, head: RequestHead) -> None:
        stream = head.stream
        chunked = head.chunked
        if isinstance(stream, bytes):
            self._write(encode_chunk(stream) + LAST_CHUNK if chunked else stream)
            return
        for chunk in stream:
            if chunk:
                self._write(encode_chunk(chunk) if chunked else chunk)
        if chunked:
            self._write(LAST_CHUNK)

    def _begin(self, is_head: bool, keep_alive: bool) -> ResponseParser:
        parser = self._spare
        if parser is None:
            parser = ResponseParser(is_head)
        else:
            self._spare = None
            parser.restart(is_head)
        self._parser = parser
        self.keep_alive = keep_alive
        self._failed = None
        return parser

    def send_raw(
        self,
        head: bytes,
        body: bytes,
        is_head: bool,
        keep_alive: bool,
        read_timeout: float | None,
        write_timeout: float | None,
        may_retry: bool,
    ) -> RawResponse:
        """Send a complete request, read the complete response."""
        if may_retry and self.reused and _peer_gone(self.sock):
            self.close()  # the slot is kept for the retry
            raise _Retry()
        parser = self._begin(is_head, keep_alive)
        try:
            self._settimeout(write_timeout)
            if not body:
                self._write(head)
            elif len(body) <= COALESCE_LIMIT:
                self._write(head + body)
            else:
                self._write(head)
                self._write(body)
            self._settimeout(read_timeout)
            while not parser.complete:
                self._read_more(parser)
        except BaseException as exc:
            if not (isinstance(exc, _WRITE_ERRORS) and self._answered_early(parser)):
                self._discard()
                mark_failure(exc, parser.started, self.reused)
                raise
        result = parser.take_response()
        self._finish()
        return result

    def send(
        self, head: RequestHead, read_timeout: float | None, write_timeout: float | None
    ) -> httpx.Response:
        if self.reused and _peer_gone(self.sock):
            self.close()  # the slot is kept for the retry
            raise _Retry()
        parser = self._begin(head.is_head, head.keep_alive)
        try:
            self._settimeout(write_timeout)
            self._write(head.data)
            if head.stream is not None:
                self._send_body(head)
            self._settimeout(read_timeout)
            while not parser.headers_complete:
                self._read_or_defer(parser)
        except BaseException as exc:
            if not (isinstance(exc, _WRITE_ERRORS) and self._answered_early(parser)):
                self._discard()
                mark_failure(exc, parser.started, self.reused)
                raise
        extensions = {
            "http_version": parser.http_version,
            "reason_phrase": parser.reason_phrase,
            READ_DEADLINE_EXTENSION: True,
        }
        if parser.complete:
            body = parser.take_body()
            self._finish()
            stream: httpx.SyncByteStream = BufferedStream(body)
        else:
            stream = _ResponseStream(self)
        return httpx.Response(
            parser.status_code, headers=parser.headers, stream=stream, extensions=extensions
        )

    def receive_body(self) -> bytes:
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
            self._read_or_defer(parser)

    def _read_or_defer(self, parser: ResponseParser) -> None:
        """Read more; a failure once the head is in waits until the body bytes received
        before it are delivered (:meth:`receive_body` raises it then)."""
        try:
            self._read_more(parser)
        except httpx.TransportError as exc:
            if not parser.headers_complete:
                raise
            mark_failure(exc, True, self.reused)
            self._failed = exc

    def _finish(self) -> None:
        parser = self._parser
        assert parser is not None
        self._parser = None
        if parser.keep_alive and self.keep_alive and not parser.trailing_data:
            self._spare = parser
            self.reused = True
            self._owner._release(self)
        else:
            self._discard()


class _ResponseStream(httpx.SyncByteStream):
    """Body pieces as they arrive; releases or discards the connection at the end."""

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn

    def __iter__(self) -> Iterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                data = conn.receive_body()
                if not data:
                    self._conn = None
                    return
                yield data
        except BaseException:
            if self._conn is not None:
                self._conn = None
                conn._discard()
            raise

    def close(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn._discard()


class SyncTransport(httpx.BaseTransport):
    """A fast, thread-safe HTTP/1.1 transport for :class:`httpx.Client`.

    Blocking sockets with httptools parsing; a keep-alive pool per origin with
    O(1) acquire/release, a global ``max_connections`` cap and FIFO waiting,
    shared safely by many threads.  Honours httpx's per-request ``timeout``
    extension (None = unbounded); without it ``connect_timeout`` applies and
    the rest is unbounded.  A request is sent once: only a pooled connection
    seen closed (or readable) *before* the request is written is replaced by a
    fresh one.  Failures are marked as in :class:`AsyncTransport`.  Idle
    connections expire after ``keepalive_expiry`` seconds (4, below uvicorn's 5).
    Environment proxies are never consulted.
    """

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
        self._lock = threading.Lock()
        self._connect_timeout = connect_timeout
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._socket_options = list(socket_options) if socket_options else []
        self._connections: set[_Connection] = set()
        self._closed = False

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The pool's bookkeeping (for metrics and tests)."""
        return self._pool

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError(_CLOSED_MESSAGE)
        head = encode_request(request)
        connect_timeout, read_timeout, write_timeout, pool_timeout = request_timeouts(
            request, self._connect_timeout
        )
        origin = origin_of(request.url)

        conn = self._acquire(origin, pool_timeout, connect_timeout)
        try:
            return conn.send(head, read_timeout, write_timeout)
        except _Retry:
            pass
        conn = self._connect(origin, connect_timeout)
        return conn.send(head, read_timeout, write_timeout)

    def raw_request(
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
        header pairs as received.  Pooling, keep-alive, retries, timeouts and
        exceptions are those of :meth:`handle_request`.
        """
        if self._closed:
            raise RuntimeError(_CLOSED_MESSAGE)
        connect_timeout, read_timeout, write_timeout, pool_timeout = timeouts
        is_head, keep_alive = parse_raw_head(head)
        conn = self._acquire(origin, pool_timeout, connect_timeout)
        try:
            return conn.send_raw(head, body, is_head, keep_alive, read_timeout, write_timeout, True)
        except _Retry:
            pass
        conn = self._connect(origin, connect_timeout)
        return conn.send_raw(head, body, is_head, keep_alive, read_timeout, write_timeout, False)

    def close(self) -> None:
        """Close every connection; later requests raise :class:`RuntimeError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = self._pool.close(RuntimeError(_CLOSED_MESSAGE))
            conns = list(self._connections)
        for conn in idle:
            conn.close()
        for conn in conns:
            # Busy connections: shutting the socket down wakes their readers.
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- internals ----------------------------------------------------------------------
    def _acquire(
        self, origin: Origin, pool_timeout: float | None, connect_timeout: float | None
    ) -> _Connection:
        with self._lock:
            item = self._pool.acquire(origin, _monotonic())
            if item is None:
                waiter = _Waiter(origin)
                self._pool.wait(waiter)
        if item is None:
            got = waiter.lock.acquire(timeout=-1 if pool_timeout is None else pool_timeout)
            if not got:
                with self._lock:
                    if not waiter.dead:
                        waiter.dead = True
                        raise httpx.PoolTimeout("Timed out waiting for a free connection.")
            if waiter.error is not None:
                raise waiter.error
            item = waiter.item
        if item is SLOT:
            return self._connect(origin, connect_timeout)
        assert isinstance(item, _Connection)
        return item

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            with self._lock:
                if self._ssl_context is None:
                    self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        """Open a connection using a slot the caller already holds."""
        scheme, host, port = origin
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for option in self._socket_options:
                sock.setsockopt(*option)
            if scheme == "https":
                sock = self._ssl().wrap_socket(sock, server_hostname=host)
        except BaseException as exc:
            if sock is not None:
                sock.close()
            self._discard_slot()
            if isinstance(exc, (socket.timeout, TimeoutError)):
                raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from exc
            if isinstance(exc, OSError):
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        conn = _Connection(self, origin, sock)
        self._connections.add(conn)  # a single C-level set operation: atomic under the GIL
        return conn

    def _release(self, conn: _Connection) -> None:
        expiry = self._keepalive_expiry
        if expiry is not None:
            conn.expires_at = _monotonic() + expiry
        with self._lock:
            self._pool.release(conn)

    def _discard_slot(self) -> None:
        with self._lock:
            self._pool.discard()

    def _forget(self, conn: _Connection) -> None:
        # Called from the pool with the lock held, so no locking here (atomic under the GIL).
        self._connections.discard(conn)
