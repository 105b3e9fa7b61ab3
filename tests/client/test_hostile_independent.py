"""An independent hostile-server suite: every call path against servers that misbehave.

The server here is written from scratch for this file (a blocking-socket server, one
thread per connection), independent of the other fault tests. Each scenario scripts
the bytes answering the first request(s); later requests get a good answer, so the
test also checks that the pooled connection is not poisoned.

Invariants checked for every path (sync and async ``/generate``, their streams,
``chat_completion``, the control calls and a ``Fleet``), on both transports and, for
async, on asyncio and trio:

- a failure is an :class:`rlinf_http.RLinfHTTPError` (never a foreign type);
- the request reaches the wire at most ``max_retries + 1`` times, and exactly once
  when any byte of a response arrived;
- nothing hangs: sync calls run in a thread joined with a bound, async ones under
  ``anyio.fail_after`` (a regression fails, it does not hang the suite);
- a good request on the same client succeeds afterwards.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from rlinf_http import (
    APIConnectionError,
    APITimeoutError,
    Fleet,
    FleetError,
    InferenceHTTPClient,
    InvalidRequestError,
    RetryPolicy,
    RLinfHTTPError,
    ServiceUnavailableError,
    WeightUpdateResult,
)

#: Bound on one call (or one scenario) in seconds; only reached by a regression.
BOUND = 20.0
#: Retries allowed by the clients of this file (fast, so retry scenarios stay quick).
RETRIES = 1
FAST = RetryPolicy(
    max_retries=RETRIES, initial_delay=0.001, max_delay=0.005, jitter=0.0, max_retry_after=0.02
)
#: our default (rlinf-http's transport; httpx's under trio) and httpx's
TRANSPORTS = ["auto", "httpx"]

# -- the server ------------------------------------------------------------------------

CLOSE = "close"  # orderly close (FIN)
RESET = "reset"  # abortive close (RST)
HANG = "hang"  # say nothing more until the server stops


@dataclass
class Request:
    method: str
    path: str
    body: bytes


Script = Callable[[int, Request], list[bytes | str]]


def _read_request(conn: socket.socket, buf: bytearray) -> Request | None:
    """One request from ``conn`` (``buf`` keeps bytes read past it); ``None`` at EOF."""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[: end + 4]
    method, target, _ = head[0].split(" ", 2)
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(buf) < length:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    body = bytes(buf[:length])
    del buf[:length]
    return Request(method, target, body)


class HostileServer:
    """Loopback HTTP/1.1 server answering each request with the steps ``script`` returns.

    ``script(n, request)`` gets the 0-based index of the request among all the
    server received; the steps are raw bytes to send, :data:`CLOSE`,
    :data:`RESET` or :data:`HANG`. After the steps the connection stays open for
    the next request (keep-alive) unless it was closed.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        #: set by a test once the faulty call is over: every later request is answered well
        self.healed = threading.Event()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            with self._lock:
                self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self._stop.is_set():
                req = _read_request(conn, buf)
                if req is None:
                    return
                with self._lock:
                    n = len(self.requests)
                    self.requests.append(req)
                steps = good(req) if self.healed.is_set() else self.script(n, req)
                for step in steps:
                    if step == CLOSE:
                        conn.close()
                        return
                    if step == RESET:
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        conn.close()
                        return
                    if step == HANG:
                        self._stop.wait()
                        return
                    assert isinstance(step, bytes)
                    conn.sendall(step)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        for thread in threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def hostile(script: Script) -> Iterator[HostileServer]:
    server = HostileServer(script)
    try:
        yield server
    finally:
        server.close()


# -- good answers ----------------------------------------------------------------------


def _generate_json(text: str = "ok") -> dict[str, Any]:
    return {
        "text": text,
        "output_ids": [1, 2],
        "meta_info": {
            "id": "r",
            "finish_reason": {"type": "length", "length": 2},
            "prompt_tokens": 1,
            "completion_tokens": 2,
        },
    }


