"""InferenceHTTPClient against mocked transports (respx, httpx.MockTransport): request
and response shapes, retries, errors, user-supplied clients. No sockets."""

from __future__ import annotations

import json
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

import rlinf_http._driver as driver_module
from rlinf_http import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    ChatCompletion,
    FinishLength,
    GenerateOutput,
    InferenceHTTPClient,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
    RLinfHTTPError,
    SamplingParams,
    ServiceUnavailableError,
    UnprocessableEntityError,
    __version__,
)

BASE = "http://127.0.0.1:30000"
SLEEPING_MODULES = (driver_module,)


def gen_json(text: str = " Paris", n_tokens: int = 2, rid: str = "r1") -> dict[str, Any]:
    return {
        "text": text,
        "output_ids": list(range(1000, 1000 + n_tokens)),
        "meta_info": {
            "id": rid,
            "finish_reason": {"type": "length", "length": n_tokens},
            "prompt_tokens": 5,
            "completion_tokens": n_tokens,
            "cached_tokens": 0,
            "e2e_latency": 0.01,
        },
    }


CHAT_JSON: dict[str, Any] = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there"},
            "finish_reason": "stop",
            "matched_stop": 2,
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record (and skip) the client's backoff sleeps, sync and async."""
    recorded: list[float] = []
    fake_time = types.SimpleNamespace(
        sleep=recorded.append, perf_counter=time.perf_counter, monotonic=time.monotonic
    )
    for module in SLEEPING_MODULES:
        if getattr(module, "time", None) is time:
            monkeypatch.setattr(module, "time", fake_time)

    async def fake_sleep(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    return recorded


SERVED_MODELS = {"object": "list", "data": [{"id": "served-model", "object": "model"}]}


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    # using="httpx" mocks at the httpx.Client level, so it works whatever transport
    # the client's own sessions use.
    with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        # Calls without model= read the served model once per client.
        router.get("/v1/models").mock(return_value=httpx.Response(200, json=SERVED_MODELS))
        yield router


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://h:1", "127.0.0.1:30000", "http://", "http://h:1/?q=1"])
def test_bad_base_url_at_construction(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        InferenceHTTPClient(url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_timeout": 0},
        {"connect_timeout": -1},
        {"connect_timeout": "10"},
        {"max_connections": 0},
        {"max_connections": True},
        {"max_retries": -1},
        {"http_client": httpx.AsyncClient()},
        {"async_http_client": object()},
        {"api_key": ""},
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        InferenceHTTPClient(BASE, **kwargs)


def test_trailing_slash_and_repr() -> None:
    client = InferenceHTTPClient(BASE + "//")
    assert client.base_url == BASE
    assert BASE in repr(client)


# -- URL joining, headers, bodies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (BASE + "/", BASE + "/generate"),
        ("http://10.1.2.3:8000/prefix/", "http://10.1.2.3:8000/prefix/generate"),
        ("https://router.example", "https://router.example/generate"),
    ],
)
def test_url_joining(base: str, expected: str) -> None:
    with respx.mock(assert_all_called=True, using="httpx") as router:
        route = router.post(expected).mock(return_value=httpx.Response(200, json=gen_json()))
        with InferenceHTTPClient(base) as client:
            client.generate(prompt="x")
    assert str(route.calls.last.request.url) == expected


def test_headers_default_and_custom(mock: respx.MockRouter) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    with InferenceHTTPClient(BASE, api_key="sk-test", headers={"X-Trace": "t-1"}) as client:
        client.generate(prompt="x")
    request = route.calls.last.request
    assert request.headers["user-agent"] == f"rlinf-http/{__version__}"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["x-trace"] == "t-1"
    assert request.headers["content-type"] == "application/json"


def test_no_authorization_without_api_key(mock: respx.MockRouter) -> None:
    route = mock.get("/health").mock(return_value=httpx.Response(200))
    assert InferenceHTTPClient(BASE).health() is True
    assert "authorization" not in route.calls.last.request.headers


def test_generate_body_and_typed_result(mock: respx.MockRouter) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    client = InferenceHTTPClient(BASE)
    out = client.generate(
        prompt="The capital of France is",
        sampling_params={"temperature": 0.0, "max_new_tokens": 32},
        rid="r-given",
    )
    client.close()
    assert body(route.calls.last.request) == {
        "rid": "r-given",
        "return_logprob": False,
        "text": "The capital of France is",
        "sampling_params": {"temperature": 0.0, "max_new_tokens": 32},
    }
    assert isinstance(out, GenerateOutput)
    assert out.text == " Paris"
    assert out["text"] == " Paris"
    assert out.meta_info.completion_tokens == 2
    assert isinstance(out.finish_reason, FinishLength)


def test_generate_input_ids_extra_and_typed_sampling(mock: respx.MockRouter) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    client = InferenceHTTPClient(BASE)
    client.generate(
        input_ids=[1, 2, 3],
        sampling_params=SamplingParams(max_new_tokens=4),
        return_logprob=True,
        rid="abc",
    )
    assert body(route.calls.last.request) == {
        "return_logprob": True,
        "input_ids": [1, 2, 3],
        "sampling_params": {"max_new_tokens": 4},
        "rid": "abc",
    }


def test_generate_batch_returns_list(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(
        return_value=httpx.Response(200, json=[gen_json("a", rid="0"), gen_json("b", rid="1")])
    )
    outs = InferenceHTTPClient(BASE).generate(prompt=["p0", "p1"])
    assert isinstance(outs, list)
    assert [o.text for o in outs] == ["a", "b"]


def test_chat_body_and_typed_result(mock: respx.MockRouter) -> None:
    route = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT_JSON))
    reply = InferenceHTTPClient(BASE).chat_completion(
        messages=[{"role": "user", "content": "Hello"}],
        model="/models/qwen",
        temperature=0.0,
        max_tokens=32,
        top_k=1,
    )
    assert body(route.calls.last.request) == {
        "model": "/models/qwen",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0.0,
        "max_tokens": 32,
        "top_k": 1,
    }
    assert isinstance(reply, ChatCompletion)
    assert reply.choices[0].message.content == "Hi there"
    assert reply.usage is not None and reply.usage.total_tokens == 5


