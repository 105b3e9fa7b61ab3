"""Typed RL fields on /generate (whole, streamed, batched, fanned out, grouped) and a typed
``rid`` on chat, completion and embed: on a socket against the fake server, sync and async."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rlinf_http import InferenceHTTPClient, InvalidRequestError
from rlinf_http.testing import FakeServer

CLOSED = "http://127.0.0.1:9"
RL: dict[str, Any] = {
    "return_routed_experts": True,
    "return_hidden_states": "last",
    "return_sampling_mask": True,
    "sampling_logprobs_mode": "selected",
    "scheduler_routing_key": "tenant-a",
    "routed_dp_rank": 0,
    "cache_salt": "salt",
    "max_thinking_tokens": 64,
}
WIRE = {
    "return_routed_experts": True,
    "return_hidden_states": "last",
    "return_sampling_mask": True,
    "sampling_logprobs_mode": "selected",
    "routing_key": "tenant-a",
    "routed_dp_rank": 0,
    "cache_salt": "salt",
    "max_thinking_tokens": 64,
}
SP = {"max_new_tokens": 3}


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def _last(srv: FakeServer, path: str = "/generate") -> dict[str, Any]:
    body: dict[str, Any] = srv.app.stats["last_bodies"][path]
    return body


def _sent(srv: FakeServer) -> None:
    body = _last(srv)
    assert {k: body.get(k) for k in WIRE} == WIRE


def test_generate_rl_fields_sync(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        out = client.generate("one two", sampling_params=SP, **RL)
        _sent(srv)
        meta = out.meta_info
        assert out.routed_expert_ids() and meta.hidden_states and len(meta.hidden_states) == 1
        assert meta.output_token_sampling_mask is not None
        assert meta.num_retractions == 0 and meta.weight_versions
        batch = client.generate(["a", "b"], sampling_params=SP, cache_salt=["s0", "s1"])
        assert len(batch) == 2 and _last(srv)["cache_salt"] == ["s0", "s1"]
        chunks = list(client.generate("x", sampling_params=SP, stream=True, **RL))
        _sent(srv)
        assert chunks[-1].meta_info.output_token_sampling_mask is not None
        many = client.generate_many(["p", "q"], sampling_params=SP, **RL)
        assert len(many) == 2 and all(m.routed_expert_ids() for m in many)
        _sent(srv)
        group = client.generate_group("g", n=2, sampling_params=SP, **RL)
        assert len(group) == 2
        _sent(srv)
        groups = client.generate_groups(["g1", "g2"], n=2, sampling_params=SP, **RL)
        assert [len(g) for g in groups] == [2, 2]
        _sent(srv)
        session = {"id": "s", "rid": None, "offset": None}
        client.generate("x", sampling_params=SP, session_params=session, routed_dp_rank=None)
        assert _last(srv)["session_params"] == session and "routed_dp_rank" not in _last(srv)


@pytest.mark.anyio
async def test_generate_rl_fields_async(srv: FakeServer) -> None:
    async with InferenceHTTPClient(srv.url) as client:
        out = await client.async_generate("one", sampling_params=SP, **RL)
        _sent(srv)
        assert out.meta_info.output_token_sampling_logprobs is not None
        stream = await client.async_generate("x", sampling_params=SP, stream=True, **RL)
        async with stream:
            chunks = [c async for c in stream]
        assert chunks[-1].meta_info.hidden_states is not None
        many = await client.async_generate_many(input_ids=[[1, 2], [3]], sampling_params=SP, **RL)
        assert len(many) == 2
        _sent(srv)
        group = await client.async_generate_group(input_ids=[5, 6], n=3, sampling_params=SP, **RL)
        assert len(group) == 3
        groups = await client.async_generate_groups(["a"], n=2, sampling_params=SP, **RL)
        assert len(groups[0]) == 2
        _sent(srv)
        async with client.async_generate_as_completed(["z"], sampling_params=SP, **RL) as done:
            assert [i async for i, _ in done] == [0]
        _sent(srv)


@pytest.mark.anyio
async def test_generate_rl_fields_refused_before_any_io() -> None:
    async with InferenceHTTPClient(CLOSED, max_retries=0) as client:
        with pytest.raises(InvalidRequestError, match="return_sampling_mask"):
            await client.async_generate("x", sampling_logprobs_mode="selected")
        with pytest.raises(InvalidRequestError, match="return_routed_experts"):
            await client.async_generate("x", routed_experts_start_len=2)
        with pytest.raises(InvalidRequestError, match="return_hidden_states"):
            await client.async_generate("x", return_hidden_states="all")  # type: ignore[arg-type]
        with pytest.raises(InvalidRequestError, match="cache_salt"):
            await client.async_generate("x", cache_salt=["a", "b"])  # a list is for a batch
        with pytest.raises(InvalidRequestError, match="cache_salt has 1 entries"):
            await client.async_generate(["x", "y"], cache_salt=["a"])
        with pytest.raises(InvalidRequestError, match="session_params"):
            await client.async_generate("x", session_params={"nope": 1})
        with pytest.raises(InvalidRequestError, match="custom_logit_processor"):
            await client.async_generate_many(["x"], custom_logit_processor="not json")
        with pytest.raises(InvalidRequestError, match="max_thinking_tokens"):
            await client.async_generate_group("x", n=2, max_thinking_tokens=-1)
        with pytest.raises(InvalidRequestError, match="scheduler_routing_key"):
            await client.async_generate_groups(["x"], n=2, scheduler_routing_key="")


def test_rid_is_typed_on_chat_completion_embed_sync(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        chat = client.chat_completion([{"role": "user", "content": "hi"}], rid="chat-1")
        assert _last(srv, "/v1/chat/completions")["rid"] == "chat-1" and chat.id == "chat-1"
        client.chat_completion([{"role": "user", "content": "hi"}])
        assert "rid" not in _last(srv, "/v1/chat/completions")  # left to the server
        done = client.completion("hi", rid="cmpl-1")
        assert _last(srv, "/v1/completions")["rid"] == "cmpl-1" and done.id == "cmpl-1"
        client.embed("hi", rid="emb-1")
        assert _last(srv, "/v1/embeddings")["rid"] == "emb-1"
        client.encode("hi", rid="enc-1")
        assert _last(srv, "/encode")["rid"] == "enc-1"


@pytest.mark.anyio
async def test_rid_is_typed_on_chat_completion_embed_async(srv: FakeServer) -> None:
    async with InferenceHTTPClient(srv.url) as client:
        chat = await client.async_chat_completion([{"role": "user", "content": "hi"}], rid="c2")
        assert chat.id == "c2"
        stream = await client.async_completion("hi", rid="s2", stream=True)
        async with stream:
            ids = {c.id async for c in stream}
        assert ids == {"s2"}
        await client.async_embed(["a", "b"], rid="e2")
        assert _last(srv, "/v1/embeddings")["rid"] == "e2"
    async with InferenceHTTPClient(CLOSED, max_retries=0) as closed:
        with pytest.raises(InvalidRequestError, match="rid"):
            await closed.async_chat_completion([{"role": "user", "content": "x"}], rid="")


def test_rid_on_chat_and_completion_fan_outs_sync(srv: FakeServer) -> None:
    with InferenceHTTPClient(srv.url) as client:
        msgs = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
        chats = client.chat_completion_many(msgs, rid="cm", concurrency=1)
        assert [c.id for c in chats] == ["cm_0", "cm_1"]
        done = client.completion_many(["x", "y"], rid=["p-x", "p-y"])
        assert [d.id for d in done] == ["p-x", "p-y"]
        with pytest.raises(InvalidRequestError, match="rid has 1 ids"):
            client.completion_many(["x", "y"], rid=["only-one"])


@pytest.mark.anyio
async def test_rid_on_chat_fan_outs_async(srv: FakeServer) -> None:
    async with InferenceHTTPClient(srv.url) as client:
        msgs = [[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]
        chats = await client.async_chat_completion_many(msgs, rid=["c-a", "c-b"])
        assert [c.id for c in chats] == ["c-a", "c-b"]
        async with client.async_chat_completion_as_completed(msgs, rid="ac") as done:
            ids = sorted([out.id async for _, out in done])
        assert ids == ["ac_0", "ac_1"]
