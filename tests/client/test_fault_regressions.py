"""Regressions from the outside fault suite (issue 9, items 1-7), on real loopback sockets.

A raw server written here sends the exact bytes of each fault and counts how many
times each request reached it. Every scenario runs on the four paths (sync, async,
sync stream, async stream) where it applies, on our transports (``"rlinf"``) and on
httpx's (``"httpx"``; also under trio). Sync calls run in a worker thread joined with
a timeout and async ones under ``anyio.fail_after``: a regression fails, never hangs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anyio
import pytest
from conftest import RawHTTPServer, SeenRequest  # type: ignore[import-not-found]

import rlinf_http.transports._async as async_transport_module
import rlinf_http.transports._sync as sync_transport_module
from rlinf_http import (
    APIConnectionError,
    APIResponseValidationError,
    BadRequestError,
    InferenceHTTPClient,
    RetryPolicy,
    ServiceUnavailableError,
)
from rlinf_http._options import TransportChoice

#: Bound on any single client call in these tests (a regression fails within it).
BOUND = 20.0

TRANSPORTS = ["rlinf", "httpx"]
STREAM = [False, True]

# -- the raw server ----------------------------------------------------------------------

#: Steps of a scripted answer besides raw bytes.
CLOSE = "close"  # FIN
RESET = "reset"  # RST
HANG = "hang"  # keep the connection open, say nothing more


@dataclass
class Sleep:
    seconds: float


Step = bytes | str | Sleep
#: ``plan(n, conn, k)``: the steps answering the ``n``-th request (0-based, all
#: connections), the ``k``-th on connection number ``conn``.
Plan = Callable[[int, int, int], Sequence[Step]]


class FaultServer(RawHTTPServer):
    """The threaded loopback server of ``conftest``, answering from a ``plan``."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        #: set each time the server closed a connection on its own
        self.closed_one = threading.Event()
        self._on_connection: dict[int, int] = {}
        super().__init__()

    def count(self, path: str = "/generate") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def _respond(self, conn: socket.socket, req: SeenRequest) -> bool:
        with self._lock:
            n = len(self.requests) - 1
            k = self._on_connection.get(req.connection, 0)
            self._on_connection[req.connection] = k + 1
        for step in self.plan(n, req.connection, k):
            if isinstance(step, bytes):
                conn.sendall(step)
            elif isinstance(step, Sleep):
                time.sleep(step.seconds)
            elif step == HANG:
                self._stop.wait()
                return False
            else:
                if step == RESET:
                    linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                else:
                    conn.shutdown(socket.SHUT_WR)
                conn.close()
                self.closed_one.set()
                return False
        return True


@pytest.fixture
def serve() -> Iterator[Callable[[Plan], FaultServer]]:
    servers: list[FaultServer] = []

    def start(plan: Plan) -> FaultServer:
        server = FaultServer(plan)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


# -- wire bytes --------------------------------------------------------------------------


def gen_json(text: str) -> dict[str, Any]:
    return {
        "text": text,
        "output_ids": list(range(len(text))),
        "meta_info": {"id": "r", "prompt_tokens": 1, "completion_tokens": len(text)},
    }


def ok_response() -> bytes:
    body = json.dumps(gen_json("ok")).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (
        len(body),
        body,
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
EVENTS = [b"data: " + json.dumps(gen_json(t)).encode() + b"\n\n" for t in ("a", "ab", "abc")]
DONE = b"data: [DONE]\n\n"
END = b"0\r\n\r\n"


def stream_response(*extra_events: bytes) -> bytes:
    """A complete SSE stream: three events (plus ``extra_events``), [DONE], end of body."""
    return STREAM_HEAD + b"".join(chunk(e) for e in (*EVENTS, *extra_events, DONE)) + END


def answer(request_is_stream: bool) -> bytes:
    return stream_response() if request_is_stream else ok_response()


def error_response(status: int, body: bytes) -> bytes:
    return b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (
        status,
        len(body),
        body,
    )


# -- calling the client, bounded -----------------------------------------------------------


def new_client(server: FaultServer, transport: str, max_retries: int = 2) -> InferenceHTTPClient:
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.01, jitter=0.0)
    return InferenceHTTPClient(
        server.url,
        retry_policy=policy,
        max_retries=max_retries,
        transport=cast(TransportChoice, transport),
    )


def texts(result: Any) -> list[str] | str:
    """A stream's chunk texts, or a reply's text."""
    return result if isinstance(result, list) else str(result.text)


def sync_call(client: InferenceHTTPClient, stream: bool) -> list[str] | str:
    """One ``generate`` (read to the end when streaming), in a thread joined with a timeout."""
    out: list[Any] = []

    def run() -> None:
        try:
            if stream:
                with client.generate("hi", stream=True) as chunks:
                    out.append([c.text for c in chunks])
            else:
                out.append(client.generate("hi"))
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "the call hung"
    if isinstance(out[0], BaseException):
        raise out[0]
    return texts(out[0])