def test_chat_default_model_is_the_served_one(mock: respx.MockRouter) -> None:
    route = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT_JSON))
    InferenceHTTPClient(BASE).chat_completion([{"role": "user", "content": "x"}])
    assert body(route.calls.last.request)["model"] == "served-model"


def test_chat_default_model_without_a_model_list(mock: respx.MockRouter) -> None:
    # A base URL without GET /v1/models accepts any name: the library's default is sent.
    mock.get("/v1/models").mock(return_value=httpx.Response(404, text="Not Found"))
    route = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT_JSON))
    InferenceHTTPClient(BASE).chat_completion([{"role": "user", "content": "x"}])
    assert body(route.calls.last.request)["model"] == "sglang-model"


def test_invalid_arguments_raise_before_io(mock: respx.MockRouter) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    client = InferenceHTTPClient(BASE)
    with pytest.raises(ValueError):
        client.generate()
    with pytest.raises(ValueError):
        client.generate(prompt="x", input_ids=[1])
    with pytest.raises(ValueError):
        client.generate(prompt="x", sampling_params={"max_new_tokens": "3"})
    with pytest.raises(ValueError):
        client.chat_completion([])
    with pytest.raises(ValueError):
        client.post("http://elsewhere/x", {})
    with pytest.raises(ValueError):
        client.generate(prompt="x", timeout="soon")  # type: ignore[call-overload]
    assert route.call_count == 0


@pytest.mark.anyio
async def test_async_typed_results(mock: respx.MockRouter) -> None:
    gen_route = mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=CHAT_JSON))
    mock.get("/health").mock(return_value=httpx.Response(200, text="OK"))
    async with InferenceHTTPClient(BASE) as client:
        assert await client.async_health() is True
        out = await client.async_generate(prompt="hi", sampling_params={"max_new_tokens": 2})
        reply = await client.async_chat_completion(
            messages=[{"role": "user", "content": "x"}], model="m"
        )
        echo = await client.async_post("/generate", {"text": "raw"})
    assert isinstance(out, GenerateOutput) and out.output_ids == [1000, 1001]
    assert reply.choices[0].message.content == "Hi there"
    assert echo["text"] == " Paris"  # post returns the decoded JSON, not a model
    assert body(gen_route.calls[0].request)["text"] == "hi"
    assert body(gen_route.calls[1].request) == {"text": "raw"}