def _chat_json() -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _sse(events: list[str]) -> bytes:
    return b"".join(f"data: {e}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


def good_body(req: Request) -> tuple[str, bytes]:
    """The content type and body a healthy sglang would answer ``req`` with."""
    payload = json.loads(req.body or b"{}")
    stream = isinstance(payload, dict) and payload.get("stream") is True
    if req.path == "/generate":
        if stream:
            return "text/event-stream", _sse([json.dumps(_generate_json())])
        return "application/json", json.dumps(_generate_json()).encode()
    if req.path == "/v1/chat/completions":
        if stream:
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
            }
            return "text/event-stream", _sse([json.dumps(chunk)])
        return "application/json", json.dumps(_chat_json()).encode()
    if req.path == "/update_weights_from_disk":
        return "application/json", b'{"success": true, "message": "loaded"}'
    if req.path in ("/pause_generation", "/continue_generation"):
        return "application/json", b"{}"
    if req.path == "/health":
        return "text/plain", b"healthy"
    return "application/json", b"{}"


def response(
    status: str, content_type: str, body: bytes, extra: str = "", length: int | None = None
) -> bytes:
    size = len(body) if length is None else length
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n"
    return (head + extra + "\r\n").encode() + body


def good(req: Request) -> list[bytes | str]:
    content_type, body = good_body(req)
    return [response("200 OK", content_type, body)]


