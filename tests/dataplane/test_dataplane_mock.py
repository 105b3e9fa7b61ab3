"""The data-plane methods against a mocked transport (respx): paths, bodies,
the routing-key header, typed results, sync and async alike. No sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from rlinf_http import (
    BadRequestError,
    Completion,
    DuplicateRequestIdError,
    EmbeddingResponse,
    EncodeOutput,
    FinishAbort,
    InferenceHTTPClient,
    InvalidRequestError,
    LoraAdapterResult,
    UnprocessableEntityError,
)

BASE = "http://127.0.0.1:30000"
KEY = "x-smg-routing-key"

COMPLETION = {
    "id": "c1",
    "object": "text_completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "text": " tok0", "finish_reason": "length"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
EMBEDDINGS = {
    "object": "list",
    "model": "/m",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
    "usage": {"prompt_tokens": 1, "total_tokens": 1},
}


def gen_json(rid: str, finish: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": " t",
        "output_ids": [1000],
        "meta_info": {
            "id": rid,
            "finish_reason": finish,
            "prompt_tokens": 1,
            "completion_tokens": 1,
        },
    }


def sse(events: bytes) -> httpx.Response:
    # an unread body, as a network response is (content= would be pre-read)
    return httpx.Response(
        200, stream=httpx.ByteStream(events), headers={"content-type": "text/event-stream"}
    )


def sent(route: respx.Route) -> tuple[dict[str, Any], httpx.Headers]:
    request = route.calls.last.request
    return json.loads(request.content), request.headers


SERVED_MODELS = {"object": "list", "data": [{"id": "served-model", "object": "model"}]}


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        # Calls without model= read the served model once per client.
        router.get("/v1/models").mock(return_value=httpx.Response(200, json=SERVED_MODELS))
        yield router


def test_completion_sync(mock: respx.MockRouter) -> None:
    route = mock.post("/v1/completions").mock(return_value=httpx.Response(200, json=COMPLETION))
    with InferenceHTTPClient(BASE) as client:
        out = client.completion("hi", max_tokens=3, routing_key="s1", priority=2, lora_path="ad")
    assert isinstance(out, Completion) and out.choices[0].text == " tok0"
    body, headers = sent(route)
    assert body == {
        "model": "served-model",
        "prompt": "hi",
        "max_tokens": 3,
        "priority": 2,
        "lora_path": "ad",
    }
    assert headers[KEY] == "s1"


EVENTS = (
    b'data: {"id":"c","object":"text_completion","choices":[{"index":0,"text":" a"}]}\n\n'
    b'data: {"id":"c","object":"text_completion","choices":[{"index":0,"text":" b",'
    b'"finish_reason":"length"}]}\n\n'
    b"data: [DONE]\n\n"
)


def stream_handler(seen: list[httpx.Request]) -> httpx.MockTransport:
    """A transport answering /v1/completions with an SSE stream (an unread body)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=SERVED_MODELS)
        if not json.loads(request.content).get("stream"):
            return httpx.Response(200, json=COMPLETION)
        return sse(EVENTS)

    return httpx.MockTransport(handle)


@pytest.mark.anyio
async def test_completion_async_and_stream() -> None:
    seen: list[httpx.Request] = []
    http = httpx.AsyncClient(transport=stream_handler(seen))
    async with http, InferenceHTTPClient(BASE, async_http_client=http) as client:
        out = await client.async_completion([1, 2], "m", routing_key="k")
        assert out.usage.total_tokens == 2
        assert json.loads(seen[-1].content)["prompt"] == [1, 2]
        assert seen[-1].headers[KEY] == "k"
        stream = await client.async_completion("hi", stream=True)
        async with stream:
            texts = [c.choices[0].text async for c in stream]
    assert texts == [" a", " b"]
    assert json.loads(seen[-1].content)["stream"] is True


def test_completion_stream_sync() -> None:
    seen: list[httpx.Request] = []
    with httpx.Client(transport=stream_handler(seen)) as http:
        client = InferenceHTTPClient(BASE, http_client=http)
        with client.completion("hi", stream=True, routing_key="z") as stream:
            assert [c.choices[0].text for c in stream] == [" a", " b"]
    assert seen[-1].headers[KEY] == "z"


