"""HTTP/1.1 without I/O: request serialisation and response parsing around httptools.

Both transports use these pieces; they only differ in how bytes move.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httptools
import httpx

__all__ = [
    "COALESCE_LIMIT",
    "BufferedStream",
    "DEFAULT_PORTS",
    "RequestHead",
    "ResponseParser",
    "encode_chunk",
    "encode_request",
    "origin_of",
    "parse_raw_head",
    "request_timeouts",
]

DEFAULT_PORTS = {"http": 80, "https": 443}

#: Terminating chunk of a chunked request body.
LAST_CHUNK = b"0\r\n\r\n"

#: Bodies up to this size are sent in the same write as the head.
COALESCE_LIMIT = 64 * 1024


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """``(scheme, host, port)`` for pooling: ASCII (IDNA) host without brackets."""
    scheme = url.scheme
    port = url.port
    if port is None:
        port = DEFAULT_PORTS.get(scheme, 80)
    return (scheme, url.raw_host.decode("ascii"), port)


def request_timeouts(
    request: httpx.Request, connect_default: float | None
) -> tuple[float | None, float | None, float | None, float | None]:
    """``(connect, read, write, pool)`` from httpx's per-request ``timeout`` extension;
    without it ``connect_default`` applies and the rest is unbounded."""
    timeouts = request.extensions.get("timeout")
    if timeouts is None:
        return connect_default, None, None, None
    return (
        timeouts.get("connect"),
        timeouts.get("read"),
        timeouts.get("write"),
        timeouts.get("pool"),
    )


def parse_raw_head(head: bytes) -> tuple[bool, bool]:
    """``(is_head, keep_alive)`` of a serialised request head (for ``raw_request``)."""
    is_head = head.startswith(b"HEAD ")
    lowered = head.lower()
    keep_alive = True
    start = lowered.find(b"\r\nconnection:")
    while start != -1:
        end = lowered.find(b"\r\n", start + 2)
        if b"close" in lowered[start:end]:
            keep_alive = False
            break
        start = lowered.find(b"\r\nconnection:", end)
    return is_head, keep_alive


class RequestHead:
    """A serialised request: the bytes to write first and how to send the rest."""

    __slots__ = ("chunked", "data", "is_head", "keep_alive", "replayable", "stream")

    def __init__(
        self,
        data: bytes,
        stream: Any,
        chunked: bool,
        is_head: bool,
        keep_alive: bool,
        replayable: bool,
    ) -> None:
        #: Head, plus the whole body when it is small and known.
        self.data = data
        #: Remaining body to send: ``bytes``, an (async) iterable of bytes, or None.
        self.stream = stream
        #: Whether ``stream`` must be sent with chunked transfer encoding.
        self.chunked = chunked
        self.is_head = is_head
        #: False when the request carries ``Connection: close``.
        self.keep_alive = keep_alive
        #: True when the whole request can be sent again (no one-shot stream).
        self.replayable = replayable


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_request(request: httpx.Request) -> RequestHead:
    """Serialise the request line and headers; decide how the body is framed."""
    url = request.url
    method = request.method.encode("ascii")
    headers = request.headers
    # httpx keeps (raw name, lower-cased name, value) triples; fall back to the public API.
    items: list[tuple[bytes, bytes, bytes]] = getattr(headers, "_list", None) or [
        (name, name.lower(), value) for name, value in headers.raw
    ]
    parts = [b"%b %b HTTP/1.1\r\n" % (method, url.raw_path)]
    parts += [b"%b: %b\r\n" % (name, value) for name, _, value in items]
    names = {lname for _, lname, _ in items}
    has_length = b"content-length" in names
    chunked = False
    keep_alive = True
    if b"transfer-encoding" in names or b"connection" in names:
        for _, lname, value in items:
            if lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lname == b"connection" and b"close" in value.lower():
                keep_alive = False
    if b"host" not in names:
        host = url.raw_host
        if b":" in host:
            host = b"[" + host + b"]"
        if url.port is not None:
            host += b":%d" % url.port
        parts.insert(1, b"Host: %b\r\n" % host)

    body: bytes | None
    try:
        body = request.content
    except httpx.RequestNotRead:
        body = None

    is_head = method == b"HEAD"
    if body is not None:
        if body and not has_length and not chunked:
            parts.append(b"Content-Length: %d\r\n" % len(body))
        parts.append(b"\r\n")
        if not body:
            return RequestHead(b"".join(parts), None, False, is_head, keep_alive, True)
        if chunked:
            return RequestHead(b"".join(parts), body, True, is_head, keep_alive, True)
        if len(body) <= COALESCE_LIMIT:
            parts.append(body)
            return RequestHead(b"".join(parts), None, False, is_head, keep_alive, True)
        return RequestHead(b"".join(parts), body, False, is_head, keep_alive, True)

    # A stream of unknown content: chunked unless the caller framed it.
    if not has_length and not chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
        chunked = True
    parts.append(b"\r\n")
    return RequestHead(b"".join(parts), request.stream, chunked, is_head, keep_alive, False)


class BufferedStream(httpx.AsyncByteStream, httpx.SyncByteStream):
    """A complete body delivered in one piece (no generator machinery)."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        return iter((self._body,) if self._body else ())

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _OneShot(self._body)

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        pass


