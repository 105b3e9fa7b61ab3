"""Shape tests for FakeSGLangApp via httpx.ASGITransport (asyncio and trio)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from fake_helpers import asgi_client, sse_events

from rlinf_http.testing import DropConnection, FakeConfig, FakeSGLangApp, FaultSpec

pytestmark = pytest.mark.anyio

Fake = FakeSGLangApp  # short alias for the expected-output helpers

META_KEYS = {
    "id",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "weight_version",
    "weight_versions",
    "num_retractions",
    "e2e_latency",
}


async def post(app: FakeSGLangApp, path: str, body: Any, **kw: Any) -> httpx.Response:
    async with asgi_client(app) as c:
        return await c.post(path, json=body, **kw)


async def get(app: FakeSGLangApp, path: str) -> httpx.Response:
    async with asgi_client(app) as c:
        return await c.get(path)


# --------------------------------------------------------------------------- /generate


async def test_generate_single_text() -> None:
    app = FakeSGLangApp()
    r = await post(
        app, "/generate", {"text": "hello big world", "sampling_params": {"max_new_tokens": 5}}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    d = r.json()
    assert set(d) == {"text", "output_ids", "meta_info"}
    assert d["text"] == Fake.output_text(5) == " tok0 tok1 tok2 tok3 tok4"
    assert d["output_ids"] == Fake.output_ids(5) == [1000, 1001, 1002, 1003, 1004]
    m = d["meta_info"]
    assert set(m) == META_KEYS
    assert m["finish_reason"] == {"type": "length", "length": 5}
    assert m["prompt_tokens"] == 3
    assert m["completion_tokens"] == 5
    assert m["cached_tokens"] == 0
    assert m["weight_version"] == "default"
    assert m["weight_versions"] == [{"version": "default", "start": 0, "end": 5}]
    assert isinstance(m["e2e_latency"], float)
    assert isinstance(m["id"], str) and m["id"]


async def test_generate_put_input_ids_and_rid() -> None:
    app = FakeSGLangApp()
    async with asgi_client(app) as c:
        r = await c.put(
            "/generate",
            json={
                "input_ids": [5, 6, 7, 8],
                "rid": "my-rid",
                "sampling_params": {"max_new_tokens": 2},
            },
        )
    d = r.json()
    assert d["meta_info"]["prompt_tokens"] == 4
    assert d["meta_info"]["id"] == "my-rid"
    assert d["output_ids"] == [1000, 1001]


async def test_generate_default_max_new_tokens() -> None:
    d = (await post(FakeSGLangApp(), "/generate", {"text": "x"})).json()
    assert d["meta_info"]["completion_tokens"] == 128
    app = FakeSGLangApp(FakeConfig(default_max_new_tokens=7))
    d = (await post(app, "/generate", {"text": "x", "sampling_params": {}})).json()
    assert d["meta_info"]["finish_reason"] == {"type": "length", "length": 7}


async def test_generate_batch_text_and_ids() -> None:
    app = FakeSGLangApp()
    body = {"text": ["a b", "c"], "sampling_params": {"max_new_tokens": 3}}
    d = (await post(app, "/generate", body)).json()
    assert isinstance(d, list) and len(d) == 2
    assert [x["meta_info"]["prompt_tokens"] for x in d] == [2, 1]
    assert all(x["text"] == Fake.output_text(3) for x in d)
    assert all("index" not in x for x in d)
    body2 = {
        "input_ids": [[1, 2, 3], [4]],
        "sampling_params": [{"max_new_tokens": 1}, {"max_new_tokens": 2}],
    }
    d = (await post(app, "/generate", body2)).json()
    assert [x["meta_info"]["prompt_tokens"] for x in d] == [3, 1]
    assert [x["meta_info"]["completion_tokens"] for x in d] == [1, 2]


async def test_generate_n_is_prompt_major() -> None:
    app = FakeSGLangApp()
    body = {
        "text": ["one", "two words"],
        "rid": "r",
        "sampling_params": {"max_new_tokens": 1, "n": 2},
    }
    d = (await post(app, "/generate", body)).json()
    assert len(d) == 4
    assert [x["meta_info"]["prompt_tokens"] for x in d] == [1, 1, 2, 2]
    assert [x["meta_info"]["id"] for x in d] == ["r_0", "r_1", "r_2", "r_3"]
    # n > 1 turns a single prompt into a batch response
    d = (
        await post(
            app, "/generate", {"text": "x", "sampling_params": {"n": 3, "max_new_tokens": 1}}
        )
    ).json()
    assert isinstance(d, list) and len(d) == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"sampling_params": {"max_new_tokens": 1}},
        {"text": ""},
        {"text": []},
        {"input_ids": []},
        {"input_ids": [[]]},
    ],
)
async def test_generate_missing_or_empty_input_is_400(body: dict[str, Any]) -> None:
    r = await post(FakeSGLangApp(), "/generate", body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert isinstance(err, dict) and isinstance(err["message"], str) and err["message"]


async def test_generate_unknown_sampling_key_is_400_string_error() -> None:
    r = await post(FakeSGLangApp(), "/generate", {"text": "x", "sampling_params": {"foo": 1}})
    assert r.status_code == 400
    err = r.json()["error"]
    assert isinstance(err, str)
    assert err.startswith("unknown field `foo`, expected one of `max_new_tokens`")
    r = await post(
        FakeSGLangApp(), "/generate", {"text": "x", "sampling_params": {"max_new_tokens": "4"}}
    )
    assert r.status_code == 400
    assert r.json() == {"error": 'invalid type: string "4", expected i64'}


async def test_generate_invalid_json_is_400() -> None:
    async with asgi_client(FakeSGLangApp()) as c:
        r = await c.post(
            "/generate", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert r.status_code == 400
    assert r.json()["object"] == "error"


async def test_generate_stop_keys_accepted_and_eos() -> None:
    app = FakeSGLangApp(FakeConfig(eos_after=3, eos_token_id=2))
    sp = {"max_new_tokens": 10, "stop": ["x"], "stop_token_ids": [5], "temperature": 0}
    d = (await post(app, "/generate", {"text": "x", "sampling_params": sp})).json()
    assert d["meta_info"]["finish_reason"] == {"type": "stop", "matched": 2}
    assert d["meta_info"]["completion_tokens"] == 3
    d = (
        await post(app, "/generate", {"text": "x", "sampling_params": {**sp, "ignore_eos": True}})
    ).json()
    assert d["meta_info"]["finish_reason"] == {"type": "length", "length": 10}


async def test_generate_logprobs() -> None:
    body = {
        "text": "hello world again",
        "sampling_params": {"max_new_tokens": 3},
        "return_logprob": True,
        "top_logprobs_num": 2,
        "return_text_in_logprobs": True,
        "logprob_start_len": 0,
    }
    m = (await post(FakeSGLangApp(), "/generate", body)).json()["meta_info"]
    out = m["output_token_logprobs"]
    assert out == [[Fake.output_logprob(i), 1000 + i, f" tok{i}"] for i in range(3)]
    inp = m["input_token_logprobs"]
    assert len(inp) == 3
    assert inp[0][0] is None and inp[0][2] == "hello"
    assert all(isinstance(t[0], float) and isinstance(t[1], int) for t in inp[1:])
    assert [t[2] for t in inp] == ["hello", " world", " again"]
    assert len(m["output_top_logprobs"]) == 3
    assert all(len(pos) == 2 for pos in m["output_top_logprobs"])
    assert m["output_top_logprobs"][0][0] == out[0]
    assert m["input_top_logprobs"][0] is None
    # without return_text_in_logprobs the text slot is null; default start = last prompt token
    body2 = {
        "input_ids": [7, 8, 9],
        "sampling_params": {"max_new_tokens": 2},
        "return_logprob": True,
    }
    m = (await post(FakeSGLangApp(), "/generate", body2)).json()["meta_info"]
    assert [t[2] for t in m["output_token_logprobs"]] == [None, None]
    assert m["input_token_logprobs"] == [[None, 9, None]]
    assert "output_top_logprobs" not in m


async def test_generate_stream_cumulative() -> None:
    app = FakeSGLangApp()
    r = await post(
        app, "/generate", {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 4}}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    ev = sse_events(r.text)
    assert ev[-1] == "[DONE]"
    chunks = ev[:-1]
    assert len(chunks) == 4
    for k, ch in enumerate(chunks, start=1):
        assert ch["text"] == Fake.output_text(k)
        assert ch["output_ids"] == Fake.output_ids(k)
        assert ch["meta_info"]["completion_tokens"] == k
        assert "index" not in ch
        expected = {"type": "length", "length": 4} if k == 4 else None
        assert ch["meta_info"]["finish_reason"] == expected
    assert len({ch["meta_info"]["id"] for ch in chunks}) == 1


async def test_generate_stream_incremental_and_interval() -> None:
    app = FakeSGLangApp(FakeConfig(incremental_streaming=True, stream_interval=2))
    body = {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 5}}
    chunks = sse_events((await post(app, "/generate", body)).text)[:-1]
    assert [c["meta_info"]["completion_tokens"] for c in chunks] == [2, 4, 5]
    assert [c["text"] for c in chunks] == [
        Fake.output_text(2),
        Fake.output_text(4, 2),
        Fake.output_text(5, 4),
    ]
    assert [i for c in chunks for i in c["output_ids"]] == Fake.output_ids(5)
    # per-request stream_interval overrides the server default
    body["sampling_params"] = {"max_new_tokens": 3, "stream_interval": 1}
    chunks = sse_events((await post(app, "/generate", body)).text)[:-1]
    assert [c["output_ids"] for c in chunks] == [[1000], [1001], [1002]]


async def test_generate_stream_batch_interleaves_with_index() -> None:
    app = FakeSGLangApp()
    body = {"text": ["a", "b"], "stream": True, "sampling_params": {"max_new_tokens": 2}}
    chunks = sse_events((await post(app, "/generate", body)).text)[:-1]
    assert [c["index"] for c in chunks] == [0, 1, 0, 1]
    finals = [c for c in chunks if c["meta_info"]["finish_reason"] is not None]
    assert sorted(c["index"] for c in finals) == [0, 1]
    assert all(c["text"] == Fake.output_text(2) for c in finals)


async def test_generate_stream_logprobs_cumulative() -> None:
    body = {
        "text": "a",
        "stream": True,
        "return_logprob": True,
        "sampling_params": {"max_new_tokens": 3},
    }
    chunks = sse_events((await post(FakeSGLangApp(), "/generate", body)).text)[:-1]
    assert [len(c["meta_info"]["output_token_logprobs"]) for c in chunks] == [1, 2, 3]


# --------------------------------------------------------------------------- OpenAI


async def test_chat_completion_non_stream() -> None:
    body = {
        "model": "whatever",
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hi there"},
        ],
        "max_tokens": 50,
        "max_completion_tokens": 3,
        "n": 2,
    }
    d = (await post(FakeSGLangApp(), "/v1/chat/completions", body)).json()
    assert set(d) == {"id", "object", "created", "model", "choices", "usage", "metadata"}
    # sglang 0.5.23: the first choice's version and its spans over output tokens
    assert d["metadata"] == {
        "weight_version": "default",
        "weight_versions": [{"version": "default", "start": 0, "end": 3}],
    }
    assert d["object"] == "chat.completion"
    assert d["model"] == "whatever"
    assert isinstance(d["created"], int)
    assert [c["index"] for c in d["choices"]] == [0, 1]
    for c in d["choices"]:
        assert c["message"] == {
            "role": "assistant",
            "content": Fake.output_text(3),
            "reasoning_content": None,
            "tool_calls": None,
        }
        assert c["finish_reason"] == "length"
        assert c["logprobs"] is None and c["matched_stop"] is None
    assert d["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}


async def test_chat_completion_eos_is_stop() -> None:
    app = FakeSGLangApp(FakeConfig(eos_after=2))
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
    d = (await post(app, "/v1/chat/completions", body)).json()
    assert d["model"] == "fake-model"
    assert d["choices"][0]["finish_reason"] == "stop"
    assert d["choices"][0]["message"]["content"] == Fake.output_text(2)


@pytest.mark.parametrize("include_usage", [True, False])
async def test_chat_completion_stream(include_usage: bool) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "a b c"}]}],
        "max_tokens": 3,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    r = await post(FakeSGLangApp(), "/v1/chat/completions", body)
    assert r.headers["content-type"].startswith("text/event-stream")
    ev = sse_events(r.text)
    assert ev[-1] == "[DONE]"
    chunks = ev[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first = chunks[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": ""}
    assert first["finish_reason"] is None
    if include_usage:
        usage = chunks[-1]
        assert usage["choices"] == []
        assert usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
        chunks = chunks[:-1]
    final = chunks[-1]["choices"][0]
    assert final["finish_reason"] == "length"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:])
    assert content == Fake.output_text(3)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


async def test_chat_completion_stream_n2() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "n": 2, "stream": True}
    chunks = sse_events((await post(FakeSGLangApp(), "/v1/chat/completions", body)).text)[:-1]
    for idx in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == idx]
        assert mine[0]["delta"]["role"] == "assistant"
        assert mine[-1]["finish_reason"] == "length"
        assert "".join(m["delta"].get("content", "") for m in mine) == Fake.output_text(2)


@pytest.mark.parametrize("messages", [[], None])
async def test_chat_completion_empty_messages(messages: Any) -> None:
    body: dict[str, Any] = {"model": "m"}
    if messages is not None:
        body["messages"] = messages
    r = await post(FakeSGLangApp(), "/v1/chat/completions", body)
    assert r.status_code == 400
    assert r.json() == {
        "object": "error",
        "message": "Messages cannot be empty.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }


async def test_completions() -> None:
    app = FakeSGLangApp()
    d = (await post(app, "/v1/completions", {"model": "m", "prompt": "a b"})).json()
    assert d["object"] == "text_completion"
    assert d["choices"][0]["text"] == Fake.output_text(16)  # OpenAI default max_tokens=16
    assert d["choices"][0]["finish_reason"] == "length"
    assert d["usage"] == {"prompt_tokens": 2, "completion_tokens": 16, "total_tokens": 18}
    d = (await post(app, "/v1/completions", {"prompt": ["a", "b c"], "max_tokens": 1})).json()
    assert [c["index"] for c in d["choices"]] == [0, 1]
    d = (await post(app, "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 1})).json()
    assert d["usage"]["prompt_tokens"] == 3
    body = {
        "prompt": "a",
        "max_tokens": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    ev = sse_events((await post(app, "/v1/completions", body)).text)
    assert ev[-1] == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in ev[:-2]) == Fake.output_text(2)
    assert ev[-2]["choices"] == [] and ev[-2]["usage"]["completion_tokens"] == 2
    r = await post(app, "/v1/completions", {"prompt": ""})
    assert r.status_code == 400 and r.json()["object"] == "error"


# --------------------------------------------------------------------------- other endpoints


async def test_health_endpoints() -> None:
    app = FakeSGLangApp()
    for path in ("/health", "/health_generate"):
        r = await get(app, path)
        assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize("path", ["/server_info", "/get_server_info"])
async def test_server_info(path: str) -> None:
    app = FakeSGLangApp(FakeConfig(incremental_streaming=True, served_model_name="mm"))
    d = (await get(app, path)).json()
    for key in (
        "model_path",
        "tokenizer_path",
        "served_model_name",
        "tp_size",
        "dp_size",
        "version",
        "incremental_streaming_output",
        "stream_output",
        "stream_interval",
        "status",
        "max_total_num_tokens",
    ):
        assert key in d, key
    assert d["served_model_name"] == "mm"
    assert d["tp_size"] == 1 and d["dp_size"] == 1
    assert d["incremental_streaming_output"] is True and d["stream_output"] is True
    assert d["tokenizer_path"] == d["model_path"]
    import os

    assert os.path.isdir(d["model_path"])


@pytest.mark.parametrize("path", ["/model_info", "/get_model_info"])
async def test_model_info(path: str) -> None:
    d = (await get(FakeSGLangApp(), path)).json()
    assert d["is_generation"] is True
    assert d["served_model_name"] == "fake-model"
    assert d["weight_version"] == "default"
    assert isinstance(d["architectures"], list)
    assert {"model_path", "tokenizer_path", "model_type"} <= set(d)


async def test_legacy_info_routes_only() -> None:
    app = FakeSGLangApp(FakeConfig(legacy_info_routes_only=True))
    assert (await get(app, "/server_info")).status_code == 404
    assert (await get(app, "/model_info")).status_code == 404
    assert (await get(app, "/get_server_info")).status_code == 200
    assert (await get(app, "/get_model_info")).status_code == 200


async def test_models_load_flush_404() -> None:
    app = FakeSGLangApp()
    d = (await get(app, "/v1/models")).json()
    assert d["object"] == "list" and d["data"][0]["id"] == "fake-model"
    load = (await get(app, "/get_load")).json()
    assert isinstance(load, list)
    assert {"dp_rank", "num_reqs", "num_waiting_reqs", "num_tokens"} <= set(load[0])
    async with asgi_client(app) as c:
        for method in ("GET", "POST"):
            r = await c.request(method, "/flush_cache")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/plain")
            assert r.text == "Cache flushed.\n"
        r = await c.get("/nope")
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
        r = await c.get("/generate")
        assert r.status_code == 405


async def test_request_id_echo_and_generated() -> None:
    app = FakeSGLangApp()
    async with asgi_client(app) as c:
        r = await c.get("/health", headers={"X-Request-Id": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        r1 = await c.get("/health")
        r2 = await c.get("/health")
        assert (
            r1.headers["x-request-id"] and r1.headers["x-request-id"] != r2.headers["x-request-id"]
        )
        r = await c.post(
            "/generate", json={"text": "a", "stream": True}, headers={"x-request-id": "s1"}
        )
        assert r.headers["x-request-id"] == "s1"


async def test_stats() -> None:
    app = FakeSGLangApp()
    async with asgi_client(app) as c:
        await c.post("/generate", json={"text": "a"}, headers={"X-Custom": "yes"})
        await c.post("/generate", json={"text": "b"})
        await c.get("/health")
        s = (await c.get("/_fake/stats")).json()
    assert s["requests"] == {"/generate": 2, "/health": 1}
    assert s["last_bodies"]["/generate"] == {"text": "b"}
    assert s["in_flight"] == 0 and s["max_in_flight"] >= 1
    assert app.stats["last_headers"]["/generate"].get("x-custom") is None
    assert s == app.stats
    app.reset_stats()
    assert app.stats["requests"] == {}


async def test_last_headers_recorded() -> None:
    app = FakeSGLangApp()
    async with asgi_client(app) as c:
        await c.post("/generate", json={"text": "a"}, headers={"X-Custom": "yes"})
    assert app.stats["last_headers"]["/generate"]["x-custom"] == "yes"


# --------------------------------------------------------------------------- abort


async def _wait_running(app: FakeSGLangApp, n: int = 1) -> None:
    with anyio.fail_after(5):
        while app.running_requests < n:
            await anyio.sleep(0.005)


async def test_abort_request_non_stream() -> None:
    app = FakeSGLangApp(FakeConfig(itl_s=0.02))
    results: dict[str, Any] = {}
    async with asgi_client(app) as c:

        async def run() -> None:
            body = {"text": "a", "rid": "r1", "sampling_params": {"max_new_tokens": 500}}
            results["r"] = await c.post("/generate", json=body)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _wait_running(app)
            await anyio.sleep(0.05)
            assert (await c.post("/flush_cache")).status_code == 400
            assert app.stats["requests"]["/generate"] == 1
            r = await c.post("/abort_request", json={"rid": "r1"})
            assert r.status_code == 200 and r.content == b""
    d = results["r"].json()
    fr = d["meta_info"]["finish_reason"]
    assert fr["type"] == "abort"
    assert {"message", "status_code", "err_type"} <= set(fr)
    assert 0 < d["meta_info"]["completion_tokens"] < 500
    assert d["text"] == Fake.output_text(d["meta_info"]["completion_tokens"])
    assert app.stats["aborted"] == 1
    assert app.running_requests == 0


async def test_abort_all_stream() -> None:
    app = FakeSGLangApp(FakeConfig(itl_s=0.02))
    results: dict[str, Any] = {}
    async with asgi_client(app) as c:

        async def run() -> None:
            body = {"text": ["a", "b"], "stream": True, "sampling_params": {"max_new_tokens": 500}}
            results["r"] = await c.post("/generate", json=body)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await _wait_running(app, 2)
            await anyio.sleep(0.05)
            await c.post("/abort_request", json={"rid": "", "abort_all": True})
    ev = sse_events(results["r"].text)
    assert ev[-1] == "[DONE]"
    finals = [e for e in ev[:-1] if e["meta_info"]["finish_reason"] is not None]
    assert sorted(e["index"] for e in finals) == [0, 1]
    assert all(e["meta_info"]["finish_reason"]["type"] == "abort" for e in finals)
    assert all(e["meta_info"]["completion_tokens"] < 500 for e in finals)


# --------------------------------------------------------------------------- faults (in-process)


async def test_fault_status_retry_after_times() -> None:
    app = FakeSGLangApp()
    app.faults.add(FaultSpec(path="/generate", times=2, status=503, headers={"Retry-After": "1"}))
    async with asgi_client(app) as c:
        assert (await c.get("/health")).status_code == 200  # other path unaffected
        for _ in range(2):
            r = await c.post("/generate", json={"text": "a"})
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert "error" in r.json()
        r = await c.post("/generate", json={"text": "a"})
        assert r.status_code == 200
    assert app.stats["requests"]["/generate"] == 3
    assert app.stats["faults_injected"] == 2
    assert app.faults.pending() == []


async def test_fault_any_path_custom_body_and_forever() -> None:
    app = FakeSGLangApp()
    app.faults.add(FaultSpec(times=None, status=429, body="slow down", content_type="text/plain"))
    async with asgi_client(app) as c:
        for path in ("/health", "/v1/models", "/health"):
            r = await c.get(path)
            assert r.status_code == 429 and r.text == "slow down"
            assert r.headers["content-type"] == "text/plain"
        app.faults.clear()
        assert (await c.get("/health")).status_code == 200
    app.faults.add(FaultSpec(status=500, body={"error": {"message": "boom"}}))
    r = await get(app, "/health")
    assert r.status_code == 500 and r.json() == {"error": {"message": "boom"}}


async def test_fault_malformed() -> None:
    app = FakeSGLangApp()
    app.faults.add(FaultSpec(path="/generate", malformed=True))
    r = await post(app, "/generate", {"text": "a"})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()


async def test_fault_delay_only_then_normal() -> None:
    app = FakeSGLangApp()
    app.faults.add(FaultSpec(path="/health", delay_s=0.1))
    t0 = anyio.current_time()
    r = await get(app, "/health")
    assert r.status_code == 200
    assert anyio.current_time() - t0 >= 0.09


async def test_fault_stream_error_after() -> None:
    app = FakeSGLangApp()
    app.faults.add(FaultSpec(path="/generate", stream_error_after=2))
    # a non-streaming request does not consume a stream fault
    assert (
        await post(app, "/generate", {"text": "a", "sampling_params": {"max_new_tokens": 2}})
    ).status_code == 200
    r = await post(
        app, "/generate", {"text": "a", "stream": True, "sampling_params": {"max_new_tokens": 5}}
    )
    assert r.status_code == 200
    ev = sse_events(r.text)
    assert len(ev) == 4
    assert (
        ev[0]["meta_info"]["completion_tokens"] == 1
        and ev[1]["meta_info"]["completion_tokens"] == 2
    )
    assert ev[2] == {"error": {"message": "injected stream error", "code": 500}}
    assert ev[3] == "[DONE]"


async def test_fault_drop_and_truncate_raise_in_process() -> None:
    app = FakeSGLangApp()
    app.faults.add(FaultSpec(path="/generate", drop=True))
    with pytest.raises(DropConnection):
        await post(app, "/generate", {"text": "a"})
    app.faults.add(FaultSpec(truncate_stream_after=1))
    with pytest.raises(DropConnection):
        await post(app, "/generate", {"text": "a", "stream": True})
    assert app.stats["in_flight"] == 0


async def test_faults_over_http() -> None:
    app = FakeSGLangApp()
    async with asgi_client(app) as c:
        specs = [
            {"path": "/generate", "status": 502},
            {"path": "/health", "status": 503, "headers": {"Retry-After": "2"}, "times": 3},
        ]
        r = await c.post("/_fake/faults", json=specs)
        assert r.status_code == 200 and r.json()["added"] == 2
        assert len((await c.get("/_fake/faults")).json()) == 2
        assert (await c.post("/generate", json={"text": "a"})).status_code == 502
        r = await c.get("/health")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        r = await c.delete("/_fake/faults")
        assert r.json() == {"cleared": 1}
        assert (await c.get("/health")).status_code == 200
        r = await c.post("/_fake/faults", json={"path": "/health", "bogus": 1})
        assert r.status_code == 400
        r = await c.post("/_fake/faults", json={"path": "/health", "status": 500})
        assert r.json()["added"] == 1
        assert (await c.get("/health")).status_code == 500
        # the control endpoints are not counted in stats
        s = (await c.get("/_fake/stats")).json()
        assert not any(p.startswith("/_fake") for p in s["requests"])
        assert (await c.delete("/_fake/stats")).status_code == 200
        assert app.stats["requests"] == {}
