"""Bounded fan-out over loopback sockets: order, concurrency bound, errors, cancellation.

The server is the fake sglang app behind a small ASGI wrapper that delays or fails a
request according to its prompt (``"w w w @0.2"`` waits 0.2 s, ``"w !400"`` answers
400) and counts what it sees: requests, in-flight and peak, and client disconnects.
A result is matched to its prompt by ``prompt_tokens`` (the word count).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest

from rlinf_http import (
    BadRequestError,
    ChatCompletion,
    GenerateOutput,
    InferenceHTTPClient,
    InvalidRequestError,
)
from rlinf_http.testing import FakeServer, FakeSGLangApp


class DelayApp:
    def __init__(self) -> None:
        self.inner = FakeSGLangApp()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters (``in_flight`` is live and kept)."""
        with self.lock:
            self.requests = 0
            self.max_in_flight = self.in_flight
            self.disconnects = 0
            self.completed = 0

    @staticmethod
    def _prompt(body: Any) -> str:
        if not isinstance(body, dict):
            return ""
        if isinstance(body.get("text"), str):
            return body["text"]
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            return str(messages[-1].get("content", ""))
        return ""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in ("/generate", "/v1/chat/completions"):
            await self.inner(scope, receive, send)
            return
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        words = self._prompt(json.loads(body or b"null")).split()
        delay = next((float(w[1:]) for w in words if w.startswith("@")), 0.0)
        fail = next((int(w[1:]) for w in words if w.startswith("!")), None)
        with self.lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.sleep(delay)
            if fail is not None:
                payload = json.dumps({"error": {"message": f"prompt asked for {fail}"}}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": fail,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": payload})
            else:
                sent = False

                async def replay() -> dict:
                    nonlocal sent
                    if not sent:
                        sent = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

                await self.inner(scope, replay, send)
            with self.lock:
                self.completed += 1
        except BaseException:
            with self.lock:
                self.disconnects += 1
            raise
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(app=DelayApp()) as srv:
        yield srv


@pytest.fixture
def app(server: FakeServer) -> Iterator[DelayApp]:
    a: DelayApp = server.app
    # the server may finish a request a moment after the client saw its answer
    assert settled(a, lambda x: x.in_flight == 0), "a previous test left requests running"
    a.reset()
    yield a


def prompt(i: int, delay: float = 0.0, fail: int | None = None) -> str:
    words = ["w"] * (i + 1) + [f"@{delay}"]
    if fail is not None:
        words.append(f"!{fail}")
    return " ".join(words)


def tokens(i: int, fail: bool = False) -> int:
    return i + 2 + (1 if fail else 0)  # prompt_tokens of prompt(i)


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


SP = {"max_new_tokens": 2}


