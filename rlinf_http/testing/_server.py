"""A minimal HTTP/1.1 server for ASGI apps (asyncio Protocols + httptools).

Features: keep-alive, pipelined requests (answered in order), request bodies
with Content-Length or chunked transfer encoding, per-send flushing (so SSE
events are delivered one by one), ``Connection: close``, client disconnect
(the app's ``receive()`` returns ``http.disconnect`` and its task is
cancelled), and :class:`~rlinf_http.testing._app.DropConnection` (the
connection is reset without a response).

Also :class:`FakeServer` (run an app on a background thread) and
:func:`start_fake_worker` (run the fake server in a separate process).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httptools

from ._app import DropConnection, FakeConfig, FakeSGLangApp, Message, Receive, Scope, Send
from ._children import spawn
from ._faults import FaultSpec
from ._remote import add_faults, clear_faults, control_state, pending_faults

__all__ = ["FakeServer", "FakeWorkerProcess", "serve_asgi", "start_fake_worker"]

logger = logging.getLogger("rlinf_http.testing.server")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REASONS = {s.value: s.phrase.encode("latin-1") for s in http.HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
        _STATUS_LINES[status] = line
    return line


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _Cycle:
    """One request/response exchange on a connection."""

    __slots__ = (
        "body",
        "body_sent",
        "chunked",
        "complete",
        "disconnected",
        "head_done",
        "keep_alive",
        "proto",
        "resp_headers",
        "scope",
        "started",
        "status",
        "task",
    )

    def __init__(self, proto: _HttpProtocol, scope: Scope, body: bytes, keep_alive: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.body = body
        self.body_sent = False
        self.head_done = False
        self.keep_alive = keep_alive
        self.disconnected = asyncio.Event()
        self.started = False
        self.complete = False
        self.chunked = False
        self.status = 200
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.task: asyncio.Task[None] | None = None

    async def receive(self) -> Message:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not self.complete and not self.proto.closed:
            await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        proto = self.proto
        if proto.closed or self.complete:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            self.resp_headers = list(message.get("headers", ()))
            return
        if kind != "http.response.body":
            return
        if not self.started:
            raise RuntimeError("http.response.body sent before http.response.start")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        transport = proto.transport
        assert transport is not None
        if not self.head_done:
            self._write_head(body, more)
        elif self.chunked:
            if body:
                transport.write(b"%x\r\n%s\r\n" % (len(body), body))
            if not more:
                transport.write(b"0\r\n\r\n")
        elif body:
            transport.write(body)
        if not more:
            self.complete = True
            if not self.keep_alive:
                transport.close()
        elif proto.write_paused:
            await proto.drain()

    def _write_head(self, body: bytes, more: bool) -> None:
        parts = [_status_line(self.status)]
        has_length = False
        for name, value in self.resp_headers:
            lname = name.lower()
            if lname == b"content-length":
                has_length = True  # written once, below
                continue
            if lname == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue
            elif lname == b"transfer-encoding":
                continue
            parts.append(b"%s: %s\r\n" % (name, value))
        if not has_length:
            if more:
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                parts.append(b"content-length: %d\r\n" % len(body))
        else:
            for name, value in self.resp_headers:
                if name.lower() == b"content-length":
                    parts.append(b"content-length: %s\r\n" % value)
                    break
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if self.chunked:
            if body:
                parts.append(b"%x\r\n%s\r\n" % (len(body), body))
            if not more:
                parts.append(b"0\r\n\r\n")
        else:
            parts.append(body)
        self.resp_headers = []
        self.head_done = True
        assert self.proto.transport is not None
        self.proto.transport.write(b"".join(parts))


class _HttpProtocol(asyncio.Protocol):
    def __init__(self, app: ASGIApp, server: _ServerState) -> None:
        self.app = app
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.queue: deque[_Cycle] = deque()
        self.current: _Cycle | None = None
        # parser state
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int] | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.add(self)
        self.server.total_connections += 1
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if peer else None
        self.sockname = (str(sock[0]), int(sock[1])) if sock else None
        s = transport.get_extra_info("socket")
        if s is not None and s.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for cycle in (self.current, *self.queue):
            if cycle is None:
                continue
            cycle.disconnected.set()
            if cycle.task is not None and not cycle.task.done() and not cycle.complete:
                cycle.task.cancel()
        self.queue.clear()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._simple_error(b"400 Bad Request", b"upgrade not supported")
        except httptools.HttpParserError:
            self._simple_error(b"400 Bad Request", b"invalid HTTP request")

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    async def drain(self) -> None:
        if not self.write_paused or self.closed:
            return
        self._drain_waiter = self.loop.create_future()
        await self._drain_waiter

    def _simple_error(self, status: bytes, msg: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(
                b"HTTP/1.1 %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (status, len(msg), msg)
            )
            self.transport.close()
        self.closed = True

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self._url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            from urllib.parse import unquote

            path = unquote(path)
        version = self.parser.get_http_version()
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "root_path": "",
            "headers": self._headers,
            "client": self.client,
            "server": self.sockname,
        }
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        cycle = _Cycle(self, scope, body, self.parser.should_keep_alive())
        if self.current is None:
            self._start(cycle)
        else:
            self.queue.append(cycle)

    def _start(self, cycle: _Cycle) -> None:
        self.current = cycle
        cycle.task = self.loop.create_task(self._run(cycle))

    async def _run(self, cycle: _Cycle) -> None:
        drop = False
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except DropConnection as e:
            if e.graceful and self.transport is not None and not self.closed:
                self.transport.close()
                return
            drop = True
        except asyncio.CancelledError:
            if not self.closed and not self.server.closing:
                drop = True  # cancelled for another reason: don't leave a half response
            else:
                return
        except Exception:
            logger.exception("ASGI app raised")
            if not cycle.started and not self.closed:
                body = b"Internal Server Error"
                await cycle.send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await cycle.send({"type": "http.response.body", "body": body})
            else:
                drop = True
        if self.closed:
            return
        if drop or not cycle.complete:
            self.abort()
            return
        self.current = None
        if not cycle.keep_alive:
            return
        if self.queue:
            self._start(self.queue.popleft())

    def abort(self) -> None:
        """Reset the connection (RST where the platform allows)."""
        transport = self.transport
        if transport is None or self.closed:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


class _ServerState:
    def __init__(self) -> None:
        self.connections: set[_HttpProtocol] = set()
        self.closing = False
        self.total_connections = 0


class _AsgiServer:
    """Owns the listening socket and the live connections."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.state = _ServerState()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _HttpProtocol(self.app, self.state),
            host=self.host,
            port=self.port,
            reuse_address=True,
            backlog=2048,
        )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self.port

    async def close(self) -> None:
        self.state.closing = True
        if self._server is not None:
            self._server.close()
        tasks = []
        for conn in list(self.state.connections):
            for cycle in (conn.current, *conn.queue):
                if cycle is not None and cycle.task is not None and not cycle.task.done():
                    tasks.append(cycle.task)
            if conn.transport is not None:
                conn.transport.abort()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)


