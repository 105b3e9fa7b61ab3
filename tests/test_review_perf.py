"""Review of the typed-call performance change (``git log 32be6a5..``): what it must
not change, over loopback sockets.

Tests written as failing on the reviewed code (each showed a defect, fixed since;
all passed on 32be6a5 unless marked):

- test_an_array_for_an_rl_keyword_is_a_typed_error_before_any_io
- test_request_ids_seen_on_the_wire_do_not_predict_the_next_ones
- test_a_body_rid_the_client_picks_is_a_uuid4_hex (docs/guide.md promises a uuid4 hex)
- test_close_lets_the_sync_session_go, test_aclose_lets_the_async_session_go
- test_bytes_after_a_complete_response_do_not_rewrite_it_{sync,async} (failed on
  32be6a5 too: a pre-existing parser defect)

The others pin what the change claims to keep: ``resume`` of every kind of result
(sync, async, uvloop, after pickling), headers that stay each response's own on a
keep-alive connection (interim 1xx, 204, trailers; raw and streamed), the sampling
check's memo, and the cached session transport across loops, libraries, close,
pickle and copy.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
import random
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import trio

from rlinf_http import (
    FinishAbort,
    FinishLength,
    GenerateOutput,
    InferenceHTTPClient,
    InvalidRequestError,
)
from rlinf_http._core.requests import _sampling_to_wire
from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp
from rlinf_http.transports import AsyncTransport, SyncTransport, TrioTransport

Fake = FakeSGLangApp
N = 40  # tokens per generation: ~0.4 s at 10 ms per token unless aborted


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=0.01)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _idle(server: FakeServer) -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10
    while server.app.running_requests and time.monotonic() < deadline:
        time.sleep(0.01)
    with InferenceHTTPClient(server.url) as client:
        client.continue_generation()


def wait_running(srv: FakeServer, count: int) -> None:
    deadline = time.monotonic() + 10
    while srv.app.running_requests < count:
        assert time.monotonic() < deadline, "the generation never started"
        time.sleep(0.005)


def assert_whole(result: GenerateOutput, n: int = N) -> None:
    assert result.output_ids == Fake.output_ids(n)
    assert result.meta_info.completion_tokens == n
    assert result.finish_reason == FinishLength(type="length", length=n)


def aborted_sync(srv: FakeServer, call: Callable[[], Any], running: int) -> Any:
    """What ``call`` returns when all generations are aborted midway."""
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(result=call()))
    thread.start()
    wait_running(srv, running)
    with InferenceHTTPClient(srv.url) as admin:
        admin.abort_request(abort_all=True)
    thread.join(10)
    return out["result"]


async def aborted_async(
    srv: FakeServer, client: InferenceHTTPClient, call: Callable[[], Any], running: int
) -> Any:
    results: list[Any] = []

    async def run() -> None:
        results.append(await call())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            while srv.app.running_requests < running:
                await anyio.sleep(0.005)
        await client.async_abort_request(abort_all=True)
    return results[0]


def as_list(result: GenerateOutput | list[GenerateOutput]) -> list[GenerateOutput]:
    return result if isinstance(result, list) else [result]


def check_aborted(results: list[GenerateOutput], count: int) -> None:
    assert len(results) == count
    for r in results:
        assert isinstance(r.finish_reason, FinishAbort)
        assert 0 < len(r.output_ids) < N


# -- resume: every kind of result, sync ------------------------------------------------

SP = {"max_new_tokens": N}

SYNC_CALLS: dict[str, tuple[Callable[[InferenceHTTPClient], Any], int]] = {
    "generate": (lambda c: c.generate(input_ids=[1, 2], sampling_params=SP), 1),
    "generate_text": (lambda c: c.generate("a prompt", sampling_params=SP), 1),
    "generate_batch": (lambda c: c.generate(input_ids=[[1], [2]], sampling_params=SP), 2),
    "generate_batch_of_one": (lambda c: c.generate(input_ids=[[3, 4]], sampling_params=SP), 1),
    "generate_n": (lambda c: c.generate(input_ids=[5], sampling_params={**SP, "n": 2}), 2),
    "generate_many": (lambda c: c.generate_many(input_ids=[[1], [2]], sampling_params=SP), 2),
    "generate_many_one": (lambda c: c.generate_many(input_ids=[[6]], sampling_params=SP), 1),
    "generate_group": (lambda c: c.generate_group(input_ids=[7, 8], n=3, sampling_params=SP), 3),
    "generate_groups": (
        lambda c: c.generate_groups(input_ids=[[7], [9]], n=2, sampling_params=SP),
        4,
    ),
}


def flatten(result: Any) -> list[GenerateOutput]:
    if isinstance(result, list) and result and isinstance(result[0], list):
        return [r for group in result for r in group]
    return as_list(result)


@pytest.mark.parametrize("kind", list(SYNC_CALLS))
@pytest.mark.parametrize("pickled", [False, True], ids=["live", "pickled"])
def test_resume_each_kind_of_result_sync(server: FakeServer, kind: str, pickled: bool) -> None:
    call, running = SYNC_CALLS[kind]
    with InferenceHTTPClient(server.url) as client:
        results = flatten(aborted_sync(server, lambda: call(client), running))
        check_aborted(results, running)
        if pickled:
            results = [pickle.loads(pickle.dumps(r)) for r in results]
        for r in results:
            assert_whole(client.resume(r))
        # and all at once
        for r in client.resume_many(results):
            assert_whole(r)


def test_a_resumed_result_pickles_and_is_final(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        (first,) = as_list(
            aborted_sync(server, lambda: client.generate(input_ids=[1], sampling_params=SP), 1)
        )
        final = client.resume(pickle.loads(pickle.dumps(first)))
        again = pickle.loads(pickle.dumps(final))
        assert_whole(again)
        assert client.resume(again) is again


ASYNC_CALLS: dict[str, tuple[Callable[[InferenceHTTPClient], Any], int]] = {
    "generate": (lambda c: c.async_generate(input_ids=[1, 2], sampling_params=SP), 1),
    "generate_batch": (
        lambda c: c.async_generate(input_ids=[[1], [2]], sampling_params=SP),
        2,
    ),
    "generate_batch_of_one": (
        lambda c: c.async_generate(input_ids=[[3, 4]], sampling_params=SP),
        1,
    ),
    "generate_many": (
        lambda c: c.async_generate_many(input_ids=[[1], [2]], sampling_params=SP),
        2,
    ),
    "generate_group": (
        lambda c: c.async_generate_group(input_ids=[7, 8], n=3, sampling_params=SP),
        3,
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(ASYNC_CALLS))
@pytest.mark.parametrize("pickled", [False, True], ids=["live", "pickled"])
async def test_resume_each_kind_of_result_async(
    anyio_backend: str, server: FakeServer, kind: str, pickled: bool
) -> None:
    call, running = ASYNC_CALLS[kind]
    async with InferenceHTTPClient(server.url) as client:
        results = flatten(await aborted_async(server, client, lambda: call(client), running))
        check_aborted(results, running)
        if pickled:
            results = [pickle.loads(pickle.dumps(r)) for r in results]
        for r in results:
            assert_whole(await client.async_resume(r))


def test_resume_of_a_single_result_under_uvloop(server: FakeServer) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> GenerateOutput:
        async with InferenceHTTPClient(server.url) as client:
            first = await aborted_async(
                server,
                client,
                lambda: client.async_generate(input_ids=[1], sampling_params=SP),
                1,
            )
            return await client.async_resume(pickle.loads(pickle.dumps(first)))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert_whole(runner.run(main()))


# -- DEFECT: RL keywords compared with == (a numpy array raises ValueError) --------------


def test_an_array_for_an_rl_keyword_is_a_typed_error_before_any_io(server: FakeServer) -> None:
    """Failed on the reviewed code: ``(...) == NO_RL_ARGUMENTS`` calls ``array == None``,
    whose truth value raises numpy's ValueError (32be6a5 raised InvalidRequestError)."""
    np = pytest.importorskip("numpy")
    before = len(server.app.request_log)
    with InferenceHTTPClient(server.url) as client:
        for kwargs in ({"cache_salt": np.array(["a", "b"])}, {"routed_dp_rank": np.array([0, 1])}):
            with pytest.raises(InvalidRequestError):
                client.generate(input_ids=[[1], [2]], sampling_params=SP, **kwargs)
            with pytest.raises(InvalidRequestError):
                client.generate_many(input_ids=[[1], [2]], sampling_params=SP, **kwargs)
    assert len(server.app.request_log) == before