# -- per-call timeouts ---------------------------------------------------------------


def test_default_timeout_is_connect_only(mock: respx.MockRouter) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    InferenceHTTPClient(BASE, connect_timeout=2.5).generate(prompt="x")
    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout == {"connect": 2.5, "read": None, "write": None, "pool": None}


def test_per_call_timeout_overrides(mock: respx.MockRouter) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    client = InferenceHTTPClient(BASE, connect_timeout=2.5)
    client.generate(prompt="x", timeout=7.0)
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 7.0,
        "read": 7.0,
        "write": 7.0,
        "pool": 7.0,
    }
    client.generate(prompt="x", timeout=httpx.Timeout(1.0, read=30.0))
    assert route.calls.last.request.extensions["timeout"]["read"] == 30.0
    client.generate(prompt="x", timeout=None)
    assert route.calls.last.request.extensions["timeout"]["connect"] is None


def test_post_timeout_s_bounds_read_keeps_connect(mock: respx.MockRouter) -> None:
    route = mock.post("/x").mock(return_value=httpx.Response(200, json={}))
    InferenceHTTPClient(BASE, connect_timeout=3.0).post("/x", {}, timeout_s=120)
    timeout = route.calls.last.request.extensions["timeout"]
    assert timeout["connect"] == 3.0
    assert timeout["read"] == 120


# -- retries -------------------------------------------------------------------------


def test_retry_on_503_then_success(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/generate").mock(
        side_effect=[
            httpx.Response(503, json={"error": {"message": "busy"}}),
            httpx.Response(502, text="bad gateway"),
            httpx.Response(200, json=gen_json()),
        ]
    )
    client = InferenceHTTPClient(BASE, retry_policy=RetryPolicy(initial_delay=0.5, jitter=0.0))
    out = client.generate(prompt="x")
    assert out.text == " Paris"
    assert route.call_count == 3
    assert sleeps == [0.5, 1.0]  # exponential
    # Every attempt carries the same body.
    assert len({c.request.content for c in route.calls}) == 1


def test_retries_exhausted_raises_last_error(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/generate").mock(
        return_value=httpx.Response(
            503,
            json={"error": {"code": "no_available_workers", "message": "none"}},
            headers={"x-smg-error-code": "no_available_workers"},
        )
    )
    client = InferenceHTTPClient(BASE, max_retries=4)
    with pytest.raises(ServiceUnavailableError) as info:
        client.generate(prompt="x")
    assert route.call_count == 5
    assert len(sleeps) == 4
    assert info.value.code == "no_available_workers"


def test_default_max_retries_is_two(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(500, text="boom"))
    with pytest.raises(InternalServerError):
        InferenceHTTPClient(BASE).generate(prompt="x")
    assert route.call_count == 3


def test_per_call_max_retries(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(503))
    chat = mock.post("/v1/chat/completions").mock(return_value=httpx.Response(503))
    client = InferenceHTTPClient(BASE, max_retries=5)
    with pytest.raises(ServiceUnavailableError):
        client.generate(prompt="x", max_retries=0)
    assert route.call_count == 1
    assert sleeps == []
    with pytest.raises(ServiceUnavailableError):
        client.chat_completion([{"role": "user", "content": "x"}], max_retries=1)
    assert chat.call_count == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 409, 415, 422])
def test_client_errors_not_retried(
    mock: respx.MockRouter, sleeps: list[float], status: int
) -> None:
    route = mock.post("/generate").mock(return_value=httpx.Response(status, text="nope"))
    with pytest.raises(APIStatusError) as info:
        InferenceHTTPClient(BASE, max_retries=3).generate(prompt="x")
    assert info.value.status_code == status
    assert route.call_count == 1
    assert sleeps == []