async def serve_asgi(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ready: Callable[[int], object] | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled (asyncio only).

    ``port=0`` picks a free port; ``ready(port)`` is called with the bound
    port once the socket is listening. On cancellation all connections are
    closed and running app tasks are cancelled.
    """
    server = _AsgiServer(app, host, port)
    bound = await server.start()
    try:
        if ready is not None:
            ready(bound)
        await asyncio.Event().wait()
    finally:
        await server.close()


class FakeServer:
    """Run an ASGI app (by default a :class:`FakeSGLangApp`) on real sockets.

    The server runs on a daemon thread with its own asyncio loop::

        with FakeServer(config=FakeConfig(ttft_s=0.01)) as srv:
            httpx.get(srv.url + "/health")
            srv.app.faults.add(FaultSpec(path="/generate", status=503))

    ``port=0`` picks a free port. :meth:`stop` closes every connection and
    joins the thread.
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        config: FakeConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout: float = 10.0,
    ) -> None:
        if app is not None and config is not None:
            raise ValueError("pass either app or config, not both")
        self.app: Any = app if app is not None else FakeSGLangApp(config)
        self.host = host
        self.port = port
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: _AsgiServer | None = None

    @property
    def connections_opened(self) -> int:
        """How many TCP connections the server has accepted so far."""
        return self._server.state.total_connections if self._server is not None else 0

    @property
    def open_connections(self) -> int:
        """How many TCP connections are currently open."""
        return len(self._server.state.connections) if self._server is not None else 0

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        return f"http://{_format_host(self.host)}:{self.port}"

    def start(self) -> FakeServer:
        """Start serving; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeServer already started")
        self._thread = threading.Thread(target=self._thread_main, name="FakeServer", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise RuntimeError("FakeServer did not start in time")
        if self._error is not None:
            self._thread.join(1)
            self._thread = None
            raise RuntimeError(f"FakeServer failed to start: {self._error!r}") from self._error
        return self

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # pragma: no cover - reported via start()
            self._error = e
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        server = _AsgiServer(self.app, self.host, self.port)
        self._server = server
        try:
            self.port = await server.start()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await server.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close all connections, stop the loop and join the thread."""
        thread = self._thread
        if thread is None:
            return
        loop = self._loop
        stop_event = self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# separate process