def test_token_ids_through_the_router_422_says_why(mock: respx.MockRouter) -> None:
    mock.post("/v1/completions").mock(
        return_value=httpx.Response(422, text="Failed to deserialize")
    )
    with InferenceHTTPClient(BASE, max_retries=0) as client:
        with pytest.raises(UnprocessableEntityError, match="refuses token-id prompts"):
            client.completion([1, 2, 3])
        with pytest.raises(UnprocessableEntityError) as info:
            client.completion("text prompt")
    assert "token-id" not in str(info.value)


def test_completion_many_with_one_key_per_prompt(mock: respx.MockRouter) -> None:
    route = mock.post("/v1/completions").mock(return_value=httpx.Response(200, json=COMPLETION))
    with InferenceHTTPClient(BASE) as client:
        outs = client.completion_many(["a", "b", "c"], routing_key=["k0", "k1", "k2"], max_tokens=1)
        assert [type(o) for o in outs] == [Completion] * 3
        keys = sorted(call.request.headers[KEY] for call in route.calls)
        assert keys == ["k0", "k1", "k2"]
        with pytest.raises(InvalidRequestError, match="2 keys for 3 items"):
            client.completion_many(["a", "b", "c"], routing_key=["k0", "k1"])
    assert route.call_count == 3  # the bad call sent nothing


@pytest.mark.anyio
async def test_async_completion_many_return_exceptions(mock: respx.MockRouter) -> None:
    mock.post("/v1/completions").mock(
        side_effect=[
            httpx.Response(200, json=COMPLETION),
            httpx.Response(400, json={"error": "no"}),
        ]
    )
    async with InferenceHTTPClient(BASE, max_retries=0) as client:
        outs = await client.async_completion_many(["a", "b"], concurrency=1, return_exceptions=True)
    assert isinstance(outs[0], Completion) and isinstance(outs[1], BadRequestError)


def test_embed_sync_and_numpy(mock: respx.MockRouter) -> None:
    np = pytest.importorskip("numpy")
    route = mock.post("/v1/embeddings").mock(return_value=httpx.Response(200, json=EMBEDDINGS))
    with InferenceHTTPClient(BASE) as client:
        out = client.embed("hello", routing_key="e")
        assert isinstance(out, EmbeddingResponse) and out.vectors == [[0.6, 0.8]]
        arr = client.embed(["hello"], as_numpy=True)
    assert arr.dtype == np.float32 and arr.shape == (1, 2)
    body, headers = sent(route)
    assert body == {"model": "served-model", "input": ["hello"]}
    assert route.calls[0].request.headers[KEY] == "e" and KEY not in headers


@pytest.mark.anyio
async def test_async_embed_and_encode(mock: respx.MockRouter) -> None:
    mock.post("/v1/embeddings").mock(return_value=httpx.Response(200, json=EMBEDDINGS))
    enc = mock.post("/encode").mock(
        side_effect=[
            httpx.Response(200, json={"embedding": [1.0], "meta_info": {"id": "e"}}),
            httpx.Response(200, json=[{"embedding": [1.0]}, {"embedding": [2.0]}]),
        ]
    )
    async with InferenceHTTPClient(BASE) as client:
        out = await client.async_embed([1, 2, 3], "m", dimensions=2)
        assert out.data[0].vector == [0.6, 0.8]
        one = await client.async_encode("a", priority=1)
        assert isinstance(one, EncodeOutput) and one.meta_info == {"id": "e"}
        assert sent(enc)[0] == {"text": "a", "priority": 1}
        many = await client.async_encode(input_ids=[[1], [2]])
        assert [m.embedding for m in many] == [[1.0], [2.0]]


def test_encode_sync(mock: respx.MockRouter) -> None:
    mock.post("/encode").mock(return_value=httpx.Response(200, json={"embedding": [3.0]}))
    with InferenceHTTPClient(BASE) as client:
        assert client.encode(input_ids=[1, 2]).embedding == [3.0]


def test_tokenize_router_without_tokenizer_surfaces_its_message(mock: respx.MockRouter) -> None:
    message = "No tokenizers available. Please add a tokenizer"
    mock.post("/v1/tokenize").mock(
        return_value=httpx.Response(
            400, json={"error": {"message": message, "type": "tokenizer_not_found"}}
        )
    )
    with InferenceHTTPClient(BASE) as client:
        with pytest.raises(BadRequestError) as info:
            client.tokenize("a b")
    assert info.value.message == message and message in str(info.value)