def test_retry_after_honoured(mock: respx.MockRouter, sleeps: list[float]) -> None:
    mock.post("/generate").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503, headers={"retry-after-ms": "40"}),
            httpx.Response(200, json=gen_json()),
        ]
    )
    InferenceHTTPClient(BASE, max_retries=2).generate(prompt="x")
    assert sleeps == [3.0, pytest.approx(0.04)]


def test_retry_after_capped(mock: respx.MockRouter, sleeps: list[float]) -> None:
    mock.post("/generate").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "86400"}),
            httpx.Response(200, json=gen_json()),
        ]
    )
    client = InferenceHTTPClient(BASE, retry_policy=RetryPolicy(max_retry_after=2.0))
    client.generate(prompt="x")
    assert sleeps == [2.0]


def test_connection_errors_retried(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/generate").mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.Response(200, json=gen_json()),
        ]
    )
    assert InferenceHTTPClient(BASE).generate(prompt="x").text == " Paris"
    assert route.call_count == 3
    assert len(sleeps) == 2


def test_connection_error_exhausted(mock: respx.MockRouter, sleeps: list[float]) -> None:
    mock.post("/generate").mock(side_effect=httpx.ConnectError("Connection refused"))
    with pytest.raises(APIConnectionError) as info:
        InferenceHTTPClient(BASE, max_retries=1).generate(prompt="x")
    assert not isinstance(info.value, APITimeoutError)
    assert "POST" in str(info.value) and f"{BASE}/generate" in str(info.value)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_timeout_maps_to_api_timeout_error(mock: respx.MockRouter, sleeps: list[float]) -> None:
    mock.post("/generate").mock(side_effect=httpx.ConnectTimeout("timed out"))
    with pytest.raises(APITimeoutError) as info:
        InferenceHTTPClient(BASE, max_retries=0).generate(prompt="x")
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, RLinfHTTPError)


@pytest.mark.anyio
async def test_async_retries(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/v1/chat/completions").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "1"}),
            httpx.ReadError("reset"),
            httpx.Response(200, json=CHAT_JSON),
        ]
    )
    async with InferenceHTTPClient(BASE) as client:
        reply = await client.async_chat_completion([{"role": "user", "content": "x"}], model="m")
    assert reply.choices[0].message.content == "Hi there"
    assert route.call_count == 3
    assert sleeps[0] == 1.0
    assert len(sleeps) == 2


@pytest.mark.anyio
async def test_async_not_retried_400(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/generate").mock(
        return_value=httpx.Response(400, json={"error": {"message": "input_ids cannot be empty."}})
    )
    async with InferenceHTTPClient(BASE) as client:
        with pytest.raises(BadRequestError) as info:
            await client.async_generate(prompt="x")
    assert route.call_count == 1
    assert info.value.message == "input_ids cannot be empty."


# -- post: the seed's semantics -----------------------------------------------------------


def test_post_no_retry_by_default(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/v1/actions/generations").mock(return_value=httpx.Response(503))
    with pytest.raises(RuntimeError):
        InferenceHTTPClient(BASE).post("/v1/actions/generations", {"a": 1})
    assert route.call_count == 1


def test_post_linear_backoff(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/x").mock(
        side_effect=[
            httpx.Response(500),
            httpx.Response(502),
            httpx.Response(504),
            httpx.Response(200, json={"ok": 1}),
        ]
    )
    result = InferenceHTTPClient(BASE).post("/x", {"a": 1}, max_retries=5, retry_backoff_s=0.5)
    assert result == {"ok": 1}
    assert route.call_count == 4
    assert sleeps == [0.5, 1.0, 1.5]  # retry_backoff_s * (attempt + 1)


def test_post_exhausted_runtime_error_message(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/x").mock(return_value=httpx.Response(503, text="overloaded"))
    with pytest.raises(RuntimeError) as info:
        InferenceHTTPClient(BASE).post("/x", {}, max_retries=2, retry_backoff_s=1.0)
    assert route.call_count == 3
    assert sleeps == [1.0, 2.0]
    assert str(info.value) == f"POST {BASE}/x failed: status=503, body=overloaded"
    assert isinstance(info.value, ServiceUnavailableError)


@pytest.mark.parametrize("status", [408, 429, 400, 404, 501])
def test_post_only_5xx_gateway_statuses_retried(
    mock: respx.MockRouter, sleeps: list[float], status: int
) -> None:
    route = mock.post("/x").mock(return_value=httpx.Response(status, text="no"))
    with pytest.raises(RuntimeError, match=f"status={status}"):
        InferenceHTTPClient(BASE).post("/x", {}, max_retries=3, retry_backoff_s=0.1)
    assert route.call_count == 1


def test_post_retries_connection_errors(mock: respx.MockRouter, sleeps: list[float]) -> None:
    route = mock.post("/x").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=[1])]
    )
    assert InferenceHTTPClient(BASE).post("/x", {}, max_retries=1, retry_backoff_s=2.0) == [1]
    assert route.call_count == 2
    assert sleeps == [2.0]


