"""Typed streams over an open httpx response: iterators that are context managers.

The parsing is the core's (:mod:`rlinf_http._core.streams`); these classes only
pull bytes from the response and close it. Leaving the ``with`` block, calling
``close()``/``aclose()``, an exception or a cancellation closes the connection
at once (sglang aborts the generation when the client disconnects). A stream
read to its ``[DONE]`` returns its connection to the pool.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import httpx

from ._core.responses import undecodable
from ._core.streams import EventStreamParser
from ._errors import IncompleteStreamError
from .models._base import ROUTED_WORKER_HEADER
from .transports._wire import READ_DEADLINE_EXTENSION, read_deadline

__all__ = ["AsyncStream", "Stream"]

T = TypeVar("T")

#: How long a stream that sent ``[DONE]`` may take to end its body.
_DRAIN_SECONDS = 1.0

#: What may go wrong reading the end of a body after ``[DONE]``: the data is complete,
#: so it only costs the connection (which is then closed, not reused).
_AFTER_DONE = (httpx.TransportError, httpx.DecodingError)


class _StreamBase(Generic[T]):
    def __init__(
        self, response: httpx.Response, parser: EventStreamParser[T], method: str, url: str
    ) -> None:
        self.response = response
        self._parser = parser
        self._method = method
        self._url = url
        self._pending: deque[T] = deque()
        self._finished = False
        #: ``time.perf_counter()`` when the bytes of the chunk last returned arrived
        #: (before they were parsed); benchmarks time tokens with it.
        self.arrived_at = 0.0
        # The body is read raw and decoded here (rare: we never ask for an encoding),
        # so that a body that fails to decode leaves no half-run httpx iterator behind.
        # A response that was already read (``httpx.Response(content=...)``, as respx
        # and MockTransport build them) has only its decoded content left: stream that.
        self._read_content: bytes | None = getattr(response, "_content", None)
        self._decoder: Any = (
            response._get_content_decoder()
            if self._read_content is None and "content-encoding" in response.headers
            else None
        )

    def _feed(self, data: bytes) -> list[T]:
        decoder = self._decoder
        return self._parser.feed(data if decoder is None else decoder.decode(data))

    def _at_end(self) -> list[T]:
        """The end of the body: what the decoder still held, then the parser's end."""
        items: list[T] = []
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                items = self._parser.feed(tail)
        return items + self._parser.finish()

    @property
    def request_id(self) -> str | None:
        """The ``x-request-id`` of the response (or the one the client sent)."""
        rid: str | None = self.response.headers.get("x-request-id")
        return rid or self.response.request.headers.get("x-request-id")

    @property
    def routed_worker_id(self) -> str | None:
        """The worker serving this stream, as the gateway names it (smg's
        ``x-smg-routed-worker-id``: the worker's URL); ``None`` when no gateway said."""
        worker: str | None = self.response.headers.get(ROUTED_WORKER_HEADER)
        return worker or None

    def _broken(self, exc: httpx.TransportError) -> IncompleteStreamError:
        # The response had started: this is a stream cut short, not a failed request.
        return IncompleteStreamError(
            f"{self._method} {self._url}: the stream broke before 'data: [DONE]': "
            f"{type(exc).__name__}: {exc or 'connection closed'}"
        )

    def _failure(self, exc: BaseException) -> BaseException:
        """Our error for a failure while reading the body (``exc`` itself if it is ours)."""
        if isinstance(exc, httpx.TransportError):
            return self._broken(exc)
        if isinstance(exc, httpx.DecodingError):
            return undecodable(self._method, self._url, self.response.status_code, b"", exc)
        return exc

    @property
    def headers(self) -> httpx.Headers:
        """The response headers."""
        return self.response.headers