async def async_call(client: InferenceHTTPClient, stream: bool) -> list[str] | str:
    with anyio.fail_after(BOUND):
        if stream:
            async with await client.async_generate("hi", stream=True) as chunks:
                return [c.text async for c in chunks]
        return texts(await client.async_generate("hi"))


def skip_unsupported(transport: str, anyio_backend: str) -> None:
    """Every transport runs on both backends (kept as the one place to say otherwise)."""


ALL_TEXTS = ["a", "ab", "abc"]

# -- item 1: once a response byte has arrived, never resend -----------------------------

AFTER_BYTES = {
    "garbage": [b"FOO\r\n\r\n"],
    "garbage-then-close": [b"FOO\r\n\r\n", CLOSE],
    "head-cut-then-reset": [b"HTTP/1.1 200 OK\r\ncontent-ty", Sleep(0.1), RESET],
    "head-cut-then-close": [b"HTTP/1.1 200 OK\r\ncontent-ty", Sleep(0.1), CLOSE],
}


def after_bytes_plan(fault: str, stream: bool) -> Plan:
    # The first request gets the fault; a resend would get a good answer.
    return lambda n, conn, k: AFTER_BYTES[fault] if n == 0 else [answer(stream)]


@pytest.mark.parametrize("fault", list(AFTER_BYTES))
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_not_resent_after_response_bytes_sync(
    serve: Callable[[Plan], FaultServer], transport: str, stream: bool, fault: str
) -> None:
    server = serve(after_bytes_plan(fault, stream))
    with pytest.raises(APIConnectionError), new_client(server, transport) as client:
        sync_call(client, stream)
    assert server.count() == 1


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list(AFTER_BYTES))
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_not_resent_after_response_bytes_async(
    serve: Callable[[Plan], FaultServer],
    anyio_backend: str,
    transport: str,
    stream: bool,
    fault: str,
) -> None:
    skip_unsupported(transport, anyio_backend)
    server = serve(after_bytes_plan(fault, stream))
    async with new_client(server, transport) as client:
        with pytest.raises(APIConnectionError):
            await async_call(client, stream)
    assert server.count() == 1


# -- item 2: [DONE] then neither the end of the body nor a close ------------------------


def done_then(*tail: Step) -> Plan:
    head = STREAM_HEAD + b"".join(chunk(e) for e in (*EVENTS, DONE))
    return lambda n, conn, k: [head, *tail]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_stream_done_then_hang_finishes(
    serve: Callable[[Plan], FaultServer], transport: str
) -> None:
    server = serve(done_then(HANG))
    with new_client(server, transport) as client:
        assert sync_call(client, True) == ALL_TEXTS
    assert server.count() == 1


@pytest.mark.anyio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_async_stream_done_then_hang_finishes(
    serve: Callable[[Plan], FaultServer], anyio_backend: str, transport: str
) -> None:
    skip_unsupported(transport, anyio_backend)
    server = serve(done_then(HANG))
    async with new_client(server, transport) as client:
        assert await async_call(client, True) == ALL_TEXTS
    assert server.count() == 1


# -- item 3: a body that does not decode as its Content-Encoding says ------------------


def gzip_lie_plan(stream: bool) -> Plan:
    if stream:
        wire = STREAM_HEAD.replace(b"\r\n\r\n", b"\r\ncontent-encoding: gzip\r\n\r\n")
        wire += b"".join(chunk(e) for e in (*EVENTS, DONE)) + END
    else:
        wire = ok_response().replace(b"\r\n\r\n", b"\r\ncontent-encoding: gzip\r\n\r\n", 1)
    return lambda n, conn, k: [wire]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_undecodable_body_is_typed_sync(
    serve: Callable[[Plan], FaultServer], transport: str, stream: bool
) -> None:
    server = serve(gzip_lie_plan(stream))
    with pytest.raises(APIResponseValidationError), new_client(server, transport) as client:
        sync_call(client, stream)
    assert server.count() == 1


@pytest.mark.anyio
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_undecodable_body_is_typed_async(
    serve: Callable[[Plan], FaultServer], anyio_backend: str, transport: str, stream: bool
) -> None:
    skip_unsupported(transport, anyio_backend)
    server = serve(gzip_lie_plan(stream))
    async with new_client(server, transport) as client:
        with pytest.raises(APIResponseValidationError):
            await async_call(client, stream)
    assert server.count() == 1


# -- item 4: malformed SSE retry fields are ignored -------------------------------------

RETRY_FIELDS = {
    "superscript": "retry: \u00b2\n\n".encode(),
    "5000-digits": b"retry: " + b"9" * 5000 + b"\n\n",
}