def test_post_body_truncated_in_message(mock: respx.MockRouter) -> None:
    mock.post("/x").mock(return_value=httpx.Response(500, text="E" * 2000))
    with pytest.raises(RuntimeError) as info:
        InferenceHTTPClient(BASE).post("/x", {})
    assert "E" * 500 in str(info.value)
    assert "E" * 501 not in str(info.value)


def test_post_bad_arguments(mock: respx.MockRouter) -> None:
    client = InferenceHTTPClient(BASE)
    for kwargs in (
        {"timeout_s": 0},
        {"timeout_s": -1},
        {"retry_backoff_s": -1.0},
        {"max_retries": -1},
    ):
        with pytest.raises(InvalidRequestError):
            client.post("/x", {}, **kwargs)


def test_post_json_body_and_empty_response(mock: respx.MockRouter) -> None:
    route = mock.post("/flush_cache").mock(return_value=httpx.Response(200, content=b""))
    assert InferenceHTTPClient(BASE).post("flush_cache", {"a": [1, "b"]}) is None
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json"
    assert body(request) == {"a": [1, "b"]}


# -- msgpack post ---------------------------------------------------------------------


def test_msgpack_post_round_trip(mock: respx.MockRouter) -> None:
    np = pytest.importorskip("numpy")
    from rlinf_http.codecs import msgpack as codec

    actions = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["headers"] = request.headers
        seen["payload"] = codec.unpackb(request.content)
        reply = {"data": [{"action": {"values": actions}}], "count": np.int64(3)}
        return httpx.Response(
            200, content=codec.packb(reply), headers={"content-type": "application/msgpack"}
        )

    mock.post("/v1/actions/generations").mock(side_effect=handler)
    obs = np.ones((2, 5), dtype=np.uint8)
    payload = {"model": "m", "input": {"prompt": ["a", "b"], "observation": {"img": obs}}}
    result = InferenceHTTPClient(BASE).post("/v1/actions/generations", payload, msgpack=True)
    assert seen["headers"]["content-type"] == "application/msgpack"
    assert seen["headers"]["accept"] == "application/msgpack"
    sent_obs = seen["payload"]["input"]["observation"]["img"]
    assert sent_obs.dtype == np.uint8 and sent_obs.shape == (2, 5)
    values = result["data"][0]["action"]["values"]
    assert isinstance(values, np.ndarray)
    assert values.dtype == np.float32
    assert np.array_equal(values, actions)
    assert result["count"] == 3


def test_msgpack_post_rejects_json_response(mock: respx.MockRouter) -> None:
    pytest.importorskip("numpy")
    mock.post("/v1/actions/generations").mock(return_value=httpx.Response(200, json={"a": 1}))
    with pytest.raises(APIResponseValidationError, match="msgpack"):
        InferenceHTTPClient(BASE).post("/v1/actions/generations", {"a": 1}, msgpack=True)


def test_msgpack_post_rejects_garbage(mock: respx.MockRouter) -> None:
    pytest.importorskip("numpy")
    mock.post("/v").mock(
        return_value=httpx.Response(
            200, content=b"\xc1\xc1\xc1", headers={"content-type": "application/msgpack"}
        )
    )
    with pytest.raises(APIResponseValidationError):
        InferenceHTTPClient(BASE).post("/v", {}, msgpack=True)