# -- DEFECT: request ids from a Mersenne Twister are predictable ------------------------


def _untemper(y: int) -> int:
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    t = y
    for _ in range(5):
        t = y ^ ((t << 7) & 0x9D2C5680)
    y = t
    t = y
    for _ in range(3):
        t = y ^ (t >> 11)
    return t & 0xFFFFFFFF


def test_request_ids_seen_on_the_wire_do_not_predict_the_next_ones(server: FakeServer) -> None:
    """Failed on the reviewed code: the body ``rid`` and ``x-request-id`` come from one
    ``random.Random`` (MT19937); 624 of its 32-bit outputs (39 requests' ids, which
    every server and gateway log sees) give its state, so the next ids (what
    ``/abort_request`` takes) are known in advance. uuid4 / os.urandom were not."""
    server.app.clear_request_log()
    with InferenceHTTPClient(server.url) as client:
        for _ in range(80):
            client.generate(input_ids=[1], sampling_params={"max_new_tokens": 1})
    log = [r for r in server.app.request_log if r["path"] == "/generate"]
    assert len(log) == 80
    seen = [int(i, 16) for r in log for i in (r["rid"], r["request_id"])]
    words = [(value >> (32 * k)) & 0xFFFFFFFF for value in seen[:156] for k in range(4)]
    clone = random.Random()
    clone.setstate((3, (*(_untemper(w) for w in words), 624), None))
    predicted = ["%032x" % clone.getrandbits(128) for _ in range(4)]  # noqa: UP031
    actual = [log[78]["rid"], log[78]["request_id"], log[79]["rid"], log[79]["request_id"]]
    assert predicted != actual, "the next request ids were predicted from earlier ones"


