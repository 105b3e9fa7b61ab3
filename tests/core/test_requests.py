"""The sans-I/O request builders: validation before I/O, exact bodies, batch detection.

No sockets: everything here calls ``rlinf_http._core.requests`` directly.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from rlinf_http import APIResponseValidationError, InvalidRequestError, SamplingParams, __version__
from rlinf_http._core.requests import (
    build_chat_completion,
    build_generate,
    build_health,
    build_post,
    default_headers,
    encode_json,
    normalize_base_url,
    normalize_path,
)
from rlinf_http._core.responses import RawResponse
from rlinf_http.models import ChatMessage, GenerateOutput

# -- base URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:30000", "http://127.0.0.1:30000"),
        ("http://127.0.0.1:30000/", "http://127.0.0.1:30000"),
        ("http://127.0.0.1:30000///", "http://127.0.0.1:30000"),
        ("https://router.example:8443/api/", "https://router.example:8443/api"),
        ("http://localhost", "http://localhost"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("  http://10.0.0.1:1234/  ", "http://10.0.0.1:1234"),
    ],
)
def test_base_url_normalized(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://127.0.0.1:30000",
        "ws://127.0.0.1:30000",
        "127.0.0.1:30000",
        "localhost:30000",
        "http://",
        "http:///generate",
        "https://:8000",
        "http://host:99999",
        "http://host:notaport",
        "http://host:30000/?x=1",
        "http://host:30000/#frag",
        "",
        "   ",
        None,
        12345,
    ],
)
def test_bad_base_url_rejected(bad: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        normalize_base_url(bad)
    assert isinstance(info.value, ValueError)
    assert "base_url" in str(info.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/generate", "/generate"),
        ("generate", "/generate"),
        ("//v1/actions/generations", "/v1/actions/generations"),
        (" /flush_cache ", "/flush_cache"),
    ],
)
def test_normalize_path(given: str, expected: str) -> None:
    assert normalize_path(given) == expected


@pytest.mark.parametrize("bad", ["", "   ", None, 3, "http://other/generate"])
def test_bad_path_rejected(bad: Any) -> None:
    with pytest.raises(InvalidRequestError):
        normalize_path(bad)


# -- headers ---------------------------------------------------------------------------


def test_default_headers_plain() -> None:
    headers = default_headers(None, None)
    assert headers["user-agent"] == f"rlinf-http/{__version__}"
    assert "authorization" not in headers


def test_default_headers_api_key_and_custom_lowercased() -> None:
    headers = default_headers("sk-123", {"X-Trace": "abc", "User-Agent": "mine/1"})
    assert headers["authorization"] == "Bearer sk-123"
    assert headers["x-trace"] == "abc"
    # A custom header overrides the default of the same name, case-insensitively.
    assert headers["user-agent"] == "mine/1"
    assert all(name == name.lower() for name in headers)


@pytest.mark.parametrize("bad_key", ["", 123])
def test_bad_api_key(bad_key: Any) -> None:
    with pytest.raises(InvalidRequestError):
        default_headers(bad_key, None)


def test_non_string_header_value_rejected() -> None:
    with pytest.raises(InvalidRequestError):
        default_headers(None, {"x-n": 1})  # type: ignore[dict-item]


# -- /generate: argument validation ----------------------------------------------------


def gen(**kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "prompt": None,
        "input_ids": None,
        "sampling_params": None,
        "return_logprob": False,
        "extra": {},
    }
    args.update(kwargs)
    return build_generate(
        args.pop("prompt"),
        args.pop("input_ids"),
        args.pop("sampling_params"),
        args.pop("return_logprob"),
        args.pop("extra"),
        **args,
    )


def body_of(op: Any) -> dict[str, Any]:
    assert op.content is not None
    return json.loads(op.content)


def test_generate_needs_exactly_one_input() -> None:
    with pytest.raises(InvalidRequestError, match="exactly one"):
        gen()
    with pytest.raises(InvalidRequestError, match="exactly one"):
        gen(prompt="hi", input_ids=[1, 2])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": []},
        {"prompt": ["a", 1]},
        {"prompt": b"bytes"},
        {"prompt": 42},
        {"input_ids": []},
        {"input_ids": [[]]},
        {"input_ids": [[1, 2], []]},
        {"input_ids": [1, -2]},
        {"input_ids": [1, 2.0]},
        {"input_ids": [1, True]},
        {"input_ids": ["1", "2"]},
        {"input_ids": "123"},
        {"input_ids": b"\x01\x02"},
        {"input_ids": 7},
        {"input_ids": [[1, 2], 3]},
        {"input_ids": [[1, "x"]]},
        {"prompt": "x", "return_logprob": "yes"},
        {"prompt": "x", "return_logprob": 1},
        {"prompt": "x", "sampling_params": "temperature=0"},
        {"prompt": "x", "sampling_params": [("temperature", 0.0)]},
    ],
)
def test_generate_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        gen(**kwargs)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "sampling",
    [
        {"temperature": "0.5"},
        {"temperature": -0.1},
        {"max_new_tokens": "32"},
        {"max_new_tokens": 32.0},
        {"max_new_tokens": -1},
        {"max_new_tokens": True},
        {"top_p": 0},
        {"top_p": 1.5},
        {"min_p": 2},
        {"frequency_penalty": 3},
        {"presence_penalty": -3},
        {"repetition_penalty": 0},
        {"n": 0},
        {"stop": 5},
        {"stop_token_ids": [1, "2"]},
        {"ignore_eos": "true"},
        {"stream_interval": 0},
    ],
)
def test_generate_bad_sampling_params(sampling: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="sampling_params"):
        gen(prompt="x", sampling_params=sampling)


def test_generate_bad_sampling_message_names_the_key() -> None:
    with pytest.raises(InvalidRequestError) as info:
        gen(prompt="x", sampling_params={"temperature": 0.0, "max_new_tokens": "32"})
    assert "max_new_tokens" in str(info.value)


def test_sampling_params_model_rejects_bad_values_too() -> None:
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError):
        SamplingParams(not_a_key=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("key", ["text", "input_ids", "sampling_params", "return_logprob"])
def test_generate_extra_cannot_shadow_own_arguments(key: str) -> None:
    with pytest.raises(InvalidRequestError, match=key):
        gen(prompt="x", extra={key: 1})


@pytest.mark.parametrize(
    ("key", "native"),
    [
        ("max_new_tokens", "max_new_tokens"),
        ("temperature", "temperature"),
        ("n", "n"),
        ("stop", "stop"),
        ("beam_width", "beam_width"),
        ("max_tokens", "max_new_tokens"),
        ("seed", "sampling_seed"),
    ],
)
def test_generate_sampling_keyword_says_where_it_belongs(key: str, native: str) -> None:
    # Issue 9 item 9: a sampling parameter passed as a keyword was sent top-level,
    # dropped by the router, and the default (128 tokens) came back.
    with pytest.raises(InvalidRequestError, match="sampling_params=") as info:
        gen(prompt="hi", extra={key: 3})
    assert repr(native) in str(info.value)


def test_generate_unknown_and_top_level_keywords_pass_through() -> None:
    extra = {"rid": "r", "top_logprobs_num": 2, "lora_path": "a", "my_field": [1]}
    assert {k: body_of(gen(prompt="hi", extra=extra))[k] for k in extra} == extra


@pytest.mark.parametrize(
    ("key", "openai"),
    [("max_new_tokens", "max_tokens"), ("min_new_tokens", "min_tokens"), ("sampling_seed", "seed")],
)
def test_chat_native_spelling_names_the_openai_one(key: str, openai: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"spells it {openai}="):
        build_chat_completion([{"role": "user", "content": "x"}], "m", {key: 3})


def test_chat_sampling_params_dict_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="as keywords"):
        build_chat_completion(
            [{"role": "user", "content": "x"}], "m", {"sampling_params": {"max_new_tokens": 3}}
        )


def test_chat_sglang_extras_without_openai_spelling_pass_through() -> None:
    kwargs = {"top_k": 5, "min_p": 0.1, "regex": "a+", "ignore_eos": True, "unknown": 1}
    body = body_of(build_chat_completion([{"role": "user", "content": "x"}], "m", kwargs))
    assert {k: body[k] for k in kwargs} == kwargs


def test_generate_unencodable_extra_is_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="JSON"):
        gen(prompt="x", extra={"rid": object()})


# -- /generate: exact bodies ---------------------------------------------------------


def test_generate_prompt_body_matches_seed() -> None:
    op = gen(prompt="The capital of France is", sampling_params={"temperature": 0.0}, rid="r-7")
    assert op.method == "POST"
    assert op.path == "/generate"
    assert dict(op.headers)["content-type"] == "application/json"
    # The RLinf client's body: return_logprob, text, sampling_params (in this order),
    # then the request id.
    assert op.content == (
        b'{"return_logprob":false,"text":"The capital of France is",'
        b'"sampling_params":{"temperature":0.0},"rid":"r-7"}'
    )


def test_generate_without_sampling_params_omits_the_key() -> None:
    body = body_of(gen(input_ids=[1, 2, 3], return_logprob=True))
    assert re.fullmatch("[0-9a-f]{32}", body.pop("rid"))
    assert body == {"return_logprob": True, "input_ids": [1, 2, 3]}


def test_generate_input_ids_tuple_and_extras() -> None:
    op = gen(input_ids=(5, 6), extra={"rid": "r-1", "top_logprobs_num": 2})
    assert body_of(op) == {
        "return_logprob": False,
        "input_ids": [5, 6],
        "rid": "r-1",
        "top_logprobs_num": 2,
    }


def test_generate_unknown_sampling_keys_in_dict_pass_through() -> None:
    # A plain dict may carry keys the typed model does not know (newer servers).
    sampling = {"temperature": 0.7, "max_new_tokens": 8, "future_knob": [1, 2], "top_k": None}
    body = body_of(gen(prompt="x", sampling_params=sampling))
    assert body["sampling_params"] == sampling


def test_generate_with_typed_sampling_params_drops_none() -> None:
    sp = SamplingParams(temperature=0.0, max_new_tokens=32, stop=["\n"])
    body = body_of(gen(prompt="x", sampling_params=sp))
    assert body["sampling_params"] == {"temperature": 0.0, "max_new_tokens": 32, "stop": ["\n"]}


def test_generate_stop_token_ids_tuple_accepted_as_seed_did() -> None:
    # The RLinf client sent sampling_params with json.dumps, which encodes a tuple as
    # a JSON list; a seed user passing a tuple must not get an error.
    body = body_of(gen(prompt="x", sampling_params={"stop_token_ids": (1, 2)}))
    assert body["sampling_params"] == {"stop_token_ids": [1, 2]}


def test_generate_stream_flag() -> None:
    assert body_of(gen(prompt="x", stream=True))["stream"] is True
    assert "stream" not in body_of(gen(prompt="x"))


# -- /generate: batch detection and response parsing ----------------------------------

ONE = {"text": " Paris", "output_ids": [1, 2], "meta_info": {"id": "a", "completion_tokens": 2}}


def raw(content: bytes | str, status: int = 200, **headers: str) -> RawResponse:
    data = content.encode() if isinstance(content, str) else content
    return RawResponse("POST", "http://h/generate", status, headers, data)


@pytest.mark.parametrize(
    ("kwargs", "batch"),
    [
        ({"prompt": "x"}, False),
        ({"prompt": ["x"]}, True),
        ({"prompt": ("x", "y")}, True),
        ({"input_ids": [1, 2]}, False),
        ({"input_ids": [[1, 2]]}, True),
        ({"input_ids": [[1], [2, 3]]}, True),
        ({"prompt": "x", "sampling_params": {"n": 1}}, False),
        ({"prompt": "x", "sampling_params": {"n": 3}}, True),
        ({"prompt": "x", "sampling_params": SamplingParams(n=2)}, True),
        ({"input_ids": [1], "sampling_params": {"n": 2, "temperature": 1.0}}, True),
    ],
)
def test_batch_detection_selects_list_or_object(kwargs: dict[str, Any], batch: bool) -> None:
    op = gen(**kwargs)
    if batch:
        result = op.parse(raw(json.dumps([ONE, ONE])))
        assert isinstance(result, list)
        assert [r.text for r in result] == [" Paris", " Paris"]
        with pytest.raises(APIResponseValidationError):
            op.parse(raw(json.dumps(ONE)))
    else:
        result = op.parse(raw(json.dumps(ONE)))
        assert isinstance(result, GenerateOutput)
        assert result.output_ids == [1, 2]
        with pytest.raises(APIResponseValidationError):
            op.parse(raw(json.dumps([ONE])))


def test_batch_prompt_body() -> None:
    body = body_of(gen(prompt=["a", "b"], sampling_params={"max_new_tokens": 4}, rid="job"))
    assert body == {
        "rid": "job",
        "return_logprob": False,
        "text": ["a", "b"],
        "sampling_params": {"max_new_tokens": 4},
    }


def test_batch_input_ids_body() -> None:
    body = body_of(gen(input_ids=[(1, 2), [3]]))
    assert body["input_ids"] == [[1, 2], [3]]


# -- /v1/chat/completions --------------------------------------------------------------


def test_chat_body_default_model_and_kwargs() -> None:
    op = build_chat_completion(
        [{"role": "user", "content": "Hello"}],
        "sglang-model",
        {"temperature": 0.0, "max_tokens": 32, "top_k": 5, "chat_template_kwargs": {"x": True}},
    )
    assert op.method == "POST"
    assert op.path == "/v1/chat/completions"
    assert dict(op.headers)["content-type"] == "application/json"
    assert body_of(op) == {
        "model": "sglang-model",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0.0,
        "max_tokens": 32,
        "top_k": 5,
        "chat_template_kwargs": {"x": True},
    }


def test_chat_default_model_is_seeds() -> None:
    from rlinf_http._core.requests import DEFAULT_CHAT_MODEL

    assert DEFAULT_CHAT_MODEL == "sglang-model"


def test_chat_typed_message_and_content_parts() -> None:
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
    ]
    op = build_chat_completion(
        [ChatMessage(role="system", content="be brief"), {"role": "user", "content": parts}],
        "m",
        {},
    )
    assert body_of(op)["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": parts},
    ]


@pytest.mark.parametrize(
    ("messages", "model", "kwargs"),
    [
        ([], "m", {}),
        ("hello", "m", {}),
        ([{"content": "no role"}], "m", {}),
        ([{"role": 1, "content": "x"}], "m", {}),
        (["hello"], "m", {}),
        ([{"role": "user", "content": "x"}], "", {}),
        ([{"role": "user", "content": "x"}], None, {}),
        ([{"role": "user", "content": "x"}], "m", {"model": "other"}),
        ([{"role": "user", "content": "x"}], "m", {"messages": []}),
        ([{"role": "user", "content": "x"}], "m", {"stream": True}),
        ([{"role": "user", "content": "x"}], "m", {"bad": {1, object()}}),
    ],
)
def test_chat_bad_arguments(messages: Any, model: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        build_chat_completion(messages, model, kwargs)


# -- /health and post --------------------------------------------------------------


def test_health_op() -> None:
    op = build_health()
    assert (op.method, op.path, op.content) == ("GET", "/health", None)
    assert op.parse(RawResponse("GET", "u", 200, {}, b"")) is True


def test_post_json_body_and_parse() -> None:
    op = build_post("v1/x", {"a": [1, 2], "b": None})
    assert (op.method, op.path) == ("POST", "/v1/x")
    assert json.loads(op.content or b"") == {"a": [1, 2], "b": None}
    assert dict(op.headers)["content-type"] == "application/json"
    assert op.parse(raw('{"ok": true}')) == {"ok": True}
    assert op.parse(raw(b"")) is None
    assert op.parse(raw("[1, 2]")) == [1, 2]


def test_post_json_not_json_response() -> None:
    op = build_post("/x", {})
    with pytest.raises(APIResponseValidationError):
        op.parse(raw("<html>oops</html>"))


def test_post_msgpack_headers_and_body() -> None:
    np = pytest.importorskip("numpy")
    from rlinf_http.codecs import msgpack as codec

    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    op = build_post("/v1/actions/generations", {"obs": arr, 1: "one"}, msgpack=True)
    headers = dict(op.headers)
    assert headers["content-type"] == "application/msgpack"
    assert headers["accept"] == "application/msgpack"
    decoded = codec.unpackb(op.content or b"")
    assert decoded["1"] == "one"  # mapping keys stringified as the RLinf client did
    assert decoded["obs"].dtype == np.float32
    assert decoded["obs"].tolist() == arr.tolist()


def test_post_unencodable_json_body() -> None:
    with pytest.raises(InvalidRequestError):
        build_post("/x", {"a": object()})


def test_encode_json_is_compact() -> None:
    assert encode_json({"a": 1, "b": [1, 2]}) == b'{"a":1,"b":[1,2]}'