@pytest.mark.anyio
async def test_async_msgpack_post(mock: respx.MockRouter) -> None:
    np = pytest.importorskip("numpy")
    from rlinf_http.codecs import msgpack as codec

    def handler(request: httpx.Request) -> httpx.Response:
        payload = codec.unpackb(request.content)
        doubled = payload["x"] * 2
        return httpx.Response(
            200,
            content=codec.packb({"y": doubled}),
            headers={"content-type": "application/msgpack"},
        )

    mock.post("/v").mock(side_effect=handler)
    async with InferenceHTTPClient(BASE) as client:
        result = await client.async_post("/v", {"x": np.array([1.5, 2.5])}, msgpack=True)
    assert result["y"].tolist() == [3.0, 5.0]


# -- user-supplied httpx clients --------------------------------------------------------


def recording_transport(
    calls: list[httpx.Request], make: Callable[[httpx.Request], httpx.Response]
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        calls.append(request)
        return make(request)

    return httpx.MockTransport(handler)


def respond(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/generate":
        return httpx.Response(200, json=gen_json())
    if request.url.path == "/health":
        return httpx.Response(200)
    return httpx.Response(200, json=CHAT_JSON)


def test_user_sync_client_used_as_given() -> None:
    calls: list[httpx.Request] = []
    hooks: list[str] = []
    user = httpx.Client(
        transport=recording_transport(calls, respond),
        headers={"X-User": "u1"},
        event_hooks={
            "request": [lambda r: hooks.append(f"req {r.url.path}")],
            "response": [lambda r: hooks.append(f"resp {r.status_code}")],
        },
    )
    client = InferenceHTTPClient(BASE, http_client=user, api_key="k")
    out = client.generate(prompt="x")
    assert out.text == " Paris"
    assert client.health() is True
    assert hooks == ["req /generate", "resp 200", "req /health", "resp 200"]
    assert calls[0].headers["x-user"] == "u1"
    assert calls[0].headers["authorization"] == "Bearer k"
    assert calls[0].headers["content-type"] == "application/json"
    assert str(calls[0].url) == f"{BASE}/generate"
    client.close()
    with client:
        pass
    assert not user.is_closed
    # Still usable after close(): the same user client is used again.
    client.generate(prompt="y")
    assert len(calls) == 3
    user.close()


@pytest.mark.anyio
async def test_user_async_client_used_as_given() -> None:
    calls: list[httpx.Request] = []
    hooks: list[str] = []

    async def on_request(request: httpx.Request) -> None:
        hooks.append(request.url.path)

    user = httpx.AsyncClient(
        transport=recording_transport(calls, respond),
        headers={"X-User": "u2"},
        event_hooks={"request": [on_request]},
    )
    async with InferenceHTTPClient(BASE, async_http_client=user) as client:
        out = await client.async_generate(prompt="x")
        reply = await client.async_chat_completion([{"role": "user", "content": "x"}], model="m")
        assert await client.async_health() is True
    assert out.text == " Paris"
    assert reply.choices[0].message.content == "Hi there"
    assert hooks == ["/generate", "/v1/chat/completions", "/health"]
    assert calls[0].headers["x-user"] == "u2"
    await client.aclose()
    assert not user.is_closed
    await user.aclose()


def test_user_client_error_statuses() -> None:
    user = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(404, json={"detail": "Not Found"}))
    )
    client = InferenceHTTPClient(BASE, http_client=user)
    with pytest.raises(NotFoundError) as info:
        client.generate(prompt="x")
    assert info.value.message == "Not Found"
    assert client.health() is False
    user.close()


def test_client_with_user_clients_cannot_be_pickled() -> None:
    import pickle

    user = httpx.Client(transport=httpx.MockTransport(respond))
    with pytest.raises(TypeError):
        pickle.dumps(InferenceHTTPClient(BASE, http_client=user))
    user.close()