def test_a_body_rid_the_client_picks_is_a_uuid4_hex(server: FakeServer) -> None:
    """Failed on the reviewed code (low severity, a contract change): 32be6a5 sent
    ``uuid.uuid4().hex`` (what sglang itself picks); now 128 arbitrary bits."""
    server.app.clear_request_log()
    with InferenceHTTPClient(server.url) as client:
        for _ in range(8):
            client.generate(input_ids=[1], sampling_params={"max_new_tokens": 1})
    rids = [r["rid"] for r in server.app.request_log if r["path"] == "/generate"]
    assert len(rids) == 8
    assert all(uuid.UUID(hex=rid).version == 4 for rid in rids), rids


# -- DEFECT: the transport cache keeps a closed session alive ---------------------------


def test_close_lets_the_sync_session_go(server: FakeServer) -> None:
    """Failed on the reviewed code: ``Driver._transports`` still holds the closed
    httpx.Client and its transport (pool) after ``close()``."""
    client = InferenceHTTPClient(server.url)
    client.generate(input_ids=[1], sampling_params={"max_new_tokens": 1})
    session = client._driver._sync_client
    assert session is not None
    ref, transport_ref = weakref.ref(session), weakref.ref(session._transport)
    del session
    client.close()
    gc.collect()
    assert ref() is None and transport_ref() is None


def test_aclose_lets_the_async_session_go(server: FakeServer) -> None:
    """Failed on the reviewed code: the closed httpx.AsyncClient (and its transport,
    bound to a finished event loop) stays referenced by ``Driver._transports``."""
    client = InferenceHTTPClient(server.url)

    async def main() -> weakref.ref[Any]:
        await client.async_generate(input_ids=[1], sampling_params={"max_new_tokens": 1})
        ref = weakref.ref(client._driver._async_client)
        await client.aclose()
        return ref

    ref = asyncio.run(main())
    gc.collect()
    assert ref() is None


# -- the cached transport follows the session across loops and libraries ---------------


def test_one_client_across_asyncio_trio_and_new_loops(server: FakeServer) -> None:
    client = InferenceHTTPClient(server.url)

    async def one() -> list[int]:
        out = await client.async_generate(input_ids=[1], sampling_params={"max_new_tokens": 2})
        return out.output_ids

    try:
        runs: list[Callable[[], list[int]]] = [
            lambda: asyncio.run(one()),
            lambda: trio.run(one),
        ]
        for run in runs * 2:
            assert run() == Fake.output_ids(2)
        assert client.generate(input_ids=[1], sampling_params={"max_new_tokens": 2}).output_ids
        client.close()
        assert client.generate(input_ids=[1], sampling_params={"max_new_tokens": 2}).output_ids
        for other in (pickle.loads(pickle.dumps(client)), client.copy()):
            with other:
                out = other.generate(input_ids=[1], sampling_params={"max_new_tokens": 2})
                assert out.output_ids == Fake.output_ids(2)
    finally:
        client.close()