class Stream(_StreamBase[T], Iterator[T]):
    """A sync iterator of typed chunks; use it in a ``with`` block."""

    def __init__(
        self, response: httpx.Response, parser: EventStreamParser[T], method: str, url: str
    ) -> None:
        super().__init__(response, parser, method, url)
        content = self._read_content
        self._chunks = response.iter_raw() if content is None else iter((content,))

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        while not self._pending:
            if self._finished:
                if self._parser.pending_error:
                    self._parser.finish()  # raises the error event, after the chunks before it
                raise StopIteration
            self._pull()
        return self._pending.popleft()

    def _pull(self) -> None:
        try:
            try:
                data = next(self._chunks)
                self.arrived_at = time.perf_counter()
            except StopIteration:
                self._finished = True
                self._pending.extend(self._at_end())
                self.close()
                return
            self._pending.extend(self._feed(data))
            if self._parser.done:
                self._finished = True
                if not self._parser.pending_error:
                    self._drain()
                self.close()
        except BaseException as exc:
            self.close()
            error = self._failure(exc)
            if error is exc:
                raise
            raise error from exc

    def _drain(self) -> None:
        # Read the end of the body so the connection can be reused, but never wait
        # long on a server that sends [DONE] and keeps the body open. Where reads
        # cannot be bounded (a client of the user's), don't wait at all.
        if not self.response.extensions.get(READ_DEADLINE_EXTENSION):
            # httpx's transport through our watched backend honours it too; importing
            # that module imports httpcore (and trio with it), so only on this path
            from .transports._httpcore import honours_read_deadline

            if not honours_read_deadline(self.response):
                return
        try:
            with read_deadline(_DRAIN_SECONDS):
                for _ in self._chunks:
                    pass
        except _AFTER_DONE:
            pass

    def close(self) -> None:
        """Close the response (and its connection, unless it was read to the end)."""
        self._finished = True
        chunks = self._chunks
        if isinstance(chunks, Generator):
            chunks.close()
        self.response.close()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Once(AsyncIterator[bytes]):
    """One piece of bytes as an async iterator (no async generator to finalize)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


class AsyncStream(_StreamBase[T], AsyncIterator[T]):
    """An async iterator of typed chunks; use it in an ``async with`` block."""

    def __init__(
        self, response: httpx.Response, parser: EventStreamParser[T], method: str, url: str
    ) -> None:
        super().__init__(response, parser, method, url)
        content = self._read_content
        self._chunks: AsyncIterator[bytes] = (
            response.aiter_raw() if content is None else _Once(content)
        )

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        while not self._pending:
            if self._finished:
                if self._parser.pending_error:
                    self._parser.finish()  # raises the error event, after the chunks before it
                raise StopAsyncIteration
            await self._pull()
        return self._pending.popleft()

    async def _pull(self) -> None:
        try:
            try:
                data = await self._chunks.__anext__()
                self.arrived_at = time.perf_counter()
            except StopAsyncIteration:
                self._finished = True
                self._pending.extend(self._at_end())
                await self.aclose()
                return
            self._pending.extend(self._feed(data))
            if self._parser.done:
                self._finished = True
                if not self._parser.pending_error:
                    # Drain the terminator so the connection is reusable, but never
                    # wait long on a server that sends [DONE] and keeps the body open.
                    with anyio.move_on_after(_DRAIN_SECONDS):
                        try:
                            async for _ in self._chunks:
                                pass
                        except _AFTER_DONE:
                            pass
                await self.aclose()
        except BaseException as exc:
            await self.aclose()
            error = self._failure(exc)
            if error is exc:
                raise
            raise error from exc

    async def aclose(self) -> None:
        """Close the response (and its connection, unless it was read to the end)."""
        self._finished = True
        with anyio.CancelScope(shield=True):
            await self.response.aclose()
            chunks = self._chunks
            if isinstance(chunks, AsyncGenerator) and getattr(chunks, "ag_frame", None) is not None:
                # Closed mid-body: run the body iterator out. With the connection
                # closed it ends (after what was already buffered) with an error,
                # which unwinds the whole chain of async generators beneath it
                # (httpcore's included) now, instead of leaving them to the garbage
                # collector (trio warns about those).
                try:
                    async for _ in chunks:
                        pass
                except Exception:
                    pass
                await chunks.aclose()

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