def retry_field_plan(field_bytes: bytes) -> Plan:
    wire = STREAM_HEAD + b"".join(chunk(e) for e in (EVENTS[0], field_bytes, *EVENTS[1:], DONE))
    return lambda n, conn, k: [wire + END]


@pytest.mark.parametrize("retry_field", list(RETRY_FIELDS))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_sse_retry_ignored_sync(
    serve: Callable[[Plan], FaultServer], transport: str, retry_field: str
) -> None:
    server = serve(retry_field_plan(RETRY_FIELDS[retry_field]))
    with new_client(server, transport) as client:
        assert sync_call(client, True) == ALL_TEXTS


@pytest.mark.anyio
@pytest.mark.parametrize("retry_field", list(RETRY_FIELDS))
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_malformed_sse_retry_ignored_async(
    serve: Callable[[Plan], FaultServer], anyio_backend: str, transport: str, retry_field: str
) -> None:
    skip_unsupported(transport, anyio_backend)
    server = serve(retry_field_plan(RETRY_FIELDS[retry_field]))
    async with new_client(server, transport) as client:
        assert await async_call(client, True) == ALL_TEXTS


# -- item 5: an error body nested too deep to parse -------------------------------------

DEEP = b"[" * 5000
DEEP_STATUSES = {400: (BadRequestError, 1), 503: (ServiceUnavailableError, 2)}


def deep_plan(status: int) -> Plan:
    return lambda n, conn, k: [error_response(status, DEEP)]


@pytest.mark.parametrize("status", list(DEEP_STATUSES))
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_deeply_nested_error_body_kept_as_text_sync(
    serve: Callable[[Plan], FaultServer], transport: str, stream: bool, status: int
) -> None:
    server = serve(deep_plan(status))
    error, sends = DEEP_STATUSES[status]
    with pytest.raises(error) as info, new_client(server, transport, max_retries=1) as client:
        sync_call(client, stream)
    assert info.value.body == DEEP.decode()
    assert server.count() == sends


@pytest.mark.anyio
@pytest.mark.parametrize("status", list(DEEP_STATUSES))
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_deeply_nested_error_body_kept_as_text_async(
    serve: Callable[[Plan], FaultServer],
    anyio_backend: str,
    transport: str,
    stream: bool,
    status: int,
) -> None:
    skip_unsupported(transport, anyio_backend)
    server = serve(deep_plan(status))
    error, sends = DEEP_STATUSES[status]
    async with new_client(server, transport, max_retries=1) as client:
        with pytest.raises(error) as info:
            await async_call(client, stream)
    assert info.value.body == DEEP.decode()
    assert server.count() == sends


# -- item 6: at most max_retries + 1 requests on the wire --------------------------------


def race_plan(stream: bool, answered: Callable[[int, int], bool], how: str) -> Plan:
    """Requests for which ``answered(n, k)`` is false are read, then the connection dies."""

    def plan(n: int, conn: int, k: int) -> Sequence[Step]:
        if answered(n, k):
            return [answer(stream)]
        return [how]

    return plan


# Only the first request on each connection is answered: a reused one dies under the
# request (the server read it: it counts), a fresh one answers.
def first_on_connection(n: int, k: int) -> bool:
    return k == 0


# Only the warm-up request is answered: everything after it dies.
def warm_up_only(n: int, k: int) -> bool:
    return n == 0


# (answered, max_retries, sends after the warm-up, succeeds)
RACES = {
    "retries-0": (first_on_connection, 0, 1, False),
    "retries-1": (first_on_connection, 1, 2, True),
    "retries-2-all-fail": (warm_up_only, 2, 3, False),
}


@pytest.mark.parametrize("how", [CLOSE, RESET])
@pytest.mark.parametrize("race", list(RACES))
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reused_connection_race_counts_against_retries_sync(
    serve: Callable[[Plan], FaultServer], transport: str, stream: bool, race: str, how: str
) -> None:
    answered, max_retries, sends, succeeds = RACES[race]
    server = serve(race_plan(stream, answered, how))
    with new_client(server, transport, max_retries=max_retries) as client:
        assert sync_call(client, stream)  # warm-up: leaves a pooled connection
        if succeeds:
            assert sync_call(client, stream)
        else:
            with pytest.raises(APIConnectionError):
                sync_call(client, stream)
    assert server.count() == 1 + sends


@pytest.mark.anyio
@pytest.mark.parametrize("how", [CLOSE, RESET])
@pytest.mark.parametrize("race", list(RACES))
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reused_connection_race_counts_against_retries_async(
    serve: Callable[[Plan], FaultServer],
    anyio_backend: str,
    transport: str,
    stream: bool,
    race: str,
    how: str,
) -> None:
    skip_unsupported(transport, anyio_backend)
    answered, max_retries, sends, succeeds = RACES[race]
    server = serve(race_plan(stream, answered, how))
    async with new_client(server, transport, max_retries=max_retries) as client:
        assert await async_call(client, stream)
        if succeeds:
            assert await async_call(client, stream)
        else:
            with pytest.raises(APIConnectionError):
                await async_call(client, stream)
    assert server.count() == 1 + sends


