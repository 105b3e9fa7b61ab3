"""The I/O half of the client: sessions, sending with retries, plan drivers, fan-out.

Every public method of :class:`~rlinf_http.InferenceHTTPClient` builds its
request in :mod:`rlinf_http._core` and comes here only to do I/O. The sync and
async drivers below are twins that differ only where I/O differs (``send`` vs
``await send``, ``time.sleep`` vs ``anyio.sleep``); the decisions they make are
the core's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx

from ._core.plans import Call, Plan, Sleep
from ._core.requests import Operation, check_timeout
from ._core.responses import (
    RawHeaders,
    RawResponse,
    connection_error,
    retry_delay_after_error,
    retry_delay_after_status,
    undecodable,
)
from ._core.retry import RetryPolicy
from ._core.served_model import ServedModels
from ._core.steering import new_rid
from ._core.streams import EventStreamParser
from ._errors import InvalidRequestError, RLinfHTTPError
from ._fanout import AsCompleted, check_concurrency
from ._options import ClientOptions, TransportChoice
from ._streaming import AsyncStream, Stream
from .models._base import ROUTED_WORKER_HEADER, ResponseModel
from .transports import AsyncTransport, SyncTransport
from .transports._common import KEEPALIVE_EXPIRY, RawTimeouts, RawTransport
from .transports._common import raw_transport as raw_transport_of
from .transports._http11 import BufferedStream
from .transports._wire import mark_failure, watch_arrival

if TYPE_CHECKING:
    from .transports._trio import TrioTransport

__all__ = ["NOT_GIVEN", "Driver", "TimeoutTypes", "TransportChoice"]

T = TypeVar("T")
C = TypeVar("C")  # a stream chunk

logger = logging.getLogger("rlinf_http")

ROUTED_WORKER_HEADER_BYTES = ROUTED_WORKER_HEADER.encode("ascii")


class _Unset:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


#: The default of per-call ``timeout=``: use the client's (connect-only) timeout.
NOT_GIVEN: Any = _Unset()

#: A per-call ``timeout=``: seconds for every phase, an ``httpx.Timeout``, or
#: ``None`` for no timeout at all.
TimeoutTypes = float | httpx.Timeout | None

#: Which transport the client's own sessions use: ``"auto"`` or ``"rlinf"`` (our
#: fast transports: asyncio, trio, and blocking sockets for sync calls) or ``"httpx"``.

TimeoutTuple = RawTimeouts

# Whether "auto" picks rlinf-http's own transports.
_FAST_DEFAULT = True

# A session that overrides the client's for the current context (sync fan-out
# runs its own event loop and must not touch the shared async session).
_session_override: contextvars.ContextVar[httpx.AsyncClient | None] = contextvars.ContextVar(
    "rlinf_http_session_override", default=None
)

_live_drivers: weakref.WeakSet[Driver] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child must never reuse the parent's sockets: forget the sessions
    # without closing them (closing would shut the parent's connections down).
    for client in list(_live_drivers):
        client._forget_sessions()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


async def _close_at_loop_exit(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    # Parked at its yield for the session's life. The event loop closes the async
    # generators still alive when it shuts down (asyncio.run, trio.run), which
    # runs the finally: a session left open is closed on its own loop, instead of
    # leaving its sockets to the garbage collector.
    try:
        yield
    finally:
        await client.aclose()


def _park(guard: AsyncGenerator[None, None]) -> None:
    # Run the guard to its yield without awaiting (it awaits nothing before it);
    # the first step registers it with the running loop's generator hooks.
    try:
        guard.__anext__().send(None)
    except StopIteration:
        pass


def _trio_transport_class() -> type[TrioTransport]:
    from .transports._trio import TrioTransport

    return TrioTransport


#: The running asyncio loop or None (asyncio's own non-raising lookup).
_current_asyncio_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop


def _request_id(headers: list[tuple[bytes, bytes]], sent: str) -> str | tuple[Mapping[str, str]]:
    """The response's ``x-request-id`` (else the one sent), resolved now: a result then
    keeps one string instead of the response headers. A response naming its worker
    (smg's ``x-smg-routed-worker-id``) gives both, as one small mapping."""
    rid = None
    worker = None
    for name, value in headers:
        size = len(name)
        if size == 12 and name.lower() == b"x-request-id" and value:
            rid = value.decode("latin-1")
        elif size == 22 and name.lower() == ROUTED_WORKER_HEADER_BYTES:
            worker = value.decode("latin-1")
    if worker is None:
        return rid or sent
    return ({"x-request-id": rid or sent, ROUTED_WORKER_HEADER: worker},)


def _running_loop_token() -> tuple[str, object]:
    """The async library and an identity for the running loop."""
    loop = _current_asyncio_loop()  # None, not an exception, under trio: cheap on every call
    if loop is not None:
        return "asyncio", loop
    import sniffio

    library = sniffio.current_async_library()
    if library == "trio":
        import trio

        return "trio", trio.lowlevel.current_trio_token()
    return library, None  # pragma: no cover - anyio supports asyncio and trio only


def _in_event_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    try:
        import sniffio

        sniffio.current_async_library()
    except Exception:
        return False
    return True


class Driver:
    """One client's settings, sessions and I/O: what every endpoint calls.

    The endpoint classes (:mod:`rlinf_http._endpoints`) build a request in
    :mod:`rlinf_http._core` and hand it here: :meth:`send` / :meth:`asend` (one
    request, retried, parsed), :meth:`stream` / :meth:`astream` (a typed event
    stream), :meth:`run` / :meth:`arun` (a core plan), :meth:`map` / :meth:`amap`
    (bounded fan-out). The sync and async halves differ only where I/O does.
    """

    def __init__(self, options: ClientOptions) -> None:
        self._set_options(options)
        self._init_runtime_state()
        _live_drivers.add(self)

    def _set_options(self, options: ClientOptions) -> None:
        #: the client's settings, frozen
        self.options = options
        self.base_url = options.base_url
        self.connect_timeout = options.connect_timeout
        self.max_connections = options.max_connections
        self.health_timeout: float = options.health_timeout
        self.transport = options.transport
        self.log_bodies = options.log_bodies
        self.retry_policy = options.retry_policy
        self._headers = options.header_map()
        self._fixed_request_id = self._headers.get("x-request-id")
        self._timeout = httpx.Timeout(
            connect=options.connect_timeout, read=None, write=None, pool=None
        )
        self._user_client = options.http_client
        self._user_async_client = options.async_http_client

    # -- sessions --------------------------------------------------------------------

    def _init_runtime_state(self) -> None:
        self._sync_client: httpx.Client | None = None
        self._async_session: tuple[object, httpx.AsyncClient, AsyncGenerator[None, None]] | None = (
            None
        )
        self._lock = threading.Lock()
        self._prefixes: dict[
            tuple[str, tuple[tuple[str, str], ...]],
            tuple[httpx.URL, str, list[tuple[bytes, bytes]]],
        ] = {}
        self._timeout_ext = self._timeout.as_dict()
        self._raw_timeouts: TimeoutTuple = (
            self._timeout.connect,
            self._timeout.read,
            self._timeout.write,
            self._timeout.pool,
        )
        self._raw_prefixes: dict[
            tuple[str, str, tuple[tuple[str, str], ...]], tuple[tuple[str, str, int], bytes, str]
        ] = {}
        self._pid = os.getpid()
        #: httpx client class -> (client, its _transport_for_url, the transport it gave)
        self._transports: dict[type, tuple[object, object, object]] = {}
        self._loop_thread: _LoopThread | None = None
        #: the ``GET /v1/models`` cache of calls made without ``model=``
        self.served_models = ServedModels()

    def _forget_sessions(self) -> None:
        # (A forked child has no loop thread: the parent's is forgotten, not stopped.)
        self._loop_thread = None
        self.served_models = ServedModels()  # its lock may be held by a parent's thread
        self._sync_client = None
        self._async_session = None
        self._transports = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        if self._user_client is not None or self._user_async_client is not None:
            raise TypeError(
                "an InferenceHTTPClient built with http_client/async_http_client cannot be "
                "pickled; build it from settings in the receiving process instead"
            )
        state = self.__dict__.copy()
        for key in (
            "_sync_client",
            "_async_session",
            "_lock",
            "_prefixes",
            "_timeout_ext",
            "_raw_timeouts",
            "_raw_prefixes",
            "_pid",
            "_transports",
            "_loop_thread",
            "served_models",
        ):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime_state()
        _live_drivers.add(self)

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )

    def _new_sync_client(self) -> httpx.Client:
        transport: httpx.BaseTransport
        if self.transport == "rlinf" or (self.transport == "auto" and _FAST_DEFAULT):
            transport = SyncTransport(
                max_connections=self.max_connections, connect_timeout=self.connect_timeout
            )
        else:
            from .transports._httpcore import watched_transport  # imports httpcore

            transport = watched_transport(self._limits())
        return httpx.Client(
            timeout=self._timeout,
            limits=self._limits(),
            trust_env=False,
            follow_redirects=False,
            transport=transport,
        )

    def _new_async_client(self, library: str) -> httpx.AsyncClient:
        transport: httpx.AsyncBaseTransport | None = None
        if self.transport == "rlinf" or (self.transport == "auto" and _FAST_DEFAULT):
            if library == "trio":
                transport = _trio_transport_class()(
                    max_connections=self.max_connections, connect_timeout=self.connect_timeout
                )
            elif library == "asyncio":
                transport = AsyncTransport(
                    max_connections=self.max_connections, connect_timeout=self.connect_timeout
                )
            elif self.transport == "rlinf":  # pragma: no cover - anyio runs asyncio and trio only
                raise InvalidRequestError(
                    "transport='rlinf' needs asyncio or trio; "
                    f"use transport='httpx' under {library}"
                )
        if transport is None:
            from .transports._httpcore import watched_async_transport  # imports httpcore

            transport = watched_async_transport(self._limits())
        return httpx.AsyncClient(
            timeout=self._timeout,
            limits=self._limits(),
            trust_env=False,
            follow_redirects=False,
            transport=transport,
        )

    def _check_fork(self) -> None:
        if self._pid != os.getpid():  # pragma: no cover - register_at_fork covers POSIX
            self._forget_sessions()

    def _get_sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        client = self._sync_client
        if client is None:
            self._check_fork()
            with self._lock:
                client = self._sync_client
                if client is None:
                    client = self._sync_client = self._new_sync_client()
        return client

    @property
    def _async_client(self) -> httpx.AsyncClient | None:
        """The current shared async session, if one is open (for introspection)."""
        session = self._async_session
        return None if session is None else session[1]

    def _get_async_client(self) -> httpx.AsyncClient:
        override = _session_override.get()
        if override is not None:
            return override
        if self._user_async_client is not None:
            return self._user_async_client
        library, token = _running_loop_token()
        session = self._async_session
        if session is not None and session[0] is token:
            return session[1]
        # First use, or the session belongs to another event loop (one that is
        # gone, like a finished asyncio.run, or one in another thread): start a
        # fresh one bound to this loop. One tuple, so a racing thread never pairs
        # a loop with another loop's session.
        self._check_fork()
        client = self._new_async_client(library)
        guard = _close_at_loop_exit(client)
        _park(guard)
        self._async_session = (token, client, guard)
        return client

    def close(self) -> None:
        """Close the sync session and the sync fan-out's loop (later calls open new ones)."""
        client, self._sync_client = self._sync_client, None
        self._transports.clear()  # holds the sessions it answered for
        if client is not None:
            client.close()
        loop, self._loop_thread = self._loop_thread, None
        if loop is not None:
            loop.close()

    async def aclose(self) -> None:
        """Close the async session, and the sync one (later calls open new ones)."""
        session, self._async_session = self._async_session, None
        self.close()
        if session is not None and session[0] is _running_loop_token()[1]:
            with anyio.CancelScope(shield=True):
                await session[2].aclose()  # the guard's finally closes the session

    # -- requests ------------------------------------------------------------------------

    def _prefix(
        self, path: str, op_headers: tuple[tuple[str, str], ...]
    ) -> tuple[httpx.URL, str, list[tuple[bytes, bytes]]]:
        """URL, its text and the encoded headers every request of this kind starts with."""
        key = (path, op_headers)
        cached = self._prefixes.get(key)
        if cached is None:
            text = self.base_url + path
            url = httpx.URL(text)
            merged = {**self._headers, **dict(op_headers)}
            raw = [(b"host", url.netloc)]
            raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in merged.items())
            cached = (url, text, raw)
            if len(self._prefixes) < 4096:  # admin paths embed ids; keep the cache bounded
                self._prefixes[key] = cached
        return cached

    def _timeout_for(self, timeout: TimeoutTypes | _Unset) -> httpx.Timeout:
        if timeout is NOT_GIVEN:
            return self._timeout
        if isinstance(timeout, httpx.Timeout):
            for phase in ("connect", "read", "write", "pool"):
                check_timeout(getattr(timeout, phase), f"timeout.{phase}")
            return timeout
        if timeout is None or isinstance(timeout, (int, float)):
            return httpx.Timeout(check_timeout(timeout, "timeout"))
        raise InvalidRequestError(
            f"timeout must be a finite number > 0, an httpx.Timeout or None, got {timeout!r}"
        )

    def _build_request(
        self,
        client: httpx.Client | httpx.AsyncClient,
        op: Operation[Any],
        timeout: TimeoutTypes | _Unset,
        user_client: bool,
    ) -> tuple[httpx.Request, str]:
        url, url_text, prefix = self._prefix(op.path, op.headers)
        # One id per logical call (kept across retries); a caller's own header wins.
        request_id = self._fixed_request_id or new_rid()
        if user_client:
            # A client given by the user keeps its own headers, cookies and timeouts.
            headers = [(k.decode(), v.decode()) for k, v in prefix[1:]]
            if self._fixed_request_id is None:
                headers.append(("x-request-id", request_id))
            request = client.build_request(
                op.method,
                url,
                content=op.content,
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT
                if timeout is NOT_GIVEN
                else self._timeout_for(timeout),
            )
            return request, url_text
        # Our own session: everything is known, so build the request directly
        # (httpx would re-derive Host and Content-Length and copy headers twice).
        raw = [*prefix]
        if self._fixed_request_id is None:
            raw.append((b"x-request-id", request_id.encode()))
        content = op.content
        if content is not None:
            raw.append((b"content-length", b"%d" % len(content)))
        elif op.method in ("POST", "PUT", "PATCH"):
            raw.append((b"content-length", b"0"))
        body = content or b""
        request = httpx.Request(
            op.method,
            url,
            headers=raw,
            content=body,
            extensions={
                "timeout": self._timeout_ext
                if timeout is NOT_GIVEN
                else self._timeout_for(timeout).as_dict()
            },
        )
        # Not httpx's ByteStream: its async iterator is a generator, which a send
        # that fails halfway (a stale pooled connection) leaves suspended for the
        # garbage collector (a ResourceWarning under trio).
        request.stream = BufferedStream(body)
        return request, url_text

    def _log(
        self,
        method: str,
        url: str,
        rid: str | None,
        outcome: int | str,
        started: float,
        body: bytes | None,
    ) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %s in %.1f ms (request id %s)%s",
                method,
                url,
                outcome,
                (time.perf_counter() - started) * 1000.0,
                rid,
                f" body={(body or b'')[:2000]!r}" if self.log_bodies else "",
            )

    @staticmethod
    def _attach_request_id(result: T, sources: tuple[Mapping[str, str], ...] | str) -> T:
        # Resolved lazily by ResponseModel.request_id: header lookups cost.
        if isinstance(result, ResponseModel):
            result._set_id_sources(sources)
        elif isinstance(result, list):
            for item in result:
                if isinstance(item, ResponseModel):
                    item._set_id_sources(sources)
        return result

    # -- the raw fast path: our transport, our session, a complete response ----------------

    def _raw_call(
        self, op: Operation[Any], timeout: TimeoutTypes | _Unset
    ) -> tuple[tuple[str, str, int], bytes, bytes, TimeoutTuple, str, str]:
        """``(origin, head, body, timeouts, url, request id)`` for ``raw_request``."""
        key = (op.method, op.path, op.headers)
        cached = self._raw_prefixes.get(key)
        if cached is None:
            url, text, prefix = self._prefix(op.path, op.headers)
            target = url.raw_path
            lines = [b"%s %s HTTP/1.1\r\n" % (op.method.encode("ascii"), target)]
            lines.extend(b"%s: %s\r\n" % (name, value) for name, value in prefix)
            port = url.port or (443 if url.scheme == "https" else 80)
            origin = (url.scheme, url.raw_host.decode("ascii"), port)
            cached = (origin, b"".join(lines), text)
            if len(self._raw_prefixes) < 4096:
                self._raw_prefixes[key] = cached
        origin, head_prefix, url_text = cached
        rid = self._fixed_request_id or new_rid()
        body = op.content or b""
        tail = b"content-length: %d\r\n\r\n" % len(body)
        if body or op.method in ("POST", "PUT", "PATCH"):
            head = head_prefix + (
                tail if self._fixed_request_id else b"x-request-id: %s\r\n%s" % (rid.encode(), tail)
            )
        else:
            head = head_prefix + (
                b"\r\n" if self._fixed_request_id else b"x-request-id: %s\r\n\r\n" % rid.encode()
            )
        if timeout is NOT_GIVEN:
            timeouts = self._raw_timeouts
        else:
            t = self._timeout_for(timeout)
            timeouts = (t.connect, t.read, t.write, t.pool)
        return origin, head, body, timeouts, url_text, rid

    @staticmethod
    def _raw_response(
        method: str, url: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> RawResponse:
        raw_headers = RawHeaders(headers)
        for name, value in headers:
            if len(name) == 16 and name.lower() == b"content-encoding":
                if value.strip().lower() not in (b"", b"identity"):
                    body = Driver._decoded(method, url, status, headers, body)
                break
        return RawResponse(method, url, status, raw_headers, body)

    @staticmethod
    def _decoded(
        method: str,
        url: str,
        status: int,
        headers: list[tuple[bytes, bytes]] | httpx.Headers,
        body: bytes,
    ) -> bytes:
        """``body`` decoded as its ``Content-Encoding`` says (rare: we never ask for it)."""
        try:
            return httpx.Response(status, headers=headers, content=body).read()
        except httpx.DecodingError as exc:
            raise undecodable(method, url, status, body, exc) from exc

    def _own_transport(self, client: httpx.Client | httpx.AsyncClient, path: str) -> object:
        """The transport of our own session for ``path`` (``None`` for a user's client).

        respx's ``using="httpx"`` mock patches ``_transport_for_url``, so what
        comes back may be a mock; only our own transports take the raw path.
        """
        # Cached per client and per httpx lookup (respx patches the class method):
        # two identity checks per request instead of httpx's mount matching.
        # A lookup patched on the session itself is not cached.
        lookup = type(client)._transport_for_url
        cached = self._transports.get(type(client))
        if cached is not None and cached[0] is client and cached[1] is lookup:
            return cached[2]
        url = self._prefix(path, ())[0]
        transport: object = client._transport_for_url(url)
        if "_transport_for_url" not in vars(client):
            self._transports[type(client)] = (client, lookup, transport)
        return transport

    # -- sync driver ----------------------------------------------------------------------

    def _retry_loop(
        self,
        op: Operation[Any],
        url: str,
        rid: str | None,
        policy: RetryPolicy,
        attempt: Callable[[], RawResponse | httpx.Response],
        first: tuple[RawResponse | httpx.TransportError, float] | None = None,
    ) -> RawResponse | httpx.Response:
        """Run ``attempt`` until it gives a success (a read response, or an open
        2xx stream), retrying what ``policy`` allows; raise our error otherwise.
        ``first`` is the outcome of an attempt the caller already made (and when it
        started), counted as the first one."""
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                if first is None:
                    out = attempt()
                else:
                    (out, started), first = first, None  # type: ignore[assignment]
                    if isinstance(out, httpx.TransportError):
                        raise out
            except httpx.TransportError as exc:
                self._log(op.method, url, rid, type(exc).__name__, started, op.content)
                delay = retry_delay_after_error(policy, retries, exc, op.method, url)
            except httpx.DecodingError as exc:  # e.g. httpx.MockTransport decodes eagerly
                raise undecodable(op.method, url, 200, b"", exc) from exc
            else:
                status = out.status_code
                self._log(op.method, url, rid, status, started, op.content)
                if isinstance(out, httpx.Response) or 200 <= status < 300:
                    return out
                delay = retry_delay_after_status(policy, retries, out, rid)
            retries += 1
            logger.info("retrying %s %s in %.2f s (retry %d)", op.method, url, delay, retries)
            time.sleep(delay)

    def _send_httpx(
        self, client: httpx.Client, request: httpx.Request, user_client: bool
    ) -> httpx.Response:
        with watch_arrival() as watch:
            try:
                if user_client:
                    return client.send(request, stream=True)
                # Our own session has no hooks, auth, cookies or redirects to run: hand
                # the request to its transport (respx's using="httpx" mock patches
                # _transport_for_url, so it still intercepts).
                response = client._transport_for_url(request.url).handle_request(request)
            except httpx.TransportError as exc:
                mark_failure(exc, watch.arrived, False)  # httpx's transports: see _httpcore
                raise
        response.request = request
        return response

    def stream(
        self,
        op: Operation[Any],
        parser: Callable[[str], EventStreamParser[C]],
        timeout: TimeoutTypes | _Unset,
        policy: RetryPolicy,
    ) -> Stream[C]:
        """Open ``op`` (see :meth:`open`) as a stream of what ``parser(url)`` yields."""
        response, url = self.open(op, timeout, policy)
        return Stream(response, parser(url), op.method, url)

    def open(
        self, op: Operation[Any], timeout: TimeoutTypes | _Unset, policy: RetryPolicy
    ) -> tuple[httpx.Response, str]:
        """Send ``op`` until a 2xx response's headers arrive (for streams).

        The returned response is unread; the caller streams and closes it.
        Retries happen only before a success response starts.
        """
        client = self._get_sync_client()
        user_client = self._user_client is not None
        request, url = self._build_request(client, op, timeout, user_client)

        def attempt() -> RawResponse | httpx.Response:
            response = self._send_httpx(client, request, user_client)
            if response.is_success:
                return response
            return self._read(response, op.method, url)

        rid = request.headers.get("x-request-id")
        out = self._retry_loop(op, url, rid, policy, attempt)
        assert isinstance(out, httpx.Response)
        return out, url

    def _read(self, response: httpx.Response, method: str, url: str) -> RawResponse:
        # The bytes straight from the stream, decoded afterwards if need be (a failed
        # decode then leaves no half-run body iterator behind).
        try:
            stream = response.stream
            assert isinstance(stream, httpx.SyncByteStream)
            content = b"".join(stream)
        except httpx.TransportError as exc:
            raise connection_error(exc, method, url) from exc
        finally:
            response.close()
        status, headers = response.status_code, response.headers
        if "content-encoding" in headers:
            content = self._decoded(method, url, status, headers, content)
        return RawResponse(method, url, status, headers, content)

    def send(
        self,
        op: Operation[T],
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        retry: RetryPolicy | None = None,
    ) -> T:
        """Send ``op`` (with retries), read the whole answer and parse it.

        The first attempt on our transport runs inline; the retrying and httpx
        paths live in their own methods (no closures here).
        """
        policy = retry or self.retry_policy
        client = self._get_sync_client()
        user_client = self._user_client is not None
        transport = None if user_client else self._own_transport(client, op.path)
        if not isinstance(transport, SyncTransport):
            return self._send_request(op, timeout, policy, client, user_client)
        origin, head, body, timeouts, url, rid = self._raw_call(op, timeout)
        started = time.perf_counter()
        first: RawResponse | httpx.TransportError
        try:
            status, headers, content = transport.raw_request(origin, head, body, timeouts)
        except httpx.TransportError as exc:
            first = exc
        else:
            first = self._raw_response(op.method, url, status, headers, content)
            if 200 <= status < 300:
                self._log(op.method, url, rid, status, started, op.content)
                return self._attach_request_id(op.parse(first), _request_id(headers, rid))
        raw = self._raw_retry(
            op, policy, transport, (origin, head, body, timeouts, url, rid), (first, started)
        )
        return self._attach_request_id(op.parse(raw), (raw.headers, {"x-request-id": rid}))

    def _raw_retry(
        self,
        op: Operation[Any],
        policy: RetryPolicy,
        transport: SyncTransport,
        call: tuple[tuple[str, str, int], bytes, bytes, TimeoutTuple, str, str],
        first: tuple[RawResponse | httpx.TransportError, float],
    ) -> RawResponse:
        """The raw path after a failed or non-2xx first attempt: the retry policy's turn."""
        origin, head, body, timeouts, url, rid = call

        def attempt() -> RawResponse | httpx.Response:
            status, headers, content = transport.raw_request(origin, head, body, timeouts)
            return self._raw_response(op.method, url, status, headers, content)

        raw = self._retry_loop(op, url, rid, policy, attempt, first)
        assert isinstance(raw, RawResponse)
        return raw

    def _send_request(
        self,
        op: Operation[T],
        timeout: TimeoutTypes | _Unset,
        policy: RetryPolicy,
        client: httpx.Client,
        user_client: bool,
    ) -> T:
        """:meth:`send` through an httpx transport (a user's client, a mock, httpx's)."""
        request, url = self._build_request(client, op, timeout, user_client)

        def attempt() -> RawResponse | httpx.Response:
            response = self._send_httpx(client, request, user_client)
            return self._read(response, op.method, url)

        rid = request.headers.get("x-request-id")
        raw = self._retry_loop(op, url, rid, policy, attempt)
        assert isinstance(raw, RawResponse)
        return self._attach_request_id(op.parse(raw), (raw.headers, request.headers))

    def run(self, plan: Plan[T], timeout: float | None = None) -> T:
        """Drive a core plan with blocking I/O (``timeout``: for steps that set none)."""
        value: Any = None
        error: RLinfHTTPError | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                continue
            try:
                value = self.send(step.op, **self._call_options(step, timeout))
            except RLinfHTTPError as exc:
                error = exc

    def _call_options(self, step: Call, timeout: float | None = None) -> dict[str, Any]:
        bound = step.timeout if step.timeout is not None else timeout
        return {
            "timeout": NOT_GIVEN if bound is None else bound,
            "retry": self.retry_policy.with_max_retries(step.max_retries),
        }

    # -- async driver ---------------------------------------------------------------------

    async def _aretry_loop(
        self,
        op: Operation[Any],
        url: str,
        rid: str | None,
        policy: RetryPolicy,
        attempt: Callable[[], Awaitable[RawResponse | httpx.Response]],
        first: tuple[RawResponse | httpx.TransportError, float] | None = None,
    ) -> RawResponse | httpx.Response:
        """Async :meth:`_retry_loop`."""
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                if first is None:
                    out = await attempt()
                else:
                    (out, started), first = first, None  # type: ignore[assignment]
                    if isinstance(out, httpx.TransportError):
                        raise out
            except httpx.TransportError as exc:
                self._log(op.method, url, rid, type(exc).__name__, started, op.content)
                delay = retry_delay_after_error(policy, retries, exc, op.method, url)
            except httpx.DecodingError as exc:  # e.g. httpx.MockTransport decodes eagerly
                raise undecodable(op.method, url, 200, b"", exc) from exc
            else:
                status = out.status_code
                self._log(op.method, url, rid, status, started, op.content)
                if isinstance(out, httpx.Response) or 200 <= status < 300:
                    return out
                delay = retry_delay_after_status(policy, retries, out, rid)
            retries += 1
            logger.info("retrying %s %s in %.2f s (retry %d)", op.method, url, delay, retries)
            await anyio.sleep(delay)

    async def _asend_httpx(
        self, client: httpx.AsyncClient, request: httpx.Request, user_client: bool
    ) -> httpx.Response:
        with watch_arrival() as watch:
            try:
                if user_client:
                    return await client.send(request, stream=True)
                transport = client._transport_for_url(request.url)  # see _send_httpx
                response = await transport.handle_async_request(request)
            except httpx.TransportError as exc:
                mark_failure(exc, watch.arrived, False)
                raise
        response.request = request
        return response

    async def astream(
        self,
        op: Operation[Any],
        parser: Callable[[str], EventStreamParser[C]],
        timeout: TimeoutTypes | _Unset,
        policy: RetryPolicy,
    ) -> AsyncStream[C]:
        """Async :meth:`stream`."""
        response, url = await self.aopen(op, timeout, policy)
        return AsyncStream(response, parser(url), op.method, url)

    async def aopen(
        self, op: Operation[Any], timeout: TimeoutTypes | _Unset, policy: RetryPolicy
    ) -> tuple[httpx.Response, str]:
        """Async :meth:`open`."""
        client = self._get_async_client()
        user_client = self._user_async_client is not None and client is self._user_async_client
        request, url = self._build_request(client, op, timeout, user_client)

        async def attempt() -> RawResponse | httpx.Response:
            response = await self._asend_httpx(client, request, user_client)
            if response.is_success:
                return response
            return await self._aread(response, op.method, url)

        rid = request.headers.get("x-request-id")
        out = await self._aretry_loop(op, url, rid, policy, attempt)
        assert isinstance(out, httpx.Response)
        return out, url

    async def _aread(self, response: httpx.Response, method: str, url: str) -> RawResponse:
        try:  # see _read
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            content = b"".join([chunk async for chunk in stream])
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            if isinstance(exc, httpx.TransportError):
                raise connection_error(exc, method, url) from exc
            raise
        await response.aclose()
        status, headers = response.status_code, response.headers
        if "content-encoding" in headers:
            content = self._decoded(method, url, status, headers, content)
        return RawResponse(method, url, status, headers, content)

    async def asend(
        self,
        op: Operation[T],
        *,
        timeout: TimeoutTypes | _Unset = NOT_GIVEN,
        retry: RetryPolicy | None = None,
    ) -> T:
        """Async :meth:`send`.

        No closures here (a frame with cell variables allocates one cell object per
        captured name on every call, alive for the whole request): the retrying and
        httpx paths live in their own methods.
        """
        policy = retry or self.retry_policy
        client = self._get_async_client()
        user_client = self._user_async_client is not None and client is self._user_async_client
        transport = None if user_client else self._own_transport(client, op.path)
        raw_transport = raw_transport_of(transport)
        if raw_transport is None:
            return await self._asend_request(op, timeout, policy, client, user_client)
        origin, head, body, timeouts, url, rid = self._raw_call(op, timeout)
        # The first attempt inline: a success (the common case) returns without the
        # retry loop's coroutine (fewer objects per task in a big gather).
        started = time.perf_counter()
        first: RawResponse | httpx.TransportError
        try:
            status, headers, content = await raw_transport.raw_request(origin, head, body, timeouts)
        except httpx.TransportError as exc:
            first = exc
        else:
            first = self._raw_response(op.method, url, status, headers, content)
            if 200 <= status < 300:
                self._log(op.method, url, rid, status, started, op.content)
                return self._attach_request_id(op.parse(first), _request_id(headers, rid))
        raw = await self._araw_retry(
            op, policy, raw_transport, (origin, head, body, timeouts, url, rid), (first, started)
        )
        return self._attach_request_id(op.parse(raw), (raw.headers, {"x-request-id": rid}))

    async def _araw_retry(
        self,
        op: Operation[Any],
        policy: RetryPolicy,
        raw_transport: RawTransport,
        call: tuple[tuple[str, str, int], bytes, bytes, TimeoutTuple, str, str],
        first: tuple[RawResponse | httpx.TransportError, float],
    ) -> RawResponse:
        """The raw path after a failed or non-2xx first attempt: the retry policy's turn."""
        origin, head, body, timeouts, url, rid = call

        async def attempt() -> RawResponse | httpx.Response:
            status, headers, content = await raw_transport.raw_request(origin, head, body, timeouts)
            return self._raw_response(op.method, url, status, headers, content)

        raw = await self._aretry_loop(op, url, rid, policy, attempt, first)
        assert isinstance(raw, RawResponse)
        return raw

    async def _asend_request(
        self,
        op: Operation[T],
        timeout: TimeoutTypes | _Unset,
        policy: RetryPolicy,
        client: httpx.AsyncClient,
        user_client: bool,
    ) -> T:
        """:meth:`asend` through an httpx transport (a user's client, a mock, httpx's)."""
        request, url = self._build_request(client, op, timeout, user_client)

        async def attempt() -> RawResponse | httpx.Response:
            response = await self._asend_httpx(client, request, user_client)
            return await self._aread(response, op.method, url)

        rid = request.headers.get("x-request-id")
        raw = await self._aretry_loop(op, url, rid, policy, attempt)
        assert isinstance(raw, RawResponse)
        return self._attach_request_id(op.parse(raw), (raw.headers, request.headers))

    async def arun(self, plan: Plan[T], timeout: float | None = None) -> T:
        """Drive a core plan with async I/O (``timeout``: for steps that set none)."""
        value: Any = None
        error: RLinfHTTPError | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            if isinstance(step, Sleep):
                await anyio.sleep(step.seconds)
                continue
            try:
                value = await self.asend(step.op, **self._call_options(step, timeout))
            except RLinfHTTPError as exc:
                error = exc

    # -- fan-out --------------------------------------------------------------------------

    def policy(self, max_retries: int | None) -> RetryPolicy:
        """The client's retry policy with ``max_retries`` (``None``: its own count)."""
        return self.retry_policy.with_max_retries(max_retries)

    async def amap(
        self,
        ops: Sequence[Operation[Any]],
        concurrency: int,
        return_exceptions: bool,
        progress: Callable[[int, int], object] | None,
        max_retries: int | None,
        timeout: TimeoutTypes | _Unset,
    ) -> list[Any]:
        """Send ``ops`` with at most ``concurrency`` in flight; results in input order.

        On the first error (unless ``return_exceptions``) the other requests are
        cancelled and that error is raised as it is.
        """
        concurrency = check_concurrency(concurrency)
        retry = self.policy(max_retries)
        total = len(ops)
        results: list[Any] = [None] * total
        indices = iter(range(total))
        done = 0
        first_error: list[BaseException] = []

        async def worker(scope: anyio.CancelScope) -> None:
            nonlocal done
            for i in indices:
                try:
                    results[i] = await self.asend(ops[i], timeout=timeout, retry=retry)
                except Exception as exc:
                    if not return_exceptions:
                        if not first_error:
                            first_error.append(exc)
                        scope.cancel()
                        return
                    results[i] = exc
                done += 1
                if progress is not None:
                    progress(done, total)

        async with anyio.create_task_group() as tg:
            for _ in range(min(concurrency, total)):
                tg.start_soon(worker, tg.cancel_scope)
        if first_error:
            raise first_error[0]
        return results

    def map(
        self,
        ops: Sequence[Operation[Any]],
        concurrency: int,
        return_exceptions: bool,
        progress: Callable[[int, int], object] | None,
        max_retries: int | None,
        timeout: TimeoutTypes | _Unset,
    ) -> list[Any]:
        """:meth:`amap` from sync code (plain code or a worker thread).

        It runs on this driver's own event loop thread, with its own session, so
        consecutive calls reuse one loop and one connection pool and never touch
        the async session other code may be using; :meth:`close` stops it.
        """
        check_concurrency(concurrency)  # before any loop starts
        if _in_event_loop_thread():
            raise RuntimeError(
                "this sync method cannot run inside an event loop; await its async_ variant"
            )
        return self._fanout_loop().call(
            self.amap, ops, concurrency, return_exceptions, progress, max_retries, timeout
        )

    def _fanout_loop(self) -> _LoopThread:
        self._check_fork()
        loop = self._loop_thread
        if loop is None:
            with self._lock:
                loop = self._loop_thread
                if loop is None:
                    loop = _LoopThread(self._new_async_client, self._user_async_client)
                    weakref.finalize(self, loop.close)
                    self._loop_thread = loop
        return loop

    def as_completed(
        self,
        ops: Sequence[Operation[Any]] | Callable[[], Awaitable[Sequence[Operation[Any]]]],
        concurrency: int,
        return_exceptions: bool,
        max_retries: int | None,
        timeout: TimeoutTypes,
    ) -> AsCompleted[Any]:
        """``(index, result)`` of ``ops`` in completion order (see :class:`AsCompleted`;
        ``ops`` may be a coroutine function making them, awaited on entry)."""
        return AsCompleted(
            self,
            ops,
            check_concurrency(concurrency),
            return_exceptions,
            self.policy(max_retries),
            timeout,
        )

    # -- calls that never raise -----------------------------------------------------------

    def probe(self, op: Operation[bool], timeout: float) -> bool:
        """Send ``op`` once, bounded by ``timeout``: its result, ``False`` on any failure."""
        try:
            return self.send(op, timeout=timeout, retry=self.policy(0))
        except Exception:
            return False

    async def aprobe(self, op: Operation[bool], timeout: float) -> bool:
        """Async :meth:`probe` (a cancelled caller still sees its cancel)."""
        with anyio.move_on_after(timeout):
            try:
                return await self.asend(op, timeout=timeout, retry=self.policy(0))
            except Exception:
                pass
        return False


class _LoopThread:
    """An asyncio loop in a daemon thread, with one session, for sync fan-outs."""

    def __init__(
        self,
        new_session: Callable[[str], httpx.AsyncClient],
        user_session: httpx.AsyncClient | None,
    ) -> None:
        self._new_session = new_session
        self._user_session = user_session
        self._session: httpx.AsyncClient | None = None
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="rlinf-http-fanout", daemon=True
        )
        self._thread.start()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def main() -> T:
            if self._user_session is not None:
                session = self._user_session
            else:
                if self._session is None:
                    self._session = self._new_session("asyncio")
                session = self._session
            token = _session_override.set(session)
            try:
                return await fn(*args)
            finally:
                _session_override.reset(token)

        future = asyncio.run_coroutine_threadsafe(main(), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the requests
            raise

    def close(self) -> None:
        if self._loop.is_closed() or self._pid != os.getpid():
            return  # closed already, or the parent's (a forked child leaves it alone)
        if self._thread.is_alive():

            async def shutdown() -> None:
                session, self._session = self._session, None
                if session is not None:
                    await session.aclose()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