# -- the sampling check's memo never lets an invalid dict through ------------------------


def test_the_sampling_memo_does_not_skip_the_check() -> None:
    good = {"temperature": 0.5, "max_new_tokens": 8}
    assert _sampling_to_wire(good) == good
    for bad in (
        {"temperature": "0.5", "max_new_tokens": 8},  # same keys, another type
        {"temperature": 0.5, "max_new_tokens": True},  # 1 == True
        {"temperature": 0.5, "max_new_tokens": 8.0},  # 8 == 8.0
        {"max_new_tokens": 0.5, "temperature": 8},  # same types in another key order
    ):
        with pytest.raises(InvalidRequestError):
            _sampling_to_wire(bad)
    assert _sampling_to_wire(good) == good
    mutable = dict(good)
    assert _sampling_to_wire(mutable) == good
    mutable["max_new_tokens"] = "many"  # the memo kept a copy, not this dict
    with pytest.raises(InvalidRequestError):
        _sampling_to_wire(mutable)

    class Weird(str):
        pass

    with pytest.raises(InvalidRequestError):
        _sampling_to_wire({"temperature": Weird("x"), "max_new_tokens": 8})


# -- headers stay each response's own on a keep-alive connection -------------------------

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-One: 1\r\n\r\nhi",
    b"HTTP/1.1 100 Continue\r\nX-Interim: i\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Two: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Four: 4\r\n\r\n"
    b"2\r\nab\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Five: 5\r\n\r\n5",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX-Seven: 7\r\n\r\n7",
]

STATUSES = [200, 200, 204, 200, 200, 204, 200]