def _config_args(config: FakeConfig) -> list[str]:
    args = [
        "--ttft-ms",
        repr(config.ttft_s * 1000.0),
        "--itl-ms",
        repr(config.itl_s * 1000.0),
        "--model-name",
        config.served_model_name,
        "--model-path",
        config.model_path,
        "--stream-interval",
        str(config.stream_interval),
        "--default-max-new-tokens",
        str(config.default_max_new_tokens),
    ]
    if config.tokenizer_path and config.tokenizer_path != config.model_path:
        args += ["--tokenizer-path", config.tokenizer_path]
    if config.incremental_streaming:
        args.append("--incremental")
    if config.legacy_info_routes_only:
        args.append("--legacy-info-routes")
    if config.eos_after is not None:
        args += ["--eos-after", str(config.eos_after)]
    args += _control_config_args(config)
    return args


def _control_config_args(config: FakeConfig) -> list[str]:
    """CLI flags for the control-plane and data-plane knobs that differ from the defaults."""
    default = FakeConfig()
    args: list[str] = []
    for flag, name in (
        ("--weight-version", "weight_version"),
        ("--load-format", "load_format"),
        ("--worker-id", "worker_id"),
        ("--embedding-dim", "embedding_dim"),
        ("--max-running-requests", "max_running_requests"),
    ):
        value = getattr(config, name)
        if value != getattr(default, name):
            args += [flag, str(value)]
    if config.weight_update_s:
        args += ["--weight-update-ms", repr(config.weight_update_s * 1000.0)]
    if not config.enable_lora:
        args.append("--disable-lora")
    return args