def test_respx_using_httpx() -> None:
    with respx.mock(base_url=BASE, using="httpx") as router:
        route = router.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
        out = InferenceHTTPClient(BASE).generate(prompt="x")
    assert out.text == " Paris"
    assert route.called


@pytest.mark.anyio
async def test_respx_using_httpx_async() -> None:
    with respx.mock(base_url=BASE, using="httpx") as router:
        router.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
        async with InferenceHTTPClient(BASE) as client:
            out = await client.async_generate(prompt="x")
    assert out.output_ids == [1000, 1001]


# -- health never raises ----------------------------------------------------------------

HEALTH_FAILURES: list[Any] = [
    httpx.Response(500),
    httpx.Response(503, text="unhealthy"),
    httpx.Response(404),
    httpx.Response(401, content=b""),
    httpx.ConnectError("refused"),
    httpx.ConnectTimeout("slow"),
    httpx.ReadTimeout("slow"),
    httpx.ReadError("reset"),
    httpx.RemoteProtocolError("bad"),
    httpx.UnsupportedProtocol("nope"),
    RuntimeError("something unexpected in a transport"),
]


@pytest.mark.parametrize("failure", HEALTH_FAILURES, ids=lambda f: repr(f)[:40])
def test_health_false_on_every_failure(
    mock: respx.MockRouter, sleeps: list[float], failure: Any
) -> None:
    route = mock.get("/health")
    if isinstance(failure, httpx.Response):
        route.mock(return_value=failure)
    else:
        route.mock(side_effect=failure)
    assert InferenceHTTPClient(BASE).health() is False
    assert sleeps == []  # health is not retried


@pytest.mark.anyio
@pytest.mark.parametrize("failure", HEALTH_FAILURES, ids=lambda f: repr(f)[:40])
async def test_async_health_false_on_every_failure(
    mock: respx.MockRouter, sleeps: list[float], failure: Any
) -> None:
    route = mock.get("/health")
    if isinstance(failure, httpx.Response):
        route.mock(return_value=failure)
    else:
        route.mock(side_effect=failure)
    async with InferenceHTTPClient(BASE) as client:
        assert await client.async_health() is False


def test_health_true_on_any_2xx(mock: respx.MockRouter) -> None:
    mock.get("/health").mock(return_value=httpx.Response(204))
    assert InferenceHTTPClient(BASE).health() is True


# -- errors carry details ---------------------------------------------------------------