class ScriptServer:
    """Answers the n-th request of each connection with RESPONSES[n % len]."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf, n = b"", 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                conn.sendall(RESPONSES[n % len(RESPONSES)])
                n += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def script() -> Iterator[ScriptServer]:
    srv = ScriptServer()
    yield srv
    srv.close()


def _head(port: int) -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 1\r\n\r\n" % port


def _names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [k.lower() for k, _ in headers]


def _check_own_headers(
    got: list[tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]],
) -> None:
    # (the list as received, a copy taken at once): none changed afterwards
    for live, snapshot in got:
        assert live == snapshot
    names = [_names(snapshot) for _, snapshot in got]
    assert names[0] == [b"content-length", b"x-one"]
    assert names[1] == [b"content-length", b"x-two"]  # no interim header
    assert names[2] == []
    assert names[4] == [b"content-length", b"x-five"]
    assert names[5] == []
    assert names[6] == [b"content-length", b"x-seven"]
    assert all(b"x-trailer" not in n for i, n in enumerate(names) if i != 3)


def test_raw_headers_are_each_responses_own_sync(script: ScriptServer) -> None:
    transport = SyncTransport()
    got = []
    statuses: list[int] = []
    for _ in RESPONSES:
        status, headers, _body = transport.raw_request(
            ("http", "127.0.0.1", script.port), _head(script.port), b"x", (5, 5, 5, 5)
        )
        statuses.append(status)
        got.append((headers, list(headers)))
    transport.close()
    assert statuses == STATUSES
    _check_own_headers(got)
    assert script.connections == 1


@pytest.mark.anyio
async def test_raw_headers_are_each_responses_own_async(
    anyio_backend: str, script: ScriptServer
) -> None:
    transport = TrioTransport() if anyio_backend == "trio" else AsyncTransport()
    got = []
    statuses: list[int] = []
    for _ in RESPONSES:
        status, headers, _body = await transport.raw_request(
            ("http", "127.0.0.1", script.port), _head(script.port), b"x", (5, 5, 5, 5)
        )
        statuses.append(status)
        got.append((headers, list(headers)))
    await transport.aclose()
    assert statuses == STATUSES
    _check_own_headers(got)
    assert script.connections == 1


def test_streamed_and_raw_responses_mixed_keep_their_headers(script: ScriptServer) -> None:
    transport = SyncTransport()
    url = f"http://127.0.0.1:{script.port}/x"
    got: list[Any] = []
    responses = []
    with httpx.Client(transport=transport) as client:
        for i in range(len(RESPONSES)):
            if i % 2:
                _status, headers, _b = transport.raw_request(
                    ("http", "127.0.0.1", script.port), _head(script.port), b"x", (5, 5, 5, 5)
                )
                got.append((headers, list(headers)))
            else:
                with client.stream("POST", url, content=b"x") as response:
                    response.read()
                    responses.append((response, list(response.headers.raw)))
                    got.append(([(k, v) for k, v in response.headers.raw], None))
    for response, snapshot in responses:
        assert list(response.headers.raw) == snapshot
    got = [(live, snap if snap is not None else live) for live, snap in got]
    _check_own_headers(got)
    assert script.connections == 1


@pytest.mark.anyio
async def test_streamed_and_raw_responses_mixed_keep_their_headers_async(
    anyio_backend: str, script: ScriptServer
) -> None:
    transport = TrioTransport() if anyio_backend == "trio" else AsyncTransport()
    url = f"http://127.0.0.1:{script.port}/x"
    got: list[Any] = []
    async with httpx.AsyncClient(transport=transport) as client:
        for i in range(len(RESPONSES)):
            if i % 2:
                _status, headers, _b = await transport.raw_request(
                    ("http", "127.0.0.1", script.port), _head(script.port), b"x", (5, 5, 5, 5)
                )
                got.append((headers, list(headers)))
            else:
                async with client.stream("POST", url, content=b"x") as response:
                    await response.aread()
                    got.append((response.headers.raw, list(response.headers.raw)))
    _check_own_headers(got)
    assert script.connections == 1


def test_raw_headers_are_each_responses_own_under_uvloop(script: ScriptServer) -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> list[Any]:
        transport = AsyncTransport()
        got = []
        for _ in RESPONSES:
            _status, headers, _body = await transport.raw_request(
                ("http", "127.0.0.1", script.port), _head(script.port), b"x", (5, 5, 5, 5)
            )
            got.append((headers, list(headers)))
        await transport.aclose()
        return got

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        _check_own_headers(runner.run(main()))
    assert script.connections == 1


# -- PRE-EXISTING DEFECT (not from this change): bytes after a complete response ---------

EXTRA = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\r\n\r\nhi"
    b"HTTP/1.1 500 Oops\r\nX-B: b\r\nContent-Length: 0\r\n\r\n"
)


@pytest.fixture
def extra_server() -> Iterator[int]:
    """Answers the first request with a response plus an unsolicited second one, in
    one segment."""
    sock = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            conn.sendall(EXTRA)
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    done.set()
    thread.join(10)
    sock.close()


def _get(port: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port


def test_bytes_after_a_complete_response_do_not_rewrite_it_sync(extra_server: int) -> None:
    """Failed on the reviewed code and on 32be6a5: httptools goes on parsing the
    unsolicited message, whose head overwrites ``status_code`` and appends to the
    first response's header list (200 + ``hi`` reported as 500)."""
    transport = SyncTransport()
    try:
        status, headers, body = transport.raw_request(
            ("http", "127.0.0.1", extra_server), _get(extra_server), b"", (5, 5, 5, 5)
        )
    finally:
        transport.close()
    assert (status, body) == (200, b"hi")
    assert headers == [(b"Content-Length", b"2"), (b"X-A", b"a")]


@pytest.mark.anyio
async def test_bytes_after_a_complete_response_do_not_rewrite_it_async(
    anyio_backend: str, extra_server: int
) -> None:
    """Failed on the reviewed code and on 32be6a5 (as the sync test)."""
    transport = TrioTransport() if anyio_backend == "trio" else AsyncTransport()
    try:
        status, headers, body = await transport.raw_request(
            ("http", "127.0.0.1", extra_server), _get(extra_server), b"", (5, 5, 5, 5)
        )
    finally:
        await transport.aclose()
    assert (status, body) == (200, b"hi")
    assert headers == [(b"Content-Length", b"2"), (b"X-A", b"a")]