class FakeWorkerProcess:
    """A fake SGLang server running in a child process (see :func:`start_fake_worker`).

    The child exits when its stdin reaches EOF (i.e. when this process dies or
    calls :meth:`stop`) and also polls the parent's pid, so it never outlives us;
    on Linux it is also killed at once when this process dies (a parent-death
    signal, even on ``kill -9``).
    """

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log_path: str) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    @property
    def pid(self) -> int:
        """Process id of the worker."""
        return self.proc.pid

    @property
    def port(self) -> int:
        """TCP port the worker listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def add_faults(self, *specs: FaultSpec) -> int:
        """Queue faults in the worker (``POST /_fake/faults``); returns how many are pending."""
        return add_faults(self.url, *specs)

    def clear_faults(self) -> int:
        """Remove the worker's pending faults; returns how many were removed."""
        return clear_faults(self.url)

    def pending_faults(self) -> list[FaultSpec]:
        """The faults still pending in the worker."""
        return pending_faults(self.url)

    def control_state(self) -> dict[str, Any]:
        """The worker's control-plane state (``GET /_fake/state``): paused mode,
        weight version, model path, weight-update groups and session, released memory."""
        return control_state(self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the worker (SIGTERM, then SIGKILL) and reap it."""
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def __enter__(self) -> FakeWorkerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()


def _read_tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _wait_http_ok(url: str, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    import httpx

    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return False
            try:
                if client.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    return False


def start_fake_worker(
    host: str = "127.0.0.1",
    port: int = 0,
    config: FakeConfig | None = None,
    *,
    extra_args: Iterable[str] = (),
    ready_timeout: float = 30.0,
) -> FakeWorkerProcess:
    """Start ``python -m rlinf_http.testing serve`` in a child process.

    Waits until ``GET /health`` answers 200 and returns a
    :class:`FakeWorkerProcess` (usable as a context manager).
    """
    cfg = config if config is not None else FakeConfig()
    fd, log_path = tempfile.mkstemp(prefix="rlinf-fake-worker-", suffix=".log")
    os.close(fd)
    cmd = [
        sys.executable,
        "-m",
        "rlinf_http.testing",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--parent-pid",
        str(os.getpid()),
        "--exit-on-stdin-eof",
        *_config_args(cfg),
        *extra_args,
    ]
    env = dict(os.environ)
    for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(k, None)
    with open(log_path, "ab") as log:
        proc = spawn(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + ready_timeout
    url = ""
    try:
        url = _read_first_line(proc, deadline)
        if not url or not _wait_http_ok(url + "/health", deadline, proc):
            raise RuntimeError(
                f"fake worker did not become ready (exit code {proc.poll()}); "
                f"log tail:\n{_read_tail(log_path)}"
            )
    except BaseException:
        FakeWorkerProcess(proc, url or "http://invalid:0", log_path).stop()
        raise
    return FakeWorkerProcess(proc, url, log_path)


def _read_first_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    assert proc.stdout is not None
    result: list[bytes] = []

    def reader() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()))
    if not result:
        return ""
    return result[0].decode().strip()


def run_worker_main(
    host: str,
    port: int,
    config: FakeConfig,
    *,
    parent_pid: int | None = None,
    exit_on_stdin_eof: bool = False,
) -> int | None:
    """Entry point of the ``serve`` CLI command: serve until killed.

    Returns the signal that stopped the server (``SIGINT``/``SIGTERM``), or None
    when it stopped because its stdin closed or its parent died.
    """
    received: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(sig: int) -> None:
            received.append(sig)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal, sig)

        def on_ready(bound: int) -> None:
            print(f"http://{_format_host(host)}:{bound}", flush=True)

        if exit_on_stdin_eof:

            def watch_stdin() -> None:
                with contextlib.suppress(Exception):
                    while sys.stdin.buffer.read(4096):
                        pass
                loop.call_soon_threadsafe(stop.set)

            threading.Thread(target=watch_stdin, daemon=True).start()

        async def watch_parent() -> None:
            assert parent_pid is not None
            while True:
                await asyncio.sleep(1.0)
                if os.getppid() != parent_pid:
                    stop.set()
                    return

        app = FakeSGLangApp(config)
        serve = asyncio.create_task(serve_asgi(app, host, port, ready=on_ready))
        watcher = asyncio.create_task(watch_parent()) if parent_pid else None
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([serve, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in (serve, stopper, watcher):
            if t is not None:
                t.cancel()
        results = await asyncio.gather(
            serve, stopper, *([watcher] if watcher else []), return_exceptions=True
        )
        if isinstance(results[0], Exception):
            raise results[0]

    asyncio.run(main())
    return received[0] if received else None