def test_status_error_details(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(
        return_value=httpx.Response(
            422,
            text="Failed to deserialize the JSON body into the target type: text: invalid type",
            headers={"x-request-id": "gnt-42", "content-type": "text/plain"},
        )
    )
    with pytest.raises(UnprocessableEntityError) as info:
        InferenceHTTPClient(BASE).generate(prompt=["a", "b"])
    err = info.value
    assert err.status_code == 422
    assert err.request_id == "gnt-42"
    assert isinstance(err.body, str) and err.body.startswith("Failed to deserialize")
    assert err.method == "POST"
    assert err.url == f"{BASE}/generate"
    assert str(err).startswith(f"POST {BASE}/generate failed: status=422")


def test_rate_limit_error_after_retries(mock: respx.MockRouter, sleeps: list[float]) -> None:
    mock.post("/v1/chat/completions").mock(
        return_value=httpx.Response(
            429, json={"object": "error", "message": "slow down", "type": "429", "code": 429}
        )
    )
    with pytest.raises(RateLimitError) as info:
        InferenceHTTPClient(BASE, max_retries=1).chat_completion([{"role": "user", "content": "x"}])
    assert info.value.code == 429
    assert info.value.message == "slow down"
    assert "/v1/chat/completions" in str(info.value)


def test_200_not_json(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(
        return_value=httpx.Response(200, text="<html>hi</html>", headers={"x-a": "b"})
    )
    with pytest.raises(APIResponseValidationError) as info:
        InferenceHTTPClient(BASE).generate(prompt="x")
    assert info.value.raw_body == b"<html>hi</html>"
    assert f"{BASE}/generate" in str(info.value)


def test_batch_answered_with_object_is_validation_error(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    with pytest.raises(APIResponseValidationError, match="list"):
        InferenceHTTPClient(BASE).generate(prompt=["a", "b"])


@pytest.mark.anyio
async def test_async_close_then_reuse(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    client = InferenceHTTPClient(BASE)
    await client.async_generate(prompt="x")
    first = client._driver._async_client
    assert first is not None
    await client.aclose()
    assert first.is_closed
    await client.async_generate(prompt="y")
    assert client._driver._async_client is not None and client._driver._async_client is not first
    await client.aclose()


def test_sync_close_then_reuse(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(return_value=httpx.Response(200, json=gen_json()))
    client = InferenceHTTPClient(BASE)
    with client:
        client.generate(prompt="x")
        first = client._driver._sync_client
    assert first is not None and first.is_closed
    client.generate(prompt="y")
    assert client._driver._sync_client is not None and client._driver._sync_client is not first
    client.close()


def test_sleep_patch_guard(sleeps: list[float]) -> None:
    # Guard for the fixture above: the I/O module must sleep through these names.
    assert driver_module.anyio.sleep is anyio.sleep
    assert driver_module.time.sleep == sleeps.append


def test_retry_policy_count_kept_when_max_retries_not_given() -> None:
    # A user who passes a full RetryPolicy(max_retries=5) and no max_retries= expects
    # 5 retries; the constructor's max_retries default must not silently replace it.
    client = InferenceHTTPClient(BASE, retry_policy=RetryPolicy(max_retries=5))
    assert client.retry_policy.max_retries == 5
    assert InferenceHTTPClient(BASE, max_retries=1).retry_policy.max_retries == 1
    assert InferenceHTTPClient(BASE).retry_policy.max_retries == 2


def test_absurd_retry_after_date_does_not_escape_as_valueerror(
    mock: respx.MockRouter, sleeps: list[float]
) -> None:
    # A server-controlled header must never crash the call with a non-library error.
    route = mock.post("/generate").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "Mon, 01 Jan 99999 00:00:00 GMT"}),
            httpx.Response(200, json=gen_json()),
        ]
    )
    assert InferenceHTTPClient(BASE).generate(prompt="x").text == " Paris"
    assert route.call_count == 2
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 60


def test_post_retries_timeouts_as_the_seed_did(mock: respx.MockRouter, sleeps: list[float]) -> None:
    # RLinf's post retried every failure, read timeouts included; typed calls do not
    # (the server may still be generating), so the same timeout is raised at once there.
    route = mock.post(f"{BASE}/v1/actions/generations").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"ok": 1})]
    )
    client = InferenceHTTPClient(BASE)
    assert client.post("/v1/actions/generations", {"a": 1}, max_retries=1) == {"ok": 1}
    assert route.call_count == 2

    gen = mock.post(f"{BASE}/generate").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError):
        client.generate(prompt="x", max_retries=3)
    assert gen.call_count == 1


# -- streams from a mock: the response was built already read -----------------------

SSE_BODY = (
    b'data: {"text": " a", "meta_info": {"completion_tokens": 1}}\n\n'
    b'data: {"text": " a b", "meta_info": {"completion_tokens": 2}}\n\n'
    b"data: [DONE]\n\n"
)


def test_stream_from_respx_sync(mock: respx.MockRouter) -> None:
    # respx hands back httpx.Response(content=...), whose body was read when it was
    # built: the stream must deliver it, not fail with httpx.StreamConsumed
    mock.post("/generate").mock(return_value=httpx.Response(200, content=SSE_BODY))
    with InferenceHTTPClient(BASE) as client, client.generate("hi", stream=True) as chunks:
        assert [(c.text, c.delta) for c in chunks] == [(" a", " a"), (" a b", " b")]


@pytest.mark.anyio
async def test_stream_from_respx_async(mock: respx.MockRouter) -> None:
    mock.post("/generate").mock(return_value=httpx.Response(200, content=SSE_BODY))
    async with InferenceHTTPClient(BASE) as client:
        async with await client.async_generate("hi", stream=True) as chunks:
            assert [(c.text, c.delta) async for c in chunks] == [(" a", " a"), (" a b", " b")]
