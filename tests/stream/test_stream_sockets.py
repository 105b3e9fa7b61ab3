"""Streaming over real loopback sockets against the fake sglang server (asyncio and trio)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from rlinf_http import (
    APIConnectionError,
    IncompleteStreamError,
    InferenceHTTPClient,
    RetryPolicy,
    StreamError,
    StreamErrorEvent,
)
from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp, FaultSpec

# Known bug, demonstrated once by test_async_stream_early_close_finalizes_byte_iterator:
# an AsyncStream closed early leaves httpx's aiter_bytes() generator unfinalized, which
# trio reports as a ResourceWarning. Ignored elsewhere so each test checks its own point.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._models.Response.aiter:ResourceWarning"
)

N = 8
MSGS = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def cumulative() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=0.002)) as srv:
        yield srv


@pytest.fixture(scope="module")
def incremental() -> Iterator[FakeServer]:
    cfg = FakeConfig(itl_s=0.002, incremental_streaming=True, stream_interval=3)
    with FakeServer(config=cfg) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow() -> Iterator[FakeServer]:
    # 200 tokens at 50 ms each: only a disconnect ends a stream early
    with FakeServer(config=FakeConfig(ttft_s=0.01, itl_s=0.05)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    servers = [
        request.getfixturevalue(name)
        for name in ("cumulative", "incremental", "slow")
        if name in request.fixturenames
    ]
    for srv in servers:
        srv.app.faults.clear()
        srv.app.reset_stats()
    yield
    for srv in servers:
        srv.app.faults.clear()


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


async def await_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await anyio.sleep(0.01)
    return cond()


def disconnected(srv: FakeServer, before: int = 0) -> Callable[[], bool]:
    def check() -> bool:
        s = srv.app.stats
        return s["disconnects"] > before and s["in_flight"] == 0

    return check


def seq(chunks: list[Any]) -> list[tuple[str, str, list[int], list[int]]]:
    return [(c.text, c.delta, c.output_ids, c.delta_output_ids) for c in chunks]


def sampling(n: int = N) -> dict[str, Any]:
    return {"max_new_tokens": n, "ignore_eos": True}


# -- cumulative vs incremental servers ---------------------------------------------------------


def check_stream(chunks: list[Any], n: int = N) -> None:
    assert chunks[-1].text == FakeSGLangApp.output_text(n)
    assert "".join(c.delta for c in chunks) == chunks[-1].text
    assert chunks[-1].output_ids == FakeSGLangApp.output_ids(n)
    assert [i for c in chunks for i in c.delta_output_ids] == chunks[-1].output_ids
    for prev, cur in itertools.pairwise(chunks):
        assert cur.text == prev.text + cur.delta
    assert chunks[-1].meta_info.finish_reason is not None
    assert chunks[-1].meta_info.finish_reason.type == "length"


@pytest.mark.parametrize("mode", ["auto", "explicit"])
def test_generate_stream_modes_sync(
    cumulative: FakeServer, incremental: FakeServer, mode: str
) -> None:
    out = {}
    for name, srv in (("cumulative", cumulative), ("incremental", incremental)):
        with InferenceHTTPClient(srv.url) as client:
            kw = {"stream_mode": name} if mode == "explicit" else {}
            with client.generate("hi", sampling_params=sampling(), stream=True, **kw) as stream:
                out[name] = list(stream)
        check_stream(out[name])
    # the incremental server sends every 3 tokens, the cumulative one every token
    assert len(out["cumulative"]) == N
    assert len(out["incremental"]) == 3
    texts = {c.text for c in out["cumulative"]}
    assert all(c.text in texts for c in out["incremental"])


@pytest.mark.anyio
async def test_generate_stream_modes_async(
    anyio_backend: str, cumulative: FakeServer, incremental: FakeServer
) -> None:
    cfg = FakeConfig(itl_s=0.002, incremental_streaming=True)  # stream_interval 1
    with FakeServer(config=cfg) as inc1:
        results = []
        for srv in (cumulative, inc1):
            async with InferenceHTTPClient(srv.url) as client:
                stream = await client.async_generate("hi", sampling_params=sampling(), stream=True)
                async with stream:
                    results.append([c async for c in stream])
    assert seq(results[0]) == seq(results[1])
    check_stream(results[0])
    assert [c.delta for c in results[0]] == [FakeSGLangApp.output_text(i + 1, i) for i in range(N)]


@pytest.mark.anyio
async def test_generate_stream_logprobs_and_meta(
    anyio_backend: str, incremental: FakeServer
) -> None:
    async with InferenceHTTPClient(incremental.url) as client:
        stream = await client.async_generate(
            "a b c", sampling_params=sampling(4), return_logprob=True, stream=True, rid="my-rid"
        )
        async with stream:
            chunks = [c async for c in stream]
    assert chunks[-1].text == FakeSGLangApp.output_text(4)
    assert chunks[-1].meta_info.completion_tokens == 4
    assert chunks[-1].meta_info.id == "my-rid"
    assert incremental.app.stats["last_bodies"]["/generate"]["stream"] is True


# -- chat --------------------------------------------------------------------------------------


def check_chat(chunks: list[Any], n: int = N) -> None:
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == FakeSGLangApp.output_text(n)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length" and set(finishes[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == n
    assert last.usage.total_tokens == last.usage.prompt_tokens + n


def test_chat_stream_with_usage_sync(cumulative: FakeServer) -> None:
    with InferenceHTTPClient(cumulative.url) as client:
        with client.chat_completion(
            MSGS, max_tokens=N, stream=True, stream_options={"include_usage": True}
        ) as stream:
            chunks = list(stream)
    check_chat(chunks)
    body = cumulative.app.stats["last_bodies"]["/v1/chat/completions"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


@pytest.mark.anyio
async def test_chat_stream_with_usage_async(anyio_backend: str, cumulative: FakeServer) -> None:
    async with InferenceHTTPClient(cumulative.url) as client:
        stream = await client.async_chat_completion(
            MSGS, max_tokens=N, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            chunks = [c async for c in stream]
    check_chat(chunks)


def test_chat_stream_without_usage(cumulative: FakeServer) -> None:
    with InferenceHTTPClient(cumulative.url) as client:
        with client.chat_completion(MSGS, max_tokens=3, stream=True) as stream:
            chunks = list(stream)
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


# -- in-stream errors and truncation --------------------------------------------------------------


def test_error_event_sync(cumulative: FakeServer) -> None:
    cumulative.app.faults.add(FaultSpec(path="/generate", stream_error_after=3))
    with InferenceHTTPClient(cumulative.url, max_retries=3) as client:
        got: list[Any] = []
        with pytest.raises(StreamErrorEvent) as info:
            with client.generate("hi", sampling_params=sampling(), stream=True) as stream:
                for chunk in stream:
                    got.append(chunk)
        assert len(got) == 3
        assert info.value.code == 500
        assert "injected stream error" in str(info.value)
        assert cumulative.app.stats["requests"]["/generate"] == 1  # not retried
        assert client.generate("again", sampling_params=sampling(2)).text  # still usable


@pytest.mark.anyio
async def test_error_event_async_chat(anyio_backend: str, cumulative: FakeServer) -> None:
    cumulative.app.faults.add(FaultSpec(path="/v1/chat/completions", stream_error_after=2))
    async with InferenceHTTPClient(cumulative.url, max_retries=3) as client:
        stream = await client.async_chat_completion(MSGS, max_tokens=N, stream=True)
        with pytest.raises(StreamErrorEvent):
            async with stream:
                async for _ in stream:
                    pass
        assert cumulative.app.stats["requests"]["/v1/chat/completions"] == 1
        out = await client.async_chat_completion(MSGS, max_tokens=2)
        assert out.choices[0].message.content


def test_truncated_stream_sync(cumulative: FakeServer) -> None:
    cumulative.app.faults.add(FaultSpec(path="/generate", truncate_stream_after=2))
    with InferenceHTTPClient(cumulative.url, max_retries=3) as client:
        got: list[Any] = []
        with pytest.raises((StreamError, APIConnectionError)):
            with client.generate("hi", sampling_params=sampling(), stream=True) as stream:
                for chunk in stream:
                    got.append(chunk)
        assert len(got) == 2
        assert cumulative.app.stats["requests"]["/generate"] == 1  # no retry after the start
        assert client.generate("again", sampling_params=sampling(2)).text


@pytest.mark.anyio
async def test_truncated_stream_async(anyio_backend: str, cumulative: FakeServer) -> None:
    cumulative.app.faults.add(FaultSpec(path="/generate", truncate_stream_after=2))
    async with InferenceHTTPClient(cumulative.url, max_retries=3) as client:
        got: list[Any] = []
        with pytest.raises((StreamError, APIConnectionError)):
            stream = await client.async_generate("hi", sampling_params=sampling(), stream=True)
            async with stream:
                async for chunk in stream:
                    got.append(chunk)
        assert len(got) == 2
        assert cumulative.app.stats["requests"]["/generate"] == 1
        assert (await client.async_generate("again", sampling_params=sampling(2))).text


def test_truncated_stream_is_an_incomplete_stream_error(cumulative: FakeServer) -> None:
    # _errors: IncompleteStreamError = "the stream ended (connection closed) before
    # data: [DONE]"; StreamError = "a streamed response failed after it started".
    cumulative.app.faults.add(FaultSpec(path="/generate", truncate_stream_after=2))
    with InferenceHTTPClient(cumulative.url) as client:
        with pytest.raises(IncompleteStreamError):
            with client.generate("hi", sampling_params=sampling(), stream=True) as stream:
                list(stream)


@pytest.mark.anyio
async def test_truncated_stream_is_an_incomplete_stream_error_async(
    anyio_backend: str, cumulative: FakeServer
) -> None:
    cumulative.app.faults.add(FaultSpec(path="/generate", truncate_stream_after=2))
    async with InferenceHTTPClient(cumulative.url) as client:
        stream = await client.async_generate("hi", sampling_params=sampling(), stream=True)
        with pytest.raises(IncompleteStreamError):
            async with stream:
                async for _ in stream:
                    pass


# -- closing early -----------------------------------------------------------------------------


def test_break_closes_at_once_sync(slow: FakeServer) -> None:
    with InferenceHTTPClient(slow.url) as client:
        started = time.monotonic()
        with client.generate("hi", sampling_params=sampling(200), stream=True) as stream:
            for i, _ in enumerate(stream):
                if i == 1:
                    break
        assert wait_for(disconnected(slow)), slow.app.stats
        assert time.monotonic() - started < 3.0
        assert client.generate("again", sampling_params=sampling(2)).text


def test_exception_inside_with_closes_sync(slow: FakeServer) -> None:
    with InferenceHTTPClient(slow.url) as client:
        with pytest.raises(KeyError):
            with client.chat_completion(MSGS, max_tokens=200, stream=True) as stream:
                next(stream)
                raise KeyError("user code failed")
        assert wait_for(disconnected(slow)), slow.app.stats
        assert client.chat_completion(MSGS, max_tokens=2).choices


def test_close_without_reading_sync(slow: FakeServer) -> None:
    with InferenceHTTPClient(slow.url) as client:
        stream = client.generate("hi", sampling_params=sampling(200), stream=True)
        stream.close()
        assert wait_for(disconnected(slow)), slow.app.stats
        assert list(stream) == []  # a closed stream yields nothing more


@pytest.mark.anyio
async def test_break_closes_at_once_async(anyio_backend: str, slow: FakeServer) -> None:
    async with InferenceHTTPClient(slow.url) as client:
        stream = await client.async_generate("hi", sampling_params=sampling(200), stream=True)
        async with stream:
            i = 0
            async for _ in stream:
                i += 1
                if i == 2:
                    break
        assert await await_for(disconnected(slow)), slow.app.stats
        assert (await client.async_generate("again", sampling_params=sampling(2))).text


@pytest.mark.anyio
async def test_exception_inside_async_with_closes(anyio_backend: str, slow: FakeServer) -> None:
    async with InferenceHTTPClient(slow.url) as client:
        with pytest.raises(KeyError):
            stream = await client.async_chat_completion(MSGS, max_tokens=200, stream=True)
            async with stream:
                await stream.__anext__()
                raise KeyError("user code failed")
        assert await await_for(disconnected(slow)), slow.app.stats
        assert (await client.async_chat_completion(MSGS, max_tokens=2)).choices


@pytest.mark.anyio
async def test_cancel_with_fail_after_closes(anyio_backend: str, slow: FakeServer) -> None:
    async with InferenceHTTPClient(slow.url) as client:
        got = 0
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.3):
                stream = await client.async_generate(
                    "hi", sampling_params=sampling(200), stream=True
                )
                async with stream:
                    async for _ in stream:
                        got += 1
        assert 0 < got < 200
        assert await await_for(disconnected(slow)), slow.app.stats
        assert (await client.async_generate("again", sampling_params=sampling(2))).text


@pytest.mark.anyio
async def test_cancel_before_headers_closes(anyio_backend: str, slow: FakeServer) -> None:
    slow.app.faults.add(FaultSpec(path="/generate", hang=True))
    async with InferenceHTTPClient(slow.url) as client:
        with anyio.move_on_after(0.2) as scope:
            await client.async_generate("hi", sampling_params=sampling(200), stream=True)
        assert scope.cancelled_caught
        assert await await_for(disconnected(slow)), slow.app.stats
        assert (await client.async_generate("again", sampling_params=sampling(2))).text


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_cancel_with_asyncio_wait_for_closes(anyio_backend: str, slow: FakeServer) -> None:
    async with InferenceHTTPClient(slow.url) as client:

        async def consume() -> int:
            n = 0
            stream = await client.async_chat_completion(MSGS, max_tokens=200, stream=True)
            async with stream:
                async for _ in stream:
                    n += 1
            return n

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), 0.3)
        assert await await_for(disconnected(slow)), slow.app.stats
        assert (await client.async_chat_completion(MSGS, max_tokens=2)).choices


# -- retries before the first byte, pooling ----------------------------------------------------


def test_retry_before_first_byte_sync(cumulative: FakeServer) -> None:
    cumulative.app.faults.add(
        FaultSpec(path="/generate", status=503, headers={"Retry-After": "0"}, times=2)
    )
    with InferenceHTTPClient(cumulative.url, max_retries=2) as client:
        with client.generate("hi", sampling_params=sampling(), stream=True) as stream:
            chunks = list(stream)
    check_stream(chunks)
    assert cumulative.app.stats["requests"]["/generate"] == 3


@pytest.mark.anyio
async def test_retry_before_first_byte_async(anyio_backend: str, cumulative: FakeServer) -> None:
    cumulative.app.faults.add(
        FaultSpec(path="/v1/chat/completions", status=503, headers={"Retry-After": "0"})
    )
    policy = RetryPolicy(max_retries=1, initial_delay=0.01)
    async with InferenceHTTPClient(cumulative.url, retry_policy=policy) as client:
        stream = await client.async_chat_completion(
            MSGS, max_tokens=N, stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            chunks = [c async for c in stream]
    check_chat(chunks)
    assert cumulative.app.stats["requests"]["/v1/chat/completions"] == 2


def test_stream_max_retries_zero_raises_status(cumulative: FakeServer) -> None:
    from rlinf_http import ServiceUnavailableError

    cumulative.app.faults.add(FaultSpec(path="/generate", status=503))
    with InferenceHTTPClient(cumulative.url, max_retries=2) as client:
        with pytest.raises(ServiceUnavailableError):
            client.generate("hi", sampling_params=sampling(), stream=True, max_retries=0)
    assert cumulative.app.stats["requests"]["/generate"] == 1


def test_stream_read_to_done_reuses_connection_sync(cumulative: FakeServer) -> None:
    with InferenceHTTPClient(cumulative.url) as client:
        with client.generate("hi", sampling_params=sampling(), stream=True) as stream:
            list(stream)
        opened = cumulative.connections_opened
        for _ in range(3):
            with client.chat_completion(MSGS, max_tokens=3, stream=True) as stream:
                list(stream)
            client.generate("x", sampling_params=sampling(2))
        assert cumulative.connections_opened == opened


@pytest.mark.anyio
async def test_stream_read_to_done_reuses_connection_async(
    anyio_backend: str, cumulative: FakeServer
) -> None:
    async with InferenceHTTPClient(cumulative.url) as client:
        stream = await client.async_generate("hi", sampling_params=sampling(), stream=True)
        async with stream:
            [c async for c in stream]
        opened = cumulative.connections_opened
        for _ in range(3):
            stream = await client.async_generate("hi", sampling_params=sampling(), stream=True)
            async with stream:
                [c async for c in stream]
            await client.async_generate("x", sampling_params=sampling(2))
        assert cumulative.connections_opened == opened


def test_early_close_does_not_return_connection(slow: FakeServer) -> None:
    with InferenceHTTPClient(slow.url) as client:
        client.generate("warm", sampling_params=sampling(1))
        opened = slow.connections_opened
        with client.generate("hi", sampling_params=sampling(200), stream=True) as stream:
            next(stream)
        assert wait_for(disconnected(slow))
        # the half-read connection is gone: the next request needs a new one
        client.generate("x", sampling_params=sampling(1))
        assert slow.connections_opened == opened + 1


@pytest.mark.anyio
async def test_async_stream_early_close_finalizes_byte_iterator(
    anyio_backend: str, slow: FakeServer
) -> None:
    # Leaving ``async with stream`` early must close the body iterator too; trio warns
    # (ResourceWarning) about an async generator left for the garbage collector.
    async with InferenceHTTPClient(slow.url) as client:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stream = await client.async_generate("hi", sampling_params=sampling(200), stream=True)
            async with stream:
                async for _ in stream:
                    break
            del stream
            gc.collect()
            await anyio.sleep(0.01)
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []
