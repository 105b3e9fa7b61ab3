"""Partial rollouts against the fake server over loopback sockets: a generation
aborted mid-way (``abort_request(rid)``, ``pause_generation(mode="abort")``) is
resumed after a weight-version change; the merged result equals an uninterrupted
generation token for token and shows both versions' spans."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from rlinf_http import (
    BadRequestError,
    FinishAbort,
    FinishLength,
    GenerateOutput,
    InferenceHTTPClient,
    InvalidRequestError,
    weight_version_mix,
)
from rlinf_http.testing import FakeConfig, FakeServer, FakeSGLangApp, FaultSpec

Fake = FakeSGLangApp


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    # 10 ms per token: a 100-token generation runs ~1 s unless aborted
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
        client.update_weight_version("default")


def wait_running(srv: FakeServer, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while srv.app.running_requests < count:
        assert time.monotonic() < deadline, "the generation never started"
        time.sleep(0.005)


def assert_whole(result: GenerateOutput, n: int) -> None:
    """``result`` is what one uninterrupted generation of ``n`` tokens returns."""
    assert result.output_ids == Fake.output_ids(n)
    assert result.text == Fake.output_text(n)
    logprobs = result.meta_info.output_token_logprobs
    assert logprobs is not None
    assert [x.token_id for x in logprobs] == result.output_ids
    assert [x.logprob for x in logprobs] == [Fake.output_logprob(i) for i in range(n)]
    assert result.meta_info.completion_tokens == n
    assert result.finish_reason == FinishLength(type="length", length=n)


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        out["result"] = fn()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_abort_request_midway_then_resume_on_new_weights(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        thread, out = in_thread(
            lambda: client.generate(
                input_ids=[1, 2, 3],
                sampling_params={"max_new_tokens": 100},
                return_logprob=True,
                rid="roll-1",
                routing_key="sess-1",
            )
        )
        wait_running(server)
        client.abort_request("roll-1")
        thread.join(10)
        first = out["result"]
        assert isinstance(first.finish_reason, FinishAbort)
        kept = len(first.output_ids)
        assert 0 < kept < 100
        assert first.output_ids == Fake.output_ids(kept)  # partial output kept, with logprobs
        assert len(first.meta_info.output_token_logprobs or []) == kept
        client.update_weight_version("v2")
        final = client.resume(first)
    assert_whole(final, 100)
    mix = weight_version_mix(final)
    assert mix.mixed and mix.ranges == {"default": [(0, kept)], "v2": [(kept, 100)]}
    assert final.meta_info.weight_version == "v2" and final.rid != "roll-1"
    body = server.app.stats["last_bodies"]["/generate"]
    assert body["input_ids"] == [1, 2, 3, *Fake.output_ids(kept)]
    assert body["sampling_params"] == {"max_new_tokens": 100 - kept}
    assert server.app.request_log[-1]["routing_key"] == "sess-1"


@pytest.mark.anyio
async def test_pause_abort_then_continue_then_async_resume(
    anyio_backend: str, server: FakeServer
) -> None:
    results: list[GenerateOutput] = []
    async with InferenceHTTPClient(server.url) as client:

        async def generate() -> None:
            results.append(
                await client.async_generate(
                    "a prompt",
                    sampling_params={"max_new_tokens": 80, "temperature": 0.5},
                    return_logprob=True,
                )
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(generate)
            with anyio.fail_after(10):
                while not server.app.running_requests:
                    await anyio.sleep(0.005)
            # a version change while it runs (no abort) splits its spans
            await client.async_update_weight_version("v2", abort_all_requests=False)
            await client.async_pause_generation(mode="abort")
        (first,) = results
        assert isinstance(first.finish_reason, FinishAbort)
        await client.async_update_weight_version("v3")
        await client.async_continue_generation()
        final = await client.async_resume(first)
    assert_whole(final, 80)
    versions = weight_version_mix(final).versions
    assert versions[-1] == "v3" and set(versions) <= {"default", "v2", "v3"}
    spans = final.meta_info.weight_versions or []
    assert spans[0].start == 0 and spans[-1].end == 80
    assert all(a.end == b.start for a, b in itertools.pairwise(spans))
    body = server.app.stats["last_bodies"]["/generate"]
    assert body["text"] == "a prompt" + first.text  # a text prompt resumes as text
    assert body["sampling_params"]["temperature"] == 0.5


def test_resume_many_resumes_only_the_aborted(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        thread, out = in_thread(
            lambda: client.generate_many(
                input_ids=[[1], [2], [3]],
                sampling_params={"max_new_tokens": 60},
                return_logprob=True,
            )
        )
        wait_running(server, 3)
        client.pause_generation(mode="abort")
        thread.join(10)
        aborted = out["result"]
        client.continue_generation()
        done = client.generate(input_ids=[4], sampling_params={"max_new_tokens": 3})
        batch = [*aborted, done]
        final = client.resume_many(batch, concurrency=2)
        assert final[3] is done  # finished results come back as they are
        for result in final[:3]:
            assert_whole(result, 60)
        assert client.resume_many([done]) == [done]
        assert server.app.stats["requests"].get("/generate", 0) >= 7


def test_a_group_of_samples_is_resumed_sample_by_sample(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        thread, out = in_thread(
            lambda: client.generate_group(
                input_ids=[7, 8], n=3, sampling_params={"max_new_tokens": 50}, return_logprob=True
            )
        )
        wait_running(server, 3)
        client.abort_request(abort_all=True)
        thread.join(10)
        group = out["result"]
        assert all(isinstance(r.finish_reason, FinishAbort) for r in group)
        final = client.resume_many(group)
    for result in final:
        assert_whole(result, 50)


def test_a_text_completion_exposes_the_weight_version_and_spans(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        client.update_weight_version("v7")
        chat = client.chat_completion([{"role": "user", "content": "hi"}], max_tokens=3)
        text = client.completion("hi", max_tokens=2)
    assert chat.weight_version == "v7" and text.weight_version == "v7"
    assert weight_version_mix(chat).ranges == {"v7": [(0, 3)]}
    assert weight_version_mix(text).ranges == {"v7": [(0, 2)]}


def test_stream_chunks_carry_split_spans_and_are_not_resumable(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        with client.generate(
            input_ids=[1, 2], sampling_params={"max_new_tokens": 40}, stream=True
        ) as stream:
            chunks = [next(stream)]
            client.update_weight_version("v2", abort_all_requests=False)
            chunks.extend(stream)
        last = chunks[-1]
        mix = weight_version_mix(last)
        assert mix.mixed and mix.versions == ["default", "v2"]
        assert last.meta_info.weight_versions is not None
        assert last.meta_info.weight_versions[-1].end == 40
        assert client.resume(last) is last  # finished: nothing to do
        with client.generate(
            input_ids=[1, 2], sampling_params={"max_new_tokens": 40}, stream=True, rid="s-1"
        ) as stream:
            next(stream)
            client.abort_request("s-1")
            aborted = list(stream)[-1]
        assert isinstance(aborted.finish_reason, FinishAbort)
        with pytest.raises(InvalidRequestError, match="does not remember its request"):
            client.resume(aborted)


def test_the_fake_server_continues_a_resumed_prefix(server: FakeServer) -> None:
    ids = Fake.output_ids(3)
    with InferenceHTTPClient(server.url) as client:
        sp = {"max_new_tokens": 2}
        assert (
            client.generate(input_ids=[5, *ids], sampling_params=sp).output_ids
            == (Fake.output_ids(5)[3:])
        )
        assert client.generate("hi" + Fake.output_text(3), sampling_params=sp).text == (
            Fake.output_text(5, start=3)
        )
        # output tokens alone, or not the first k of them, are an ordinary prompt
        assert client.generate(input_ids=ids, sampling_params=sp).output_ids == Fake.output_ids(2)
        assert client.generate(input_ids=[5, ids[1]], sampling_params=sp).output_ids == (
            Fake.output_ids(2)
        )


def test_resume_many_puts_a_refused_continuation_in_its_slot(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        thread, out = in_thread(
            lambda: client.generate_many(
                input_ids=[[1], [2]], sampling_params={"max_new_tokens": 60}
            )
        )
        wait_running(server, 2)
        client.abort_request(abort_all=True)
        thread.join(10)
        aborted = out["result"]
        server.app.faults.add(
            FaultSpec(path="/generate", status=400, body={"error": {"message": "no"}})
        )
        seen: list[tuple[int, int]] = []
        final = client.resume_many(
            aborted,
            concurrency=1,
            return_exceptions=True,
            progress=lambda done, total: seen.append((done, total)),
        )
        assert sum(isinstance(r, BadRequestError) for r in final) == 1
        assert sum(isinstance(r, GenerateOutput) and len(r.output_ids) == 60 for r in final) == 1
        assert seen[-1] == (2, 2)
        server.app.faults.add(
            FaultSpec(path="/generate", status=400, body={"error": {"message": "no"}})
        )
        with pytest.raises(BadRequestError):
            client.resume(aborted[0])