# -- the faults ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """The answer to the faulty requests and what must follow.

    ``steps(req)`` answers every request until the test heals the server.
    ``started``: a response byte arrives, so the request is sent exactly once.
    ``may_succeed``: a tolerant client may accept the answer (else the call must
    fail). ``text_body``: the answer is a complete 200 whose body is not JSON;
    the control calls accept text bodies (sglang answers some with text).
    """

    name: str
    steps: Callable[[Request], list[bytes | str]]
    started: bool = True
    may_succeed: bool = False
    stream_only: bool = False
    text_body: bool = False


def _head_cut(req: Request) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: applica"


def _short_body(req: Request) -> list[bytes | str]:
    content_type, body = good_body(req)
    return [response("200 OK", content_type, body[: len(body) // 2], length=len(body)), CLOSE]


def _chunked_error(req: Request) -> list[bytes | str]:
    content_type, body = good_body(req)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    # a valid first chunk, then a chunk size that is not hex
    return [head.encode() + f"{4:x}\r\n".encode() + body[:4] + b"\r\nzz;\r\n" + body[4:], CLOSE]


def _huge_headers(req: Request) -> list[bytes | str]:
    content_type, body = good_body(req)
    extra = "".join(f"X-Pad-{i}: {'v' * 8000}\r\n" for i in range(128))  # 1 MB of headers
    return [response("200 OK", content_type, body, extra=extra)]


def _gzip_lie(req: Request) -> list[bytes | str]:
    content_type, body = good_body(req)
    return [response("200 OK", content_type, body, extra="Content-Encoding: gzip\r\n")]


def _gzip_truncated(req: Request) -> list[bytes | str]:
    content_type, body = good_body(req)
    packed = gzip.compress(body)
    packed = packed[: len(packed) // 2]
    return [response("200 OK", content_type, packed, extra="Content-Encoding: gzip\r\n")]


def _retry_superscript(req: Request) -> list[bytes | str]:
    """An SSE ``retry:`` field whose value is a non-ASCII digit (``int('²')`` raises)."""
    content_type, body = good_body(req)
    return [response("200 OK", content_type, b"retry: \xc2\xb2\n\n" + body)]


def _with_length(req: Request, length: str) -> bytes:
    content_type, body = good_body(req)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    return head.encode() + body


def _huge_chunk(req: Request) -> list[bytes | str]:
    content_type, _ = good_body(req)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    return [head.encode() + b"ffffffffffffffffffff\r\n{", CLOSE]


def _http10(req: Request) -> list[bytes | str]:
    """A valid HTTP/1.0 answer whose body ends with the connection."""
    content_type, body = good_body(req)
    return [f"HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\n\r\n".encode() + body, CLOSE]


def _brackets(status: str, closed: bool = False) -> Callable[[Request], list[bytes | str]]:
    def steps(req: Request) -> list[bytes | str]:
        content_type, _ = good_body(req)
        body = b"[" * 5000 + (b"]" * 5000 if closed else b"")
        if content_type == "text/event-stream" and status.startswith("200"):
            body = b"data: " + body + b"\n\n"
        return [response(status, content_type, body)]

    return steps


def _nested_error_event(req: Request) -> list[bytes | str]:
    """An in-stream error event nested 5,000 deep (valid JSON, deeper than the recursion limit)."""
    nested = b"[" * 5000 + b"]" * 5000
    return [response("200 OK", "text/event-stream", b'data: {"error": ' + nested + b"}\n\n")]


def _retry_after(value: str) -> Callable[[Request], list[bytes | str]]:
    def steps(req: Request) -> list[bytes | str]:
        body = b'{"error": "overloaded"}'
        return [
            response(
                "503 Service Unavailable", "application/json", body, f"Retry-After: {value}\r\n"
            )
        ]

    return steps


FAULTS = [
    Fault("garbage-status-line", lambda r: [b"HTTP/1.1 abc garbage\r\n\r\n", CLOSE]),
    Fault("not-http", lambda r: [b"\x00\xff\x16\x03 hello there\r\n\r\n", CLOSE]),
    Fault("head-cut-reset", lambda r: [_head_cut(r), RESET]),
    Fault("head-cut-close", lambda r: [_head_cut(r), CLOSE]),
    Fault("short-body-close", _short_body),
    Fault("chunked-framing", _chunked_error),
    Fault("huge-headers", _huge_headers, may_succeed=True),
    Fault("gzip-lie", _gzip_lie),
    Fault("gzip-truncated", _gzip_truncated, text_body=True),
    Fault("retry-superscript", _retry_superscript, may_succeed=True, stream_only=True),
    Fault("brackets-400", _brackets("400 Bad Request")),
    Fault("brackets-200", _brackets("200 OK"), text_body=True),
    Fault("nested-400", _brackets("400 Bad Request", closed=True)),
    Fault("nested-200", _brackets("200 OK", closed=True), text_body=True),
    Fault("nested-error-event", _nested_error_event, stream_only=True),
    Fault("negative-content-length", lambda r: [_with_length(r, "-5"), CLOSE]),
    Fault("two-content-lengths", lambda r: [_with_length(r, "2\r\nContent-Length: 9"), CLOSE]),
    Fault("status-999", lambda r: [response("999 Odd", "application/json", b"{}")]),
    Fault("huge-chunk-size", _huge_chunk),
    Fault(
        "informational-then-200",
        lambda r: [b"HTTP/1.1 100 Continue\r\n\r\n", *good(r)],
        may_succeed=True,
    ),
    Fault("http10-close-delimited", _http10, may_succeed=True),
    Fault("reset-before-answer", lambda r: [RESET], started=False),
    Fault("close-before-answer", lambda r: [CLOSE], started=False),
]
#: 503s with odd ``Retry-After`` values: retried by the policy, then a typed error.
RETRY_AFTER = [
    Fault(f"retry-after-{name}", _retry_after(value), started=False)
    for name, value in [
        ("huge", "999999999999"),
        ("negative", "-30"),
        ("http-date", "Wed, 21 Oct 2099 07:28:00 GMT"),
        ("past-date", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("superscript", "\xb2"),
        ("nan", "nan"),
    ]
]


def scripted(fault: Fault) -> Script:
    def script(n: int, req: Request) -> list[bytes | str]:
        return fault.steps(req)

    return script


# -- the call paths --------------------------------------------------------------------

SyncCall = Callable[[InferenceHTTPClient], object]
AsyncCall = Callable[[InferenceHTTPClient], Awaitable[object]]
MESSAGES = [{"role": "user", "content": "hi"}]


def _sync_stream(client: InferenceHTTPClient) -> object:
    with client.generate("p", stream=True) as stream:
        return list(stream)


def _sync_chat_stream(client: InferenceHTTPClient) -> object:
    with client.chat_completion(messages=MESSAGES, model="m", stream=True) as stream:
        return list(stream)


async def _async_stream(client: InferenceHTTPClient) -> object:
    stream = await client.async_generate("p", stream=True)
    async with stream:
        return [c async for c in stream]


async def _async_chat_stream(client: InferenceHTTPClient) -> object:
    stream = await client.async_chat_completion(messages=MESSAGES, model="m", stream=True)
    async with stream:
        return [c async for c in stream]


#: name -> (call, the path it sends to, whether it streams, whether it is a control call:
#: those accept text bodies; weight updates are never resent)
SYNC_PATHS: dict[str, tuple[SyncCall, str, bool, bool]] = {
    "generate": (lambda c: c.generate("p"), "/generate", False, False),
    "stream": (_sync_stream, "/generate", True, False),
    "chat": (
        lambda c: c.chat_completion(messages=MESSAGES, model="m"),
        "/v1/chat/completions",
        False,
        False,
    ),
    "chat-stream": (_sync_chat_stream, "/v1/chat/completions", True, False),
    "disk": (
        lambda c: c.update_weights_from_disk("/ckpt"),
        "/update_weights_from_disk",
        False,
        True,
    ),
    "pause": (lambda c: c.pause_generation("retract"), "/pause_generation", False, True),
}
ASYNC_PATHS: dict[str, tuple[AsyncCall, str, bool, bool]] = {
    "generate": (lambda c: c.async_generate("p"), "/generate", False, False),
    "stream": (_async_stream, "/generate", True, False),
    "chat": (
        lambda c: c.async_chat_completion(messages=MESSAGES, model="m"),
        "/v1/chat/completions",
        False,
        False,
    ),
    "chat-stream": (_async_chat_stream, "/v1/chat/completions", True, False),
    "disk": (
        lambda c: c.async_update_weights_from_disk("/ckpt"),
        "/update_weights_from_disk",
        False,
        True,
    ),
    "pause": (lambda c: c.async_pause_generation("retract"), "/pause_generation", False, True),
}


def run_sync(call: Callable[[], object], bound: float = BOUND) -> object:
    """``call()`` in a thread joined with ``bound``: returns its result or its exception."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(call())
        except BaseException as exc:  # collected for the assertions
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"the call did not end within {bound} s"
    return box[0]


