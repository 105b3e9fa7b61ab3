"""The data-plane methods against the fake sglang server on real loopback sockets:
sync and async, streamed where it applies, request ids end to end (generated,
echoed, aborted, duplicated), routing keys and steering fields as the server saw
them, LoRA adapters."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from rlinf_http import (
    BadRequestError,
    Completion,
    DuplicateRequestIdError,
    EmbeddingResponse,
    EncodeOutput,
    FinishAbort,
    GenerateOutput,
    InferenceHTTPClient,
)
from rlinf_http.testing import FakeConfig, FakeServer


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig()) as srv:
        yield srv


@pytest.fixture
def slow() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(itl_s=0.02)) as srv:
        yield srv


def logged(server: FakeServer, path: str) -> list[dict[str, Any]]:
    return [r for r in server.app.request_log if r["path"] == path]


def test_completion_text_ids_and_stream(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        out = client.completion("one two three", max_tokens=3, routing_key="s1", priority=4)
        assert isinstance(out, Completion)
        assert out.choices[0].finish_reason == "length"
        assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (3, 3)
        ids = client.completion([5, 6], max_tokens=2)  # token ids: fine on a server
        assert ids.usage.prompt_tokens == 2
        with client.completion("a", max_tokens=3, stream=True) as stream:
            pieces = [c.choices[0].text for c in stream if c.choices]
        assert "".join(pieces) == " tok0 tok1 tok2"
    first = logged(server, "/v1/completions")[0]
    assert (first["routing_key"], first["priority"]) == ("s1", 4)


@pytest.mark.anyio
async def test_async_completion_stream_and_fanout(server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        stream = await client.async_completion("a", max_tokens=2, stream=True)
        async with stream:
            text = "".join([c.choices[0].text async for c in stream if c.choices])
        assert text == " tok0 tok1"
        outs = await client.async_completion_many(
            ["a", "b c"], max_tokens=1, routing_key=["k-a", "k-b"]
        )
        assert [o.usage.prompt_tokens for o in outs] == [1, 2]
    keys = {r["routing_key"] for r in logged(server, "/v1/completions")}
    assert keys == {None, "k-a", "k-b"}


def test_embed_is_deterministic_and_numpy(server: FakeServer) -> None:
    np = pytest.importorskip("numpy")
    with InferenceHTTPClient(server.url) as client:
        a = client.embed("hello big world")
        b = client.embed(["hello big world", "other"])
        arr = client.embed(["hello big world", "other"], as_numpy=True)
    assert isinstance(a, EmbeddingResponse)
    assert a.vectors[0] == b.vectors[0] and b.vectors[0] != b.vectors[1]
    assert math.isclose(sum(x * x for x in a.vectors[0]), 1.0, rel_tol=1e-6)
    assert arr.shape == (2, len(a.vectors[0])) and arr.dtype == np.float32
    assert np.allclose(arr[0], a.vectors[0])


@pytest.mark.anyio
async def test_async_embed_encode_tokenize_roundtrip(server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        emb = await client.async_embed("x y", routing_key="e1")
        one = await client.async_encode("x y")
        assert isinstance(one, EncodeOutput)
        assert one.embedding == pytest.approx(emb.vectors[0])
        many = await client.async_encode(["x y", "z"])
        assert len(many) == 2 and many[0].embedding == pytest.approx(one.embedding)
        tok = await client.async_tokenize("alpha beta gamma")
        assert tok.count == 3 and isinstance(tok.tokens, list) and len(tok.tokens) == 3
        text = await client.async_detokenize(tok.tokens)  # type: ignore[arg-type]
        assert text.text == "alpha beta gamma"
    assert logged(server, "/v1/embeddings")[0]["routing_key"] == "e1"


def test_sync_encode_tokenize_batch(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        assert isinstance(client.encode(input_ids=[1, 2]), EncodeOutput)
        tok = client.tokenize(["a b", "c"])
        assert tok.count == [2, 1]
        back = client.detokenize(tok.tokens)
        assert back.text == ["a b", "c"]


def test_generate_rid_generated_given_and_batch(server: FakeServer) -> None:
    with InferenceHTTPClient(server.url) as client:
        auto = client.generate("a", sampling_params={"max_new_tokens": 1})
        given = client.generate("a", sampling_params={"max_new_tokens": 1}, rid="mine")
        batch = client.generate(["a", "b"], sampling_params={"max_new_tokens": 1}, rid="job")
        fan = client.generate_many(["a", "b"], sampling_params={"max_new_tokens": 1}, rid="f")
    assert auto.rid is not None and len(auto.rid) == 32
    assert logged(server, "/generate")[0]["rid"] == auto.rid  # the id the client sent
    assert given.rid == "mine"
    assert [o.rid for o in batch] == ["job_0", "job_1"]
    assert sorted(o.rid or "" for o in fan) == ["f_0", "f_1"]


def test_every_stream_can_be_aborted_by_its_generated_rid(slow: FakeServer) -> None:
    with InferenceHTTPClient(slow.url) as client:
        params = {"max_new_tokens": 400, "ignore_eos": True}
        with client.generate("a", sampling_params=params, stream=True) as stream:
            chunks = iter(stream)
            first = next(chunks)
            assert first.rid is not None  # the client gave the request an id
            client.abort_request(first.rid)
            rest = list(chunks)
            last = rest[-1] if rest else first
    assert isinstance(last.finish_reason, FinishAbort)  # a result, not an error
    assert last.meta_info.completion_tokens < 400


def test_duplicate_rid_is_a_typed_error(slow: FakeServer) -> None:
    results: list[GenerateOutput] = []
    with InferenceHTTPClient(slow.url) as client:
        params = {"max_new_tokens": 400, "ignore_eos": True}

        def run() -> None:
            results.append(client.generate("a", sampling_params=params, rid="dup"))

        worker = threading.Thread(target=run)
        worker.start()
        try:
            deadline = 200
            while slow.app.running_requests == 0 and deadline:
                deadline -= 1
                threading.Event().wait(0.05)
            with pytest.raises(DuplicateRequestIdError) as info:
                client.generate("b", rid="dup")
            assert info.value.rid == "dup"
            client.abort_request("dup")
        finally:
            worker.join(30)
    assert isinstance(results[0].finish_reason, FinishAbort)


@pytest.mark.anyio
async def test_lora_load_use_unload(server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url, max_retries=0) as client:
        with pytest.raises(BadRequestError, match="not loaded"):
            await client.async_generate("a", lora_path="ad")
        res = await client.async_load_lora_adapter("ad", "/loras/ad")
        assert res.success and res.loaded_adapters == {"ad": "/loras/ad"}
        out = await client.async_generate(
            "a", sampling_params={"max_new_tokens": 1}, lora_path="ad"
        )
        assert out.meta_info.completion_tokens == 1
        chat = await client.async_chat_completion(
            [{"role": "user", "content": "x"}], max_tokens=1, lora_path="ad", priority=2
        )
        assert chat.usage.completion_tokens == 1
        gone = await client.async_unload_lora_adapter("ad")
        assert gone.loaded_adapters == {}
    entry = logged(server, "/v1/chat/completions")[-1]
    assert (entry["lora_path"], entry["priority"]) == ("ad", 2)
    with InferenceHTTPClient(server.url) as client:
        assert client.load_lora_adapter("b", "/loras/b", pinned=True).loaded_adapters == {
            "b": "/loras/b"
        }
        assert client.unload_lora_adapter("b").success


@pytest.mark.anyio
async def test_async_generate_stream_rid_and_routing_key(server: FakeServer) -> None:
    async with InferenceHTTPClient(server.url) as client:
        stream = await client.async_generate(
            "a", sampling_params={"max_new_tokens": 2}, stream=True, routing_key="sess", rid="s-1"
        )
        async with stream:
            rids = {c.rid async for c in stream}
    assert rids == {"s-1"}
    entry = logged(server, "/generate")[-1]
    assert (entry["routing_key"], entry["rid"], entry["stream"]) == ("sess", "s-1", True)
    await anyio.lowlevel.checkpoint()