class _OneShot:
    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __aiter__(self) -> _OneShot:
        return self

    async def __anext__(self) -> bytes:
        body = self._body
        if not body:
            raise StopAsyncIteration
        self._body = b""
        return body


class ResponseParser:
    """Accumulates one response (skipping 1xx interim responses) from fed bytes.

    Raises :class:`httpx.RemoteProtocolError` from :meth:`feed` / :meth:`feed_eof`
    on malformed or truncated input.
    """

    __slots__ = (
        "_interim",
        "_parser",
        "_reason",
        "body_size",
        "chunks",
        "complete",
        "headers",
        "headers_complete",
        "http_version",
        "is_head",
        "keep_alive",
        "started",
        "status_code",
        "trailing_data",
    )

    def __init__(self, is_head: bool = False) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.is_head = is_head
        self.started = False
        self.headers_complete = False
        self.complete = False
        self.keep_alive = False
        self.trailing_data = False
        self.status_code = 0
        self.http_version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.body_size = 0
        self._reason = b""
        self._interim = False

    def restart(self, is_head: bool) -> None:
        """Get ready for the next response on the same keep-alive connection.

        httptools carries on with the next message after a complete one, so its
        parser is kept, except around HEAD responses: it expects the body their
        headers announce and must be replaced.
        """
        if is_head or self.is_head:
            self._parser = httptools.HttpResponseParser(self)
        self.is_head = is_head
        self.started = False
        self.headers_complete = False
        self.complete = False
        self.keep_alive = False
        self.status_code = 0
        self.http_version = b"HTTP/1.1"
        if self.headers:
            self.headers = []
        self._reason = b""

    # -- input --------------------------------------------------------------------------
    def feed(self, data: bytes | memoryview) -> None:
        self.started = True
        if self.complete:
            self.trailing_data = True
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self.complete:
                self.keep_alive = False
                return
            raise httpx.RemoteProtocolError("Connection upgrade is not supported.") from None
        except httptools.HttpParserError as exc:
            if self.complete and self.is_head:
                # The parser expected a body after a HEAD response; there is none.
                return
            raise httpx.RemoteProtocolError(f"Malformed HTTP response: {exc}") from None

    def feed_eof(self) -> None:
        """The peer closed the connection; completes close-delimited bodies."""
        if self.complete:
            return
        if not self.started:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if not self.headers_complete:
            raise httpx.RemoteProtocolError("Server disconnected while sending response headers.")
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length" or (
                lname == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending the complete message body."
                )
        self.keep_alive = False
        self.complete = True

    # -- output -------------------------------------------------------------------------
    @property
    def reason_phrase(self) -> bytes:
        return self._reason.strip()

    def take_response(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """``(status, headers, body)`` of the complete response, handed over: the
        parser (kept for the connection's next response) holds none of it, so a
        response's objects die with the caller's use of them instead of living on
        an idle connection, where the garbage collector would promote them."""
        headers = self.headers
        self.headers = []
        return self.status_code, headers, self.take_body()

    def take_body(self) -> bytes:
        """Everything received so far, in one piece."""
        chunks = self.chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.body_size = 0
        return data

    # -- httptools callbacks ------------------------------------------------------------
    # After a complete response, httptools goes on with whatever follows in the same
    # bytes (an unsolicited message): it is trailing data, and must not rewrite the
    # response (its status, reason and headers).
    def on_message_begin(self) -> None:
        if self.complete:
            self.trailing_data = True

    def on_status(self, status: bytes) -> None:
        if not self.complete:
            self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim response (100 Continue, 103 Early Hints...): skip it.
            self._interim = True
            self.headers.clear()
            self._reason = b""
            return
        self.status_code = status
        if parser.get_http_version() == "1.0":
            self.http_version = b"HTTP/1.0"
        self.keep_alive = parser.should_keep_alive()
        self.headers_complete = True
        if self.is_head or status == 204 or status == 304:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.body_size += len(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self._interim:
            self._interim = False
            return
        self.complete = True