async def run_async(call: Callable[[], Awaitable[object]], bound: float = BOUND) -> object:
    with anyio.fail_after(bound):
        try:
            return await call()
        except Exception as exc:  # anyio's own TimeoutError is raised outside this block
            return exc


def client_for(server: HostileServer, transport: str) -> InferenceHTTPClient:
    return InferenceHTTPClient(server.url, retry_policy=FAST, transport=transport)  # type: ignore[arg-type]


def check_outcome(fault: Fault, outcome: object, takes_text: bool) -> None:
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, RLinfHTTPError), (
            f"{fault.name}: foreign exception {type(outcome).__name__}: {outcome!r}"
        )
    else:
        allowed = fault.may_succeed or (fault.text_body and takes_text)
        assert allowed, f"{fault.name}: the call succeeded with {outcome!r}"


def expected_sends(fault: Fault, resent_never: bool) -> tuple[int, int]:
    """The (lowest, highest) number of times the faulty request may reach the wire."""
    if fault.started or resent_never:
        return 1, 1
    return 1, RETRIES + 1


def _cases(path: str, streaming: bool) -> list[Fault]:
    # Retry-After is read by one policy for every call: two paths cover it (data, control).
    retry_after = RETRY_AFTER if path in ("generate", "pause") else []
    return [f for f in FAULTS + retry_after if streaming or not f.stream_only]


SYNC_CASES = [
    pytest.param(path, fault, id=f"{path}-{fault.name}")
    for path, (_, _, streaming, _) in SYNC_PATHS.items()
    for fault in _cases(path, streaming)
]
ASYNC_CASES = [
    pytest.param(path, fault, id=f"{path}-{fault.name}")
    for path, (_, _, streaming, _) in ASYNC_PATHS.items()
    for fault in _cases(path, streaming)
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("path", "fault"), SYNC_CASES)
def test_sync_hostile(path: str, fault: Fault, transport: str) -> None:
    call, wire_path, _, control = SYNC_PATHS[path]
    with hostile(scripted(fault)) as server, client_for(server, transport) as client:
        outcome = run_sync(lambda: call(client))
        server.healed.set()
        check_outcome(fault, outcome, control)
        low, high = expected_sends(fault, wire_path == "/update_weights_from_disk")
        assert low <= server.count(wire_path) <= high, (fault.name, server.count(wire_path))
        sent = server.count()
        # the pooled connection is not poisoned: the next call is answered well
        after = run_sync(lambda: call(client))
        assert not isinstance(after, BaseException), repr(after)
        assert server.count() == sent + 1


