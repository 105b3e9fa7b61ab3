"""InferenceHTTPClient over real loopback sockets: timeouts, proxies, pooling,
cancellation, sessions, threads, pickling, fork, and the fake server's faults."""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
import respx
from conftest import RawHTTPServer  # type: ignore[import-not-found]

from rlinf_http import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    BadRequestError,
    GenerateOutput,
    InferenceHTTPClient,
    NotFoundError,
    RetryPolicy,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
)

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

# -- connect-only timeout ---------------------------------------------------------------


def test_connect_timeout_fires(hanging_address: tuple[str, int]) -> None:
    host, port = hanging_address
    client = InferenceHTTPClient(f"http://{host}:{port}", connect_timeout=0.3, max_retries=0)
    started = time.monotonic()
    with pytest.raises(APITimeoutError) as info:
        client.generate(prompt="x")
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 5.0
    assert isinstance(info.value, TimeoutError)
    assert f"{host}:{port}/generate" in str(info.value)
    client.close()


@pytest.mark.anyio
async def test_connect_timeout_fires_async(hanging_address: tuple[str, int]) -> None:
    host, port = hanging_address
    started = time.monotonic()
    async with InferenceHTTPClient(
        f"http://{host}:{port}", connect_timeout=0.3, max_retries=0
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.async_chat_completion([{"role": "user", "content": "x"}])
    assert 0.2 <= time.monotonic() - started < 5.0


def test_connect_timeout_retries_are_bounded(hanging_address: tuple[str, int]) -> None:
    host, port = hanging_address
    client = InferenceHTTPClient(
        f"http://{host}:{port}",
        connect_timeout=0.2,
        retry_policy=RetryPolicy(max_retries=2, initial_delay=0.01),
    )
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        client.generate(prompt="x")
    # three connect attempts of ~0.2 s each
    assert 0.5 <= time.monotonic() - started < 8.0


def test_refused_connection(closed_port: int) -> None:
    client = InferenceHTTPClient(f"http://127.0.0.1:{closed_port}", max_retries=0)
    with pytest.raises(APIConnectionError) as info:
        client.generate(prompt="x")
    assert not isinstance(info.value, APITimeoutError)


def test_read_is_never_capped(raw_server: RawHTTPServer) -> None:
    raw_server.delays["/generate"] = 0.9  # three times the connect timeout
    client = InferenceHTTPClient(raw_server.url, connect_timeout=0.3, max_retries=0)
    out = client.generate(prompt="slow")
    assert out.text == "echo:slow"
    client.close()


@pytest.mark.anyio
async def test_read_is_never_capped_async(raw_server: RawHTTPServer) -> None:
    raw_server.delays["/generate"] = 0.9  # three times the connect timeout
    async with InferenceHTTPClient(raw_server.url, connect_timeout=0.3, max_retries=0) as client:
        out = await client.async_generate(prompt="slow")
    assert out.text == "echo:slow"


def test_post_timeout_s_bounds_the_read(raw_server: RawHTTPServer) -> None:
    raw_server.delays["/x"] = 3.0
    client = InferenceHTTPClient(raw_server.url, connect_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        client.post("/x", {"a": 1}, timeout_s=0.3)
    assert time.monotonic() - started < 2.5
    raw_server.delays.clear()
    assert client.post("/x", {"a": 1}, timeout_s=5.0) == {"echo": {"a": 1}}
    client.close()


def test_per_call_timeout_override(raw_server: RawHTTPServer) -> None:
    raw_server.next_delays.append(3.0)
    client = InferenceHTTPClient(raw_server.url, max_retries=0)
    started = time.monotonic()
    with pytest.raises(APITimeoutError):
        client.generate(prompt="x", timeout=0.3)
    assert time.monotonic() - started < 2.5
    # The override was for that call only: the client is fine afterwards.
    assert client.generate(prompt="y").text == "echo:y"
    client.close()


@pytest.mark.anyio
async def test_per_call_timeout_override_async(raw_server: RawHTTPServer) -> None:
    raw_server.next_delays.append(3.0)
    async with InferenceHTTPClient(raw_server.url, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await client.async_generate(prompt="x", timeout=0.3)
        assert time.monotonic() - started < 2.5
        assert (await client.async_generate(prompt="y")).text == "echo:y"


# -- proxies ---------------------------------------------------------------------------


@pytest.fixture
def poisoned_proxy_env(monkeypatch: pytest.MonkeyPatch, closed_port: int) -> None:
    for name in PROXY_VARS:
        monkeypatch.setenv(name, f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def test_env_proxies_ignored(raw_server: RawHTTPServer, poisoned_proxy_env: None) -> None:
    client = InferenceHTTPClient(raw_server.url, max_retries=0)
    assert client.generate(prompt="direct").text == "echo:direct"
    assert client.health() is True
    assert client.post("/p", [1]) == {"echo": [1]}
    assert [r.path for r in raw_server.requests] == ["/generate", "/health", "/p"]
    client.close()


@pytest.mark.anyio
async def test_env_proxies_ignored_async(
    raw_server: RawHTTPServer, poisoned_proxy_env: None
) -> None:
    async with InferenceHTTPClient(raw_server.url, max_retries=0) as client:
        assert (await client.async_generate(prompt="direct")).text == "echo:direct"
        assert await client.async_health() is True
    assert len(raw_server.requests) == 2


# -- health is bounded and never raises -----------------------------------------------------


def test_health_bounded_when_connect_hangs(hanging_address: tuple[str, int]) -> None:
    host, port = hanging_address
    client = InferenceHTTPClient(f"http://{host}:{port}", health_timeout=0.5)
    started = time.monotonic()
    assert client.health() is False
    assert time.monotonic() - started < 3.0


@pytest.mark.anyio
async def test_async_health_bounded_when_connect_hangs(hanging_address: tuple[str, int]) -> None:
    host, port = hanging_address
    async with InferenceHTTPClient(f"http://{host}:{port}", health_timeout=0.5) as client:
        started = time.monotonic()
        assert await client.async_health() is False
        assert time.monotonic() - started < 3.0


def test_health_bounded_when_server_hangs(raw_server: RawHTTPServer) -> None:
    raw_server.delays["/health"] = 30.0
    client = InferenceHTTPClient(raw_server.url, health_timeout=0.5)
    started = time.monotonic()
    assert client.health() is False
    assert time.monotonic() - started < 3.0


@pytest.mark.anyio
async def test_async_health_bounded_when_server_hangs(raw_server: RawHTTPServer) -> None:
    raw_server.delays["/health"] = 30.0
    async with InferenceHTTPClient(raw_server.url, health_timeout=0.5) as client:
        started = time.monotonic()
        assert await client.async_health() is False
        assert time.monotonic() - started < 3.0


def test_health_false_when_refused(closed_port: int) -> None:
    assert InferenceHTTPClient(f"http://127.0.0.1:{closed_port}").health() is False


# -- cancellation leaves the client usable -----------------------------------------------


@pytest.mark.anyio
async def test_fail_after_then_reuse(raw_server: RawHTTPServer) -> None:
    raw_server.next_delays.append(30.0)
    async with InferenceHTTPClient(raw_server.url) as client:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.3):
                await client.async_generate(prompt="hang")
        out = await client.async_generate(prompt="next")
        assert out.text == "echo:next"
        outs = [await client.async_generate(prompt=f"p{i}") for i in range(3)]
        assert [o.text for o in outs] == ["echo:p0", "echo:p1", "echo:p2"]


def test_asyncio_wait_for_then_reuse(raw_server: RawHTTPServer) -> None:
    raw_server.next_delays.extend([30.0, 30.0])

    async def main() -> list[str]:
        async with InferenceHTTPClient(raw_server.url) as client:
            for _ in range(2):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(client.async_generate(prompt="hang"), 0.3)
            results = await asyncio.gather(
                *(client.async_generate(prompt=f"g{i}") for i in range(5))
            )
            return [r.text for r in results]

    assert asyncio.run(main()) == [f"echo:g{i}" for i in range(5)]


# -- sessions -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_shared_async_session(raw_server: RawHTTPServer) -> None:
    client = InferenceHTTPClient(raw_server.url)
    async with client:
        await client.async_generate(prompt="a")
        session = client._driver._async_client
        assert session is not None
        reply = await client.async_chat_completion([{"role": "user", "content": "x"}])
        assert reply.choices[0].message.content == "echo:x"
        assert await client.async_health() is True
        assert client._driver._async_client is session
    assert session.is_closed
    # Used again later: a fresh session.
    await client.async_generate(prompt="b")
    assert client._driver._async_client is not None and client._driver._async_client is not session
    await client.aclose()
    assert client._driver._async_client is None


@pytest.mark.anyio
async def test_async_connection_reuse(raw_server: RawHTTPServer) -> None:
    async with InferenceHTTPClient(raw_server.url) as client:
        for i in range(5):
            assert (await client.async_generate(prompt=str(i))).text == f"echo:{i}"
    assert raw_server.connections == 1
    assert {r.connection for r in raw_server.requests} == {1}


def test_sync_connection_reuse(raw_server: RawHTTPServer) -> None:
    with InferenceHTTPClient(raw_server.url) as client:
        for i in range(5):
            assert client.generate(prompt=str(i)).text == f"echo:{i}"
        assert client.health() is True
    assert raw_server.connections == 1
    # After close() a later call opens a new connection.
    client.generate(prompt="again")
    assert raw_server.connections == 2
    client.close()


def test_two_asyncio_runs_without_async_with(raw_server: RawHTTPServer) -> None:
    client = InferenceHTTPClient(raw_server.url)

    async def one(tag: str) -> list[str]:
        outs = await asyncio.gather(*(client.async_generate(prompt=f"{tag}{i}") for i in range(4)))
        return [o.text for o in outs]

    # Socket-leak warnings are checked by the next test; keep them out of others.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert asyncio.run(one("a")) == [f"echo:a{i}" for i in range(4)]
        assert asyncio.run(one("b")) == [f"echo:b{i}" for i in range(4)]
        assert asyncio.run(one("c")) == [f"echo:c{i}" for i in range(4)]
        client._driver._forget_sessions()
        gc.collect()


def test_second_asyncio_run_does_not_leak_first_sessions_sockets(
    raw_server: RawHTTPServer,
) -> None:
    # The session of a finished asyncio.run is replaced on the next run; its pooled
    # sockets must be released, not left for the garbage collector to warn about.
    client = InferenceHTTPClient(raw_server.url)

    async def one() -> None:
        await asyncio.gather(*(client.async_generate(prompt="x") for _ in range(3)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(one())
        asyncio.run(one())
        gc.collect()
        leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        client._driver._forget_sessions()  # the second session is the test's own business
        gc.collect()
    assert leaks == []


def test_sync_client_from_thread_pool(raw_server: RawHTTPServer) -> None:
    client = InferenceHTTPClient(raw_server.url)

    def call(i: int) -> tuple[int, str, str]:
        if i % 2:
            out = client.generate(prompt=f"t{i}", rid=f"r{i}")
            return i, out.text, out.meta_info.id or ""
        result = client.post("/echo", {"i": i})
        return i, str(result["echo"]["i"]), f"r{i}"

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, range(400)))
    for i, text, rid in results:
        assert rid == f"r{i}"
        assert text == (f"echo:t{i}" if i % 2 else str(i))
    assert len(raw_server.requests) == 400
    assert raw_server.connections <= 16 + 4  # pooled, not one connection per call
    client.close()


# -- pickling and fork -----------------------------------------------------------------------


def test_pickle_round_trip(raw_server: RawHTTPServer) -> None:
    client = InferenceHTTPClient(
        raw_server.url, connect_timeout=1.5, api_key="k", headers={"X-A": "1"}, max_retries=4
    )
    client.generate(prompt="before")  # with a live session
    copy = pickle.loads(pickle.dumps(client))
    assert copy.base_url == client.base_url
    assert copy.connect_timeout == 1.5
    assert copy.retry_policy.max_retries == 4
    assert copy.generate(prompt="copy").text == "echo:copy"
    last = raw_server.requests[-1]
    assert last.headers["authorization"] == "Bearer k"
    assert last.headers["x-a"] == "1"
    assert raw_server.connections == 2  # the copy opened its own connection
    client.close()
    copy.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_uses_new_connection(raw_server: RawHTTPServer) -> None:
    client = InferenceHTTPClient(raw_server.url, max_retries=0)
    assert client.generate(prompt="parent").text == "echo:parent"
    assert raw_server.connections == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            ok = client.generate(prompt="child").text == "echo:child"
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_requests = [r for r in raw_server.requests if r.body and b"child" in r.body]
    assert len(child_requests) == 1
    assert child_requests[0].connection != 1  # not the parent's socket
    assert raw_server.connections == 2
    # The parent's pooled connection is still intact and reused.
    assert client.generate(prompt="parent2").text == "echo:parent2"
    assert raw_server.requests[-1].connection == 1
    client.close()


# -- the fake sglang server: faults --------------------------------------------------------

testing = pytest.importorskip("rlinf_http.testing")
FakeServer = testing.FakeServer
FaultSpec = testing.FaultSpec

FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05)


@pytest.fixture
def fake() -> Any:
    with FakeServer() as srv:
        yield srv


def requests_to(srv: Any, path: str) -> int:
    return int(srv.app.stats["requests"].get(path, 0))


def test_fake_503_retry_after_then_success(fake: Any) -> None:
    fake.app.faults.add(
        FaultSpec(path="/generate", status=503, headers={"Retry-After": "0"}, times=2)
    )
    client = InferenceHTTPClient(fake.url, retry_policy=FAST_RETRY)
    out = client.generate(prompt="hello", sampling_params={"max_new_tokens": 3})
    assert isinstance(out, GenerateOutput)
    assert out.meta_info.completion_tokens == 3
    assert out.output_ids == fake.app.output_ids(3)
    assert requests_to(fake, "/generate") == 3
    client.close()


@pytest.mark.anyio
async def test_fake_dropped_connection_retried(fake: Any) -> None:
    fake.app.faults.add(FaultSpec(path="/v1/chat/completions", drop=True, times=1))
    async with InferenceHTTPClient(fake.url, retry_policy=FAST_RETRY) as client:
        reply = await client.async_chat_completion(
            [{"role": "user", "content": "hi"}], max_tokens=4
        )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    assert requests_to(fake, "/v1/chat/completions") == 2


def test_fake_dropped_connection_exhausted(fake: Any) -> None:
    fake.app.faults.add(FaultSpec(path="/generate", drop=True, times=None))
    client = InferenceHTTPClient(fake.url, max_retries=1, retry_policy=RetryPolicy(initial_delay=0))
    with pytest.raises(APIConnectionError):
        client.generate(prompt="x")
    assert requests_to(fake, "/generate") == 2
    fake.app.faults.clear()
    assert client.generate(prompt="x", sampling_params={"max_new_tokens": 1}).output_ids
    client.close()


@pytest.mark.anyio
async def test_fake_malformed_body(fake: Any) -> None:
    fake.app.faults.add(FaultSpec(path="/generate", malformed=True))
    async with InferenceHTTPClient(fake.url) as client:
        with pytest.raises(APIResponseValidationError) as info:
            await client.async_generate(prompt="x")
        assert info.value.status_code == 200
        assert f"{fake.url}/generate" in str(info.value)
        # not retried, and the client is fine afterwards
        assert requests_to(fake, "/generate") == 1
        assert (await client.async_generate(prompt="y")).meta_info.completion_tokens > 0


@pytest.mark.parametrize(
    ("status", "body", "content_type", "cls", "message"),
    [
        (400, {"error": {"message": "bad input"}}, None, BadRequestError, "bad input"),
        (404, {"detail": "Not Found"}, None, NotFoundError, "Not Found"),
        (
            422,
            "Failed to deserialize the JSON body into the target type",
            "text/plain",
            UnprocessableEntityError,
            "Failed to deserialize the JSON body into the target type",
        ),
        (
            415,
            "Expected request with `Content-Type: application/json`",
            "text/plain",
            UnsupportedMediaTypeError,
            "Expected request with `Content-Type: application/json`",
        ),
    ],
)
def test_fake_typed_errors(
    fake: Any, status: int, body: Any, content_type: str | None, cls: type, message: str
) -> None:
    fake.app.faults.add(
        FaultSpec(
            path="/generate",
            status=status,
            body=body,
            content_type=content_type,
        )
    )
    client = InferenceHTTPClient(fake.url, retry_policy=FAST_RETRY)
    with pytest.raises(cls) as info:
        client.generate(prompt="x")
    err = info.value
    assert err.status_code == status
    assert err.message == message
    # The request id the server answered with (the fake echoes the client's).
    assert err.request_id
    assert err.request_id == err.headers["x-request-id"]
    assert requests_to(fake, "/generate") == 1  # 4xx are not retried
    client.close()


def test_fake_request_body_and_headers(fake: Any) -> None:
    client = InferenceHTTPClient(fake.url, api_key="sk-x")
    client.generate(prompt="The capital of France is", sampling_params={"max_new_tokens": 2})
    stats = fake.app.stats
    body = dict(stats["last_bodies"]["/generate"])
    assert len(body.pop("rid")) == 32  # generated, so that the request can be aborted
    assert body == {
        "return_logprob": False,
        "text": "The capital of France is",
        "sampling_params": {"max_new_tokens": 2},
    }
    headers = {k.lower(): v for k, v in dict(stats["last_headers"]["/generate"]).items()}
    assert headers["authorization"] == "Bearer sk-x"
    assert headers["content-type"] == "application/json"
    client.close()


@pytest.mark.anyio
async def test_fake_slow_generation_with_short_connect_timeout(fake: Any) -> None:
    fake.app.faults.add(FaultSpec(path="/generate", delay_s=0.6))  # 3x connect_timeout
    async with InferenceHTTPClient(fake.url, connect_timeout=0.2, max_retries=0) as client:
        out = await client.async_generate(prompt="x", sampling_params={"max_new_tokens": 2})
    assert out.meta_info.completion_tokens == 2


@pytest.mark.anyio
async def test_fake_hang_cancelled_then_reuse(fake: Any) -> None:
    fake.app.faults.add(FaultSpec(path="/generate", hang=True))
    async with InferenceHTTPClient(fake.url) as client:
        with anyio.move_on_after(0.3) as scope:
            await client.async_generate(prompt="x")
        assert scope.cancelled_caught
        out = await client.async_generate(prompt="y", sampling_params={"max_new_tokens": 2})
        assert out.output_ids == fake.app.output_ids(2)


def test_fake_server_sends_one_content_length(fake: Any) -> None:
    # A response must carry a single Content-Length (RFC 9110 §8.6); strict HTTP
    # parsers reject duplicates ("Duplicate Content-Length").
    import socket

    body = b'{"text": "hi", "sampling_params": {"max_new_tokens": 1}}'
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").lower().split("\r\n")
    assert head[0].startswith("http/1.1 200")
    assert sum(1 for line in head if line.startswith("content-length:")) == 1


def _mocked_answer() -> dict[str, object]:
    return {"text": "mocked", "output_ids": [1], "meta_info": {"id": "m", "finish_reason": None}}


def test_respx_started_after_first_use_still_mocks() -> None:
    # The driver caches the transport a session gives; respx patches httpx's lookup
    # on the class, which must invalidate that cache (and its end restore it).
    with FakeServer() as server, InferenceHTTPClient(server.url, max_retries=0) as client:
        assert client.generate("a").text != "mocked"
        with respx.mock(base_url=server.url, using="httpx") as router:
            route = router.post("/generate").mock(
                return_value=httpx.Response(200, json=_mocked_answer())
            )
            assert client.generate("b").text == "mocked"
            assert route.call_count == 1
        assert client.generate("c").text != "mocked"


@pytest.mark.anyio
async def test_respx_started_after_first_use_still_mocks_async() -> None:
    with FakeServer() as server:
        async with InferenceHTTPClient(server.url, max_retries=0) as client:
            assert (await client.async_generate("a")).text != "mocked"
            with respx.mock(base_url=server.url, using="httpx") as router:
                route = router.post("/generate").mock(
                    return_value=httpx.Response(200, json=_mocked_answer())
                )
                assert (await client.async_generate("b")).text == "mocked"
                assert route.call_count == 1
            assert (await client.async_generate("c")).text != "mocked"