def settled(app: DelayApp, cond: Callable[[DelayApp], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond(app):
            return True
        time.sleep(0.01)
    return cond(app)


async def asettled(app: DelayApp, cond: Callable[[DelayApp], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond(app):
            return True
        await anyio.sleep(0.01)
    return cond(app)


# -- order, concurrency, progress --------------------------------------------------------------


@pytest.mark.anyio
async def test_results_in_input_order_with_mixed_latencies(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    n = 12
    delays = [0.24 - 0.02 * i for i in range(n)]  # later prompts finish first
    async with InferenceHTTPClient(server.url) as client:
        started = time.monotonic()
        out = await client.async_generate_many(
            [prompt(i, d) for i, d in enumerate(delays)], sampling_params=SP, concurrency=n
        )
        elapsed = time.monotonic() - started
    assert all(isinstance(o, GenerateOutput) for o in out)
    assert [o.meta_info.prompt_tokens for o in out] == [tokens(i) for i in range(n)]
    assert app.requests == n
    assert app.max_in_flight > n // 2  # run in parallel
    assert elapsed < 0.24 * n / 2


@pytest.mark.anyio
@pytest.mark.parametrize("concurrency", [1, 3])
async def test_concurrency_bound(
    anyio_backend: str, server: FakeServer, app: DelayApp, concurrency: int
) -> None:
    n = 10
    async with InferenceHTTPClient(server.url) as client:
        out = await client.async_generate_many(
            [prompt(i, 0.03) for i in range(n)], sampling_params=SP, concurrency=concurrency
        )
    assert [o.meta_info.prompt_tokens for o in out] == [tokens(i) for i in range(n)]
    assert app.requests == n
    assert app.max_in_flight == concurrency


@pytest.mark.anyio
async def test_progress_callback(anyio_backend: str, server: FakeServer, app: DelayApp) -> None:
    calls: list[tuple[int, int]] = []
    async with InferenceHTTPClient(server.url) as client:
        await client.async_generate_many(
            [prompt(i, 0.01 * (i % 3)) for i in range(7)],
            sampling_params=SP,
            concurrency=3,
            progress=lambda done, total: calls.append((done, total)),
        )
    assert calls == [(k, 7) for k in range(1, 8)]


@pytest.mark.anyio
async def test_empty_list(anyio_backend: str, server: FakeServer, app: DelayApp) -> None:
    async with InferenceHTTPClient(server.url) as client:
        assert await client.async_generate_many([], sampling_params=SP) == []
    assert app.requests == 0


@pytest.mark.anyio
async def test_input_ids_fan_out(anyio_backend: str, server: FakeServer, app: DelayApp) -> None:
    ids = [[1] * (i + 1) for i in range(5)]
    async with InferenceHTTPClient(server.url) as client:
        out = await client.async_generate_many(input_ids=ids, sampling_params=SP, concurrency=2)
    assert [o.meta_info.prompt_tokens for o in out] == [1, 2, 3, 4, 5]


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_return_exceptions_fills_slots(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    prompts = [prompt(i, 0.01, 400 if i in (1, 4) else None) for i in range(6)]
    async with InferenceHTTPClient(server.url, max_retries=0) as client:
        out = await client.async_generate_many(
            prompts, sampling_params=SP, concurrency=3, return_exceptions=True
        )
    for i, o in enumerate(out):
        if i in (1, 4):
            assert isinstance(o, BadRequestError)
            assert "prompt asked for 400" in (o.message or "")
        else:
            assert isinstance(o, GenerateOutput)
            assert o.meta_info.prompt_tokens == tokens(i)
    assert app.requests == 6


@pytest.mark.anyio
async def test_first_error_cancels_the_rest(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    n = 12
    prompts = [prompt(i, 0.05, 400) if i == 2 else prompt(i, 5.0) for i in range(n)]
    async with InferenceHTTPClient(server.url, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(BadRequestError) as info:  # the typed error, not an ExceptionGroup
            await client.async_generate_many(prompts, sampling_params=SP, concurrency=4)
        assert time.monotonic() - started < 2.0
        assert type(info.value) is BadRequestError
        assert await asettled(app, lambda a: a.in_flight == 0 and a.disconnects >= 3), vars(app)
        assert app.requests < n
        assert app.completed == 1  # only the failing one got an answer
        # the client is still usable
        out = await client.async_generate_many([prompt(0)], sampling_params=SP)
        assert out[0].meta_info.prompt_tokens == tokens(0)


@pytest.mark.anyio
async def test_cancel_from_outside(anyio_backend: str, server: FakeServer, app: DelayApp) -> None:
    async with InferenceHTTPClient(server.url) as client:
        with anyio.move_on_after(0.3) as scope:
            await client.async_generate_many(
                [prompt(i, 5.0) for i in range(8)], sampling_params=SP, concurrency=4
            )
        assert scope.cancelled_caught
        assert await asettled(app, lambda a: a.in_flight == 0 and a.disconnects == 4), vars(app)
        assert app.requests == 4
        out = await client.async_generate_many(
            [prompt(i) for i in range(3)], sampling_params=SP, concurrency=2
        )
        assert [o.meta_info.prompt_tokens for o in out] == [tokens(i) for i in range(3)]


@pytest.mark.anyio
async def test_fail_after_raises_timeout(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    async with InferenceHTTPClient(server.url) as client:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.2):
                await client.async_chat_completion_many(
                    [msgs(prompt(i, 5.0)) for i in range(3)], max_tokens=2
                )
        assert await asettled(app, lambda a: a.in_flight == 0 and a.disconnects == 3), vars(app)
        assert (await client.async_chat_completion(msgs("x"), max_tokens=1)).choices


@pytest.mark.anyio
async def test_invalid_item_raises_before_sending(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    async with InferenceHTTPClient(server.url) as client:
        with pytest.raises(InvalidRequestError, match=r"prompts\[2\]"):
            await client.async_generate_many(["a", "b", 3, "d"], sampling_params=SP)  # type: ignore[list-item]
        with pytest.raises(InvalidRequestError):
            await client.async_generate_many(["a", "b"], sampling_params={"max_new_tokens": -1})
        with pytest.raises(InvalidRequestError):
            await client.async_generate_many("abc")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError):
            await client.async_generate_many(["a"], concurrency=0)
        with pytest.raises(InvalidRequestError):
            await client.async_chat_completion_many([msgs("a"), [], msgs("c")])
        with pytest.raises(InvalidRequestError):
            await client.async_chat_completion_many([msgs("a"), "not a list"])  # type: ignore[list-item]
        with pytest.raises(InvalidRequestError):
            client.async_generate_as_completed(["a", None])  # type: ignore[list-item]
    assert app.requests == 0


# -- chat --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_chat_many(anyio_backend: str, server: FakeServer, app: DelayApp) -> None:
    n = 6
    calls: list[tuple[int, int]] = []
    async with InferenceHTTPClient(server.url) as client:
        out = await client.async_chat_completion_many(
            [msgs(prompt(i, 0.1 - 0.015 * i)) for i in range(n)],
            max_tokens=3,
            concurrency=4,
            progress=lambda d, t: calls.append((d, t)),
        )
    assert all(isinstance(o, ChatCompletion) for o in out)
    assert [o.usage.prompt_tokens for o in out if o.usage] == [tokens(i) for i in range(n)]
    assert out[0].choices[0].message.content == FakeSGLangApp.output_text(3)
    assert app.max_in_flight == 4
    assert calls[-1] == (n, n)


# -- as completed ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_as_completed_yields_each_index_once(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    n = 8
    delays = [0.02 * ((i * 5) % n) for i in range(n)]
    async with InferenceHTTPClient(server.url) as client:
        seen: list[int] = []
        async with client.async_generate_as_completed(
            [prompt(i, d) for i, d in enumerate(delays)], sampling_params=SP, concurrency=n
        ) as results:
            async for i, out in results:
                assert out.meta_info.prompt_tokens == tokens(i)
                seen.append(i)
    assert sorted(seen) == list(range(n))
    # completion order follows the latencies, not the input order
    assert seen == sorted(range(n), key=lambda i: delays[i])
    assert app.max_in_flight > 1


@pytest.mark.anyio
async def test_as_completed_early_exit_cancels(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    prompts = [prompt(0, 0.0)] + [prompt(i, 5.0) for i in range(1, 10)]
    async with InferenceHTTPClient(server.url) as client:
        started = time.monotonic()
        async with client.async_generate_as_completed(
            prompts, sampling_params=SP, concurrency=3
        ) as results:
            async for i, _ in results:
                assert i == 0
                break
        assert time.monotonic() - started < 2.0
        assert await asettled(app, lambda a: a.in_flight == 0 and a.disconnects >= 2), vars(app)
        assert app.requests <= 4
        out = await client.async_generate(prompt(1), sampling_params=SP)
        assert out.meta_info.prompt_tokens == tokens(1)


@pytest.mark.anyio
async def test_as_completed_error_raises_typed(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    prompts = [prompt(0, 0.0, 400)] + [prompt(i, 5.0) for i in range(1, 6)]
    async with InferenceHTTPClient(server.url, max_retries=0) as client:
        started = time.monotonic()
        try:
            async with client.async_generate_as_completed(
                prompts, sampling_params=SP, concurrency=3
            ) as results:
                async for _ in results:
                    pass
        except BaseException as exc:  # checked below, after the cancellation
            raised: BaseException | None = exc
        else:
            raised = None
        assert time.monotonic() - started < 2.0
        assert await asettled(app, lambda a: a.in_flight == 0 and a.disconnects >= 2), vars(app)
        assert app.requests < len(prompts)
    # AsCompleted: "otherwise the first error is raised from the iteration"
    assert type(raised) is BadRequestError, repr(raised)


@pytest.mark.anyio
async def test_as_completed_return_exceptions(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    prompts = [prompt(i, 0.01, 400 if i == 3 else None) for i in range(5)]
    got: dict[int, Any] = {}
    async with InferenceHTTPClient(server.url, max_retries=0) as client:
        async with client.async_generate_as_completed(
            prompts, sampling_params=SP, concurrency=2, return_exceptions=True
        ) as results:
            async for i, out in results:
                got[i] = out
    assert sorted(got) == list(range(5))
    assert isinstance(got[3], BadRequestError)
    assert all(isinstance(got[i], GenerateOutput) for i in (0, 1, 2, 4))


@pytest.mark.anyio
async def test_as_completed_consumer_error_propagates(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    async with InferenceHTTPClient(server.url) as client:
        try:
            async with client.async_generate_as_completed(
                [prompt(0)] + [prompt(i, 5.0) for i in range(1, 4)], sampling_params=SP
            ) as results:
                async for _ in results:
                    raise KeyError("consumer failed")
        except BaseException as exc:
            raised: BaseException | None = exc
        else:
            raised = None
        assert await asettled(app, lambda a: a.in_flight == 0 and a.disconnects == 3), vars(app)
    # the consumer's own exception leaves the block as it is, not in an ExceptionGroup
    assert type(raised) is KeyError, repr(raised)


# -- sync wrappers -----------------------------------------------------------------------------


def test_generate_many_sync(server: FakeServer, app: DelayApp) -> None:
    calls: list[tuple[int, int]] = []
    with InferenceHTTPClient(server.url) as client:
        out = client.generate_many(
            [prompt(i, 0.05 - 0.01 * i) for i in range(5)],
            sampling_params=SP,
            concurrency=2,
            progress=lambda d, t: calls.append((d, t)),
        )
        assert [o.meta_info.prompt_tokens for o in out] == [tokens(i) for i in range(5)]
        assert app.max_in_flight == 2
        assert calls == [(k, 5) for k in range(1, 6)]
        # and again: each call has its own loop and session
        out = client.chat_completion_many([msgs(prompt(i)) for i in range(3)], max_tokens=2)
        assert [o.usage.prompt_tokens for o in out if o.usage] == [tokens(i) for i in range(3)]


def test_generate_many_sync_first_error(server: FakeServer, app: DelayApp) -> None:
    prompts = [prompt(0, 0.05, 400)] + [prompt(i, 5.0) for i in range(1, 6)]
    with InferenceHTTPClient(server.url, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(BadRequestError):
            client.generate_many(prompts, sampling_params=SP, concurrency=3)
        assert time.monotonic() - started < 2.0
        assert settled(app, lambda a: a.in_flight == 0 and a.disconnects >= 2), vars(app)
        out = client.generate_many([prompt(1)], sampling_params=SP)
        assert out[0].meta_info.prompt_tokens == tokens(1)


def test_generate_many_sync_return_exceptions(server: FakeServer, app: DelayApp) -> None:
    with InferenceHTTPClient(server.url, max_retries=0) as client:
        out = client.chat_completion_many(
            [msgs(prompt(0)), msgs(prompt(1, 0, 400))], max_tokens=1, return_exceptions=True
        )
    assert isinstance(out[0], ChatCompletion)
    assert isinstance(out[1], BadRequestError)


def test_generate_many_from_threads(server: FakeServer, app: DelayApp) -> None:
    with InferenceHTTPClient(server.url) as client:

        def job(k: int) -> list[int]:
            out = client.generate_many(
                [prompt(i, 0.02) for i in range(k, k + 4)], sampling_params=SP, concurrency=2
            )
            return [o.meta_info.prompt_tokens for o in out]

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(job, [0, 4, 8, 12]))
        assert results == [[tokens(i) for i in range(k, k + 4)] for k in (0, 4, 8, 12)]
        assert app.requests == 16
        # the client's own sync and async paths still work afterwards
        assert client.generate(prompt(0), sampling_params=SP).meta_info.prompt_tokens == 2


def test_chat_many_from_thread_while_loop_runs_elsewhere(server: FakeServer, app: DelayApp) -> None:
    client = InferenceHTTPClient(server.url)

    async def main() -> list[Any]:
        first = await client.async_generate(prompt(0), sampling_params=SP)
        assert first.meta_info.prompt_tokens == tokens(0)
        # the loop's thread hands the sync fan-out to a worker thread
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: client.chat_completion_many([msgs(prompt(i)) for i in range(3)])
        )

    out = asyncio.run(main())
    assert [o.usage.prompt_tokens for o in out if o.usage] == [tokens(i) for i in range(3)]
    client.close()


@pytest.mark.anyio
async def test_sync_many_inside_event_loop_raises(
    anyio_backend: str, server: FakeServer, app: DelayApp
) -> None:
    client = InferenceHTTPClient(server.url)
    with pytest.raises(RuntimeError, match="event loop"):
        client.generate_many([prompt(0)], sampling_params=SP)
    with pytest.raises(RuntimeError, match="async_"):
        client.chat_completion_many([msgs("x")])
    assert app.requests == 0
    await client.aclose()


def test_sync_many_invalid_input_before_sending(server: FakeServer, app: DelayApp) -> None:
    with InferenceHTTPClient(server.url) as client:
        with pytest.raises(InvalidRequestError):
            client.generate_many(["a", 1])  # type: ignore[list-item]
        with pytest.raises(InvalidRequestError):
            client.chat_completion_many([msgs("a"), [{"role": "user"}], []])
        with pytest.raises(InvalidRequestError):
            client.generate_many(["a"], concurrency=-1)
    assert app.requests == 0