#: (backend, transport): under trio the default transport is httpx's, so one run covers both
ASYNC_RUNS = [("asyncio", "auto"), ("asyncio", "httpx"), ("trio", "auto")]


@pytest.mark.anyio
@pytest.mark.parametrize(("anyio_backend", "transport"), ASYNC_RUNS)
@pytest.mark.parametrize(("path", "fault"), ASYNC_CASES)
async def test_async_hostile(anyio_backend: str, path: str, fault: Fault, transport: str) -> None:
    call, wire_path, _, control = ASYNC_PATHS[path]
    with hostile(scripted(fault)) as server:
        async with client_for(server, transport) as client:
            outcome = await run_async(lambda: call(client))
            server.healed.set()
            check_outcome(fault, outcome, control)
            low, high = expected_sends(fault, wire_path == "/update_weights_from_disk")
            assert low <= server.count(wire_path) <= high, (fault.name, server.count(wire_path))
            sent = server.count()
            after = await run_async(lambda: call(client))
            assert not isinstance(after, BaseException), repr(after)
            assert server.count() == sent + 1


def test_retry_after_statuses_are_typed() -> None:
    """The 503s above end as :class:`ServiceUnavailableError` after the allowed retries."""
    fault = RETRY_AFTER[0]
    with hostile(scripted(fault)) as server, client_for(server, "rlinf") as client:
        outcome = run_sync(lambda: client.generate("p"))
        assert isinstance(outcome, ServiceUnavailableError)
        assert server.count("/generate") == RETRIES + 1


# -- a server that never answers: the caller's deadline ends the call ---------------------


def _hang_once(n: int, req: Request) -> list[bytes | str]:
    return [HANG]


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", list(ASYNC_PATHS))
async def test_async_never_answers_deadline(anyio_backend: str, path: str, transport: str) -> None:
    call, wire_path, _, _ = ASYNC_PATHS[path]
    with hostile(_hang_once) as server:
        async with client_for(server, transport) as client:
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.2):
                    await call(client)
            assert server.count(wire_path) == 1  # the accepted request was not resent
            server.healed.set()
            after = await run_async(lambda: call(client))
            assert not isinstance(after, BaseException), repr(after)
            assert server.count(wire_path) == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", ["generate", "stream", "chat"])
def test_sync_never_answers_call_timeout(path: str, transport: str) -> None:
    calls: dict[str, SyncCall] = {
        "generate": lambda c: c.generate("p", timeout=0.2),
        "stream": lambda c: list(c.generate("p", stream=True, timeout=0.2)),
        "chat": lambda c: c.chat_completion(messages=MESSAGES, model="m", timeout=0.2),
    }
    call = calls[path]
    with hostile(_hang_once) as server, client_for(server, transport) as client:
        outcome = run_sync(lambda: call(client))
        assert isinstance(outcome, APITimeoutError), repr(outcome)
        assert server.count() == 1  # a read timeout is never resent
        server.healed.set()
        after = run_sync(lambda: call(client))
        assert not isinstance(after, BaseException), repr(after)
        assert server.count() == 2


# -- keep-alive connections closed by the server right after each response ----------------


def _close_after_each(n: int, req: Request) -> list[bytes | str]:
    return [*good(req), CLOSE]  # no "Connection: close": the client believes it may reuse it


def check_stale(outcomes: list[object], wire_path: str, server: HostileServer) -> None:
    """Calls that may be retried all succeed (a dead pooled connection is retried on a
    fresh one); a weight update, never resent once written, may fail, typed. The
    server answered every request it read."""
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if wire_path != "/update_weights_from_disk":
        assert errors == []
    assert all(isinstance(e, APIConnectionError) for e in errors), errors
    assert server.count(wire_path) == len(outcomes) - len(errors)
    assert len(errors) < len(outcomes)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", list(SYNC_PATHS))
def test_sync_stale_keepalive(path: str, transport: str) -> None:
    call, wire_path, _, _ = SYNC_PATHS[path]
    with hostile(_close_after_each) as server, client_for(server, transport) as client:
        outcomes = [run_sync(lambda: call(client)) for _ in range(30)]
    check_stale(outcomes, wire_path, server)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("path", list(ASYNC_PATHS))