@pytest.mark.anyio
async def test_tokenize_detokenize_both_ways(mock: respx.MockRouter) -> None:
    tok = mock.post("/v1/tokenize").mock(
        return_value=httpx.Response(200, json={"tokens": [5, 6], "count": 2, "max_model_len": 99})
    )
    mock.post("/v1/detokenize").mock(return_value=httpx.Response(200, json={"text": "a b"}))
    async with InferenceHTTPClient(BASE) as client:
        got = await client.async_tokenize("a b", "fake-model", routing_key="r")
        assert (got.tokens, got.count, got.max_model_len) == ([5, 6], 2, 99)
        assert sent(tok)[1][KEY] == "r"
        assert (await client.async_detokenize([5, 6])).text == "a b"
    with InferenceHTTPClient(BASE) as client:
        assert client.tokenize("a b").tokens == [5, 6]
        assert client.detokenize([5, 6], skip_special_tokens=False).text == "a b"


@pytest.mark.anyio
async def test_lora_load_unload(mock: respx.MockRouter) -> None:
    reply = {"success": True, "error_message": "", "loaded_adapters": {"ad": "/p"}}
    load = mock.post("/load_lora_adapter").mock(return_value=httpx.Response(200, json=reply))
    unload = mock.post("/unload_lora_adapter").mock(
        return_value=httpx.Response(200, json={**reply, "loaded_adapters": {}})
    )
    with InferenceHTTPClient(BASE) as client:
        res = client.load_lora_adapter("ad", "/p")
        assert isinstance(res, LoraAdapterResult) and res.loaded_adapters == {"ad": "/p"}
        assert client.unload_lora_adapter("ad").loaded_adapters == {}
    async with InferenceHTTPClient(BASE) as client:
        await client.async_load_lora_adapter("ad", "/p", pinned=True)
        assert sent(load)[0] == {"lora_name": "ad", "lora_path": "/p", "pinned": True}
        await client.async_unload_lora_adapter("ad")
    assert unload.call_count == 2


def test_generate_and_chat_steering_fields(mock: respx.MockRouter) -> None:
    gen = mock.post("/generate").mock(
        return_value=httpx.Response(200, json=gen_json("r-1", {"type": "length", "length": 1}))
    )
    chat = mock.post("/v1/chat/completions").mock(
        return_value=httpx.Response(
            200,
            json={
                "choices": [{"message": {"role": "assistant", "content": "x"}}],
                "usage": {"total_tokens": 1},
            },
        )
    )
    with InferenceHTTPClient(BASE) as client:
        out = client.generate("hi", rid="r-1", routing_key="s", priority=5, lora_path="ad")
        assert out.rid == "r-1"
        body, headers = sent(gen)
        assert (body["rid"], body["priority"], body["lora_path"], headers[KEY]) == (
            "r-1",
            5,
            "ad",
            "s",
        )
        client.chat_completion([{"role": "user", "content": "x"}], routing_key="c", priority=1)
        body, headers = sent(chat)
        assert (body["priority"], headers[KEY]) == (1, "c")
        client.generate_many(["a", "b"], rid="job", routing_key=["x", "y"])
        rids = sorted(
            (json.loads(c.request.content)["rid"], c.request.headers[KEY]) for c in gen.calls[-2:]
        )
        assert rids == [("job_0", "x"), ("job_1", "y")]


def test_abort_finish_reason_is_a_result_and_duplicate_rid_an_error(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(
        side_effect=[
            httpx.Response(200, json=gen_json("job", {"type": "abort", "message": "Abort"})),
            httpx.Response(400, json={"error": {"message": "Duplicate request ID detected: job"}}),
        ]
    )
    with InferenceHTTPClient(BASE) as client:
        out = client.generate("hi", rid="job")
        assert isinstance(out.finish_reason, FinishAbort)
        with pytest.raises(DuplicateRequestIdError) as info:
            client.generate("hi", rid="job")
    assert info.value.rid == "job" and info.value.status_code == 400