def idle_close_plan(stream: bool) -> Plan:
    # Answer (keep-alive), then close the idle connection, as uvicorn does after 5 s.
    return lambda n, conn, k: [answer(stream), Sleep(0.05), CLOSE]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_seen_closed_before_writing_is_a_free_resend_sync(
    serve: Callable[[Plan], FaultServer], transport: str, stream: bool
) -> None:
    server = serve(idle_close_plan(stream))
    with new_client(server, transport, max_retries=0) as client:
        assert sync_call(client, stream)
        assert server.closed_one.wait(BOUND)
        time.sleep(0.1)  # the FIN reaches the client
        assert sync_call(client, stream)  # max_retries=0, yet it works: nothing was sent
    assert server.count() == 2 and server.connections == 2


@pytest.mark.anyio
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connection_seen_closed_before_writing_is_a_free_resend_async(
    serve: Callable[[Plan], FaultServer], anyio_backend: str, transport: str, stream: bool
) -> None:
    skip_unsupported(transport, anyio_backend)
    server = serve(idle_close_plan(stream))
    async with new_client(server, transport, max_retries=0) as client:
        assert await async_call(client, stream)
        with anyio.fail_after(BOUND):
            while not server.closed_one.is_set():
                await anyio.sleep(0.01)
        await anyio.sleep(0.1)
        assert await async_call(client, stream)
    assert server.count() == 2 and server.connections == 2


@pytest.mark.parametrize("module", [sync_transport_module, async_transport_module])
def test_keepalive_expiry_below_uvicorn_default(
    serve: Callable[[Plan], FaultServer], monkeypatch: pytest.MonkeyPatch, module: Any
) -> None:
    # uvicorn (sglang's server) closes connections idle for 5 s: ours expire first.
    server = serve(lambda n, conn, k: [ok_response()])
    real = time.monotonic
    skew = [0.0]
    monkeypatch.setattr(module, "_monotonic", lambda: real() + skew[0])

    def twice() -> None:
        if module is sync_transport_module:
            with new_client(server, "rlinf") as client:
                sync_call(client, False)
                skew[0] = 4.9
                sync_call(client, False)
        else:

            async def main() -> None:
                async with new_client(server, "rlinf") as client:
                    await async_call(client, False)
                    skew[0] = 4.9
                    await async_call(client, False)

            anyio.run(main)

    twice()
    assert server.count() == 2 and server.connections == 2


def test_httpx_sessions_keepalive_expiry_below_uvicorn_default() -> None:
    client = InferenceHTTPClient("http://127.0.0.1:9", transport="httpx")
    limits = client._driver._limits()
    assert limits.keepalive_expiry is not None and limits.keepalive_expiry < 5.0
    session = client._driver._get_sync_client()
    pool = session._transport._pool  # type: ignore[attr-defined]
    assert pool._keepalive_expiry < 5.0
    session.close()


# -- item 7: a body that breaks after [DONE] -------------------------------------------

AFTER_DONE = {
    "reset": [Sleep(0.1), RESET],
    "close": [Sleep(0.1), CLOSE],
    "bad-chunk-framing": [b"ZZZ\r\n\r\n"],
}


@pytest.mark.parametrize("after", list(AFTER_DONE))
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_break_after_done_delivers_everything_sync(
    serve: Callable[[Plan], FaultServer], transport: str, after: str
) -> None:
    server = serve(done_then(*AFTER_DONE[after]))
    with new_client(server, transport) as client:
        assert sync_call(client, True) == ALL_TEXTS
    assert server.count() == 1


@pytest.mark.anyio
@pytest.mark.parametrize("after", list(AFTER_DONE))
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_break_after_done_delivers_everything_async(
    serve: Callable[[Plan], FaultServer], anyio_backend: str, transport: str, after: str
) -> None:
    skip_unsupported(transport, anyio_backend)
    server = serve(done_then(*AFTER_DONE[after]))
    async with new_client(server, transport) as client:
        assert await async_call(client, True) == ALL_TEXTS
    assert server.count() == 1


def test_break_in_same_read_as_done_delivers_everything(
    serve: Callable[[Plan], FaultServer],
) -> None:
    # [DONE] and the broken framing arrive in one segment: the sync transport hands
    # over the body bytes before the error.
    wire = STREAM_HEAD + b"".join(chunk(e) for e in (*EVENTS, DONE)) + b"ZZZ\r\n\r\n"
    server = serve(lambda n, conn, k: [wire])
    with new_client(server, "rlinf") as client:
        assert sync_call(client, True) == ALL_TEXTS