async def test_async_stale_keepalive(anyio_backend: str, path: str, transport: str) -> None:
    call, wire_path, _, _ = ASYNC_PATHS[path]
    with hostile(_close_after_each) as server:
        async with client_for(server, transport) as client:
            outcomes = [await run_async(lambda: call(client)) for _ in range(30)]
    check_stale(outcomes, wire_path, server)


# -- 100 requests, 1 % faults -------------------------------------------------------------

#: wire request 41 is reset before any answer (retried); wire request 77 gets half a head
ONE_PERCENT = {41: [RESET], 77: [b"HTTP/1.1 200 OK\r\nContent-Le", CLOSE]}


def _one_percent(n: int, req: Request) -> list[bytes | str]:
    return ONE_PERCENT.get(n % 100) or good(req)


def _tally(outcomes: list[object]) -> tuple[int, list[BaseException]]:
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    return len(outcomes) - len(errors), errors


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_hundred_requests_one_percent_faults(transport: str) -> None:
    with hostile(_one_percent) as server, client_for(server, transport) as client:
        outcomes = [run_sync(lambda: client.generate("p")) for _ in range(100)]
        ok, errors = _tally(outcomes)
        assert all(isinstance(e, RLinfHTTPError) for e in errors), errors
        # the reset one was retried, the one whose answer had begun was not
        assert (ok, len(errors), server.count("/generate")) == (99, 1, 101)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_hundred_requests_one_percent_faults(
    anyio_backend: str, transport: str
) -> None:
    with hostile(_one_percent) as server:
        async with client_for(server, transport) as client:
            outcomes: list[object] = []

            async def one() -> None:
                outcomes.append(await run_async(lambda: client.async_generate("p")))

            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:
                    for _ in range(100):
                        tg.start_soon(one)
        ok, errors = _tally(outcomes)
        assert all(isinstance(e, RLinfHTTPError) for e in errors), errors
        assert (ok, len(errors), server.count("/generate")) == (99, 1, 101)


# -- a Fleet over two raw servers ---------------------------------------------------------


def _garbage(n: int, req: Request) -> list[bytes | str]:
    return [b"HTTP/1.1 ??? nonsense\r\n\r\n", CLOSE]


def _healthy(n: int, req: Request) -> list[bytes | str]:
    return good(req)


def fleet_of(servers: list[HostileServer], transport: str) -> Fleet:
    return Fleet.from_urls([s.url for s in servers], retry_policy=FAST, transport=transport)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fleet_one_garbage_worker(transport: str) -> None:
    with hostile(_healthy) as ok, hostile(_garbage) as bad, fleet_of([ok, bad], transport) as fleet:
        outcome = run_sync(lambda: fleet.update_weights_from_disk("/ckpt"))
        assert isinstance(outcome, FleetError), repr(outcome)
        assert isinstance(outcome.result[ok.url], WeightUpdateResult)
        assert isinstance(outcome.errors[bad.url], RLinfHTTPError)
        assert (ok.count(), bad.count()) == (1, 1)
        outcome = run_sync(lambda: fleet.pause_generation("in_place"))
        assert isinstance(outcome, FleetError), repr(outcome)
        assert list(outcome.errors) == [bad.url]
        bad.healed.set()
        after = run_sync(lambda: fleet.update_weights_from_disk("/ckpt"))
        assert not isinstance(after, BaseException), repr(after)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_fleet_one_garbage_worker(anyio_backend: str, transport: str) -> None:
    with hostile(_healthy) as ok, hostile(_garbage) as bad:
        async with fleet_of([ok, bad], transport) as fleet:
            outcome = await run_async(lambda: fleet.async_update_weights_from_disk("/ckpt"))
            assert isinstance(outcome, FleetError), repr(outcome)
            assert isinstance(outcome.result[ok.url], WeightUpdateResult)
            assert isinstance(outcome.errors[bad.url], RLinfHTTPError)
            assert (ok.count(), bad.count()) == (1, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_fleet_hanging_worker_deadline(anyio_backend: str, transport: str) -> None:
    with hostile(_healthy) as ok, hostile(_hang_once) as hung:
        async with fleet_of([ok, hung], transport) as fleet:
            with pytest.raises(TimeoutError):
                with anyio.fail_after(0.5):
                    await fleet.async_update_weights_from_disk("/ckpt")
            assert (ok.count(), hung.count()) == (1, 1)  # the healthy worker completed
            hung.healed.set()
            after = await run_async(lambda: fleet.async_update_weights_from_disk("/ckpt"))
            assert not isinstance(after, BaseException), repr(after)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fleet_hanging_worker_is_a_fleet_error_with_call_timeout(transport: str) -> None:
    with hostile(_healthy) as ok, hostile(_hang_once) as hung:
        urls = [ok.url, hung.url]
        with Fleet.from_urls(
            urls, call_timeout=0.5, retry_policy=FAST, transport=transport
        ) as fleet:
            outcome = run_sync(lambda: fleet.update_weights_from_disk("/ckpt"))
            assert isinstance(outcome, FleetError), repr(outcome)
            assert isinstance(outcome.result[ok.url], WeightUpdateResult)
            assert isinstance(outcome.errors[hung.url], APITimeoutError)
            assert (ok.count(), hung.count()) == (1, 1)  # never resent
            hung.healed.set()

            def paused_update() -> object:
                with fleet.paused("retract"):
                    return fleet.update_weights_from_disk("/ckpt")

            after = run_sync(paused_update)
            assert not isinstance(after, BaseException), repr(after)


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_fleet_hanging_worker_is_a_fleet_error_with_call_timeout(
    anyio_backend: str, transport: str
) -> None:
    with hostile(_healthy) as ok, hostile(_hang_once) as hung:
        urls = [ok.url, hung.url]
        async with Fleet.from_urls(
            urls, call_timeout=0.5, retry_policy=FAST, transport=transport
        ) as fleet:
            outcome = await run_async(lambda: fleet.async_update_weights_from_disk("/ckpt"))
            assert isinstance(outcome, FleetError), repr(outcome)
            assert isinstance(outcome.errors[hung.url], APITimeoutError)
            assert (ok.count(), hung.count()) == (1, 1)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fleet_lora_calls_are_bounded_by_call_timeout(transport: str) -> None:
    # The LoRA methods (added after call_timeout) run through the same bounded driver.
    with hostile(_healthy) as ok, hostile(_hang_once) as hung:
        urls = [ok.url, hung.url]
        with Fleet.from_urls(
            urls, call_timeout=0.5, retry_policy=FAST, transport=transport
        ) as fleet:
            for call in (
                lambda: fleet.load_lora_adapter("a", "/lora/a"),
                lambda: fleet.unload_lora_adapter("a"),
            ):
                outcome = run_sync(call)
                assert isinstance(outcome, FleetError), repr(outcome)
                assert list(outcome.errors) == [hung.url]
                assert isinstance(outcome.errors[hung.url], APITimeoutError)
            assert (ok.count(), hung.count()) == (2, 2)  # never resent
            hung.healed.set()


def test_call_timeout_is_checked_before_io() -> None:
    with hostile(_healthy) as server:
        for bad in (0, -1.0, float("nan"), "5"):
            with pytest.raises(InvalidRequestError):
                Fleet.from_urls([server.url], call_timeout=bad)
            with InferenceHTTPClient(server.url) as client, pytest.raises(InvalidRequestError):
                client.fleet(call_timeout=bad)
        assert server.count() == 0


class Boom(Exception):
    pass


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fleet_paused_continues_every_worker_when_the_body_raises(transport: str) -> None:
    def garbage_continue(n: int, req: Request) -> list[bytes | str]:
        return _garbage(n, req) if req.path == "/continue_generation" else good(req)

    with (
        hostile(_healthy) as a,
        hostile(garbage_continue) as b,
        fleet_of([a, b], transport) as fleet,
    ):

        def body() -> None:
            with fleet.paused("retract"):
                raise Boom

        outcome = run_sync(body)
        assert isinstance(outcome, Boom), repr(outcome)  # the body's error, not continue's
        for server in (a, b):
            assert server.count("/pause_generation") == 1
            assert server.count("/continue_generation") == 1


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_fleet_paused_continues_every_worker(
    anyio_backend: str, transport: str
) -> None:
    with hostile(_healthy) as a, hostile(_healthy) as b:
        async with fleet_of([a, b], transport) as fleet:

            async def body() -> None:
                async with fleet.async_paused("retract"):
                    raise Boom

            outcome = await run_async(body)
            assert isinstance(outcome, Boom), repr(outcome)
            for server in (a, b):
                assert server.count("/continue_generation") == 1


# -- bad input: typed errors before any I/O -----------------------------------------------

BAD_CALLS: dict[str, Callable[[InferenceHTTPClient], object]] = {
    "pause-bogus": lambda c: c.pause_generation("bogus"),  # type: ignore[arg-type]
    "negative-port": lambda c: c.init_weights_update_group("127.0.0.1", -1, 1, 2),
    "empty-model-path": lambda c: c.update_weights_from_disk(""),
    "int-name": lambda c: c.update_weights_from_distributed([1], ["bfloat16"], [[2]]),  # type: ignore[list-item]
    "int-group-name": lambda c: c.destroy_weights_update_group(3),  # type: ignore[arg-type]
    "int-version": lambda c: c.update_weight_version(100),  # type: ignore[arg-type]
    "continue-flag": lambda c: c.continue_generation(torch_empty_cache="yes"),  # type: ignore[arg-type]
    "temperature-keyword": lambda c: c.generate("p", temperature=0.0),
    "max-new-tokens-keyword": lambda c: c.generate("p", max_new_tokens=8),
    "stop-keyword-stream": lambda c: c.generate("p", stream=True, stop=["\n"]),
    "top-p-keyword-batch": lambda c: c.generate(["a", "b"], top_p=0.9),
    "chat-sampling-params": lambda c: c.chat_completion(
        messages=MESSAGES, model="m", sampling_params={"temperature": 0.0}
    ),
    "chat-max-new-tokens": lambda c: c.chat_completion(
        messages=MESSAGES, model="m", max_new_tokens=8
    ),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_input_is_refused_before_io(name: str) -> None:
    with hostile(_healthy) as server, InferenceHTTPClient(server.url) as client:
        with pytest.raises(InvalidRequestError):
            BAD_CALLS[name](client)
        assert server.count() == 0


@pytest.mark.anyio
async def test_async_sampling_keyword_refused_before_io(anyio_backend: str) -> None:
    with hostile(_healthy) as server:
        async with InferenceHTTPClient(server.url) as client:
            with pytest.raises(InvalidRequestError, match="sampling_params"):
                await client.async_generate("p", temperature=0.0)
            with pytest.raises(InvalidRequestError):
                await client.async_pause_generation("bogus")  # type: ignore[arg-type]
        assert server.count() == 0


def test_fleet_bad_input_is_refused_before_io() -> None:
    with hostile(_healthy) as a, hostile(_healthy) as b, fleet_of([a, b], "auto") as fleet:
        with pytest.raises(InvalidRequestError):
            fleet.pause_generation("bogus")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError):
            with fleet.paused("bogus"):  # type: ignore[arg-type]
                pass
        with pytest.raises(InvalidRequestError):
            fleet.init_weights_update_group("127.0.0.1", -5, 1, 3)
        with pytest.raises(InvalidRequestError):
            fleet.update_weights_from_disk("")
        assert a.count() + b.count() == 0


# -- health() answers a bool whatever the server does -------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", [*FAULTS, Fault("hang", lambda r: [HANG])], ids=lambda f: f.name)
def test_health_is_a_bool_against_hostile_servers(fault: Fault, transport: str) -> None:
    with hostile(scripted(fault)) as server:
        client = InferenceHTTPClient(server.url, transport=transport, health_timeout=0.5)  # type: ignore[arg-type]
        with client:
            outcome = run_sync(client.health)
            assert isinstance(outcome, bool), repr(outcome)
            assert outcome is False or fault.may_succeed or fault.text_body or fault.stream_only
            server.healed.set()
            assert run_sync(client.health) is True


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", [*FAULTS, Fault("hang", lambda r: [HANG])], ids=lambda f: f.name)
async def test_async_health_is_a_bool_against_hostile_servers(
    anyio_backend: str, fault: Fault, transport: str
) -> None:
    with hostile(scripted(fault)) as server:
        client = InferenceHTTPClient(server.url, transport=transport, health_timeout=0.5)  # type: ignore[arg-type]
        async with client:
            outcome = await run_async(client.async_health)
            assert isinstance(outcome, bool), repr(outcome)
            server.healed.set()
            assert await run_async(client.async_health) is True
