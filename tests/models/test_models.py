"""The wire models: realistic sglang payloads, unknown fields, dict-style access."""

from __future__ import annotations

import copy
import json
from typing import Any

import pydantic
import pytest

from rlinf_http import (
    ChatCompletion,
    ChatCompletionChunk,
    FinishAbort,
    FinishLength,
    FinishOther,
    FinishStop,
    GenerateOutput,
    Logprob,
    MetaInfo,
    SamplingParams,
    Usage,
)

# A /generate response as sglang 0.5.x sends it (reference §1.4), with logprobs on.
GENERATE: dict[str, Any] = {
    "text": " Paris. It is known for",
    "output_ids": [12095, 13, 1084, 374, 3881, 369],
    "meta_info": {
        "id": "3f2c9b7f0c4e4e55a7f0d9e1b2c3d4e5",
        "finish_reason": {"type": "length", "length": 6},
        "prompt_tokens": 6,
        "completion_tokens": 6,
        "cached_tokens": 2,
        "weight_version": "default",
        "e2e_latency": 0.0421,
        "reasoning_tokens": 0,
        "total_retractions": 0,
        "cached_tokens_details": None,
        "dp_rank": None,
        "response_sent_to_client_ts": 1767225600.123,
        "input_token_logprobs": [
            [None, 785, None],
            [-3.25, 6722, None],
            [-0.5, 315, None],
        ],
        "output_token_logprobs": [
            [-0.0123, 12095, " Paris"],
            [-1.5, 13, "."],
        ],
        "output_token_logprobs_length": 2,
        "output_top_logprobs": [
            [[-0.0123, 12095, " Paris"], [-4.6, 279, " the"]],
            None,
        ],
    },
    "server_new_field": {"nested": [1, 2, 3]},
}


def test_realistic_generate_typed() -> None:
    out = GenerateOutput.model_validate(GENERATE)
    assert out.text == " Paris. It is known for"
    assert out.output_ids == [12095, 13, 1084, 374, 3881, 369]
    meta = out.meta_info
    assert isinstance(meta, MetaInfo)
    assert meta.id == "3f2c9b7f0c4e4e55a7f0d9e1b2c3d4e5"
    assert meta.prompt_tokens == 6
    assert meta.completion_tokens == 6
    assert meta.cached_tokens == 2
    assert meta.e2e_latency == pytest.approx(0.0421)
    assert meta.weight_version == "default"
    assert isinstance(meta.finish_reason, FinishLength)
    assert meta.finish_reason.length == 6
    assert out.finish_reason is meta.finish_reason


def test_logprob_triples_including_null_logprob() -> None:
    out = GenerateOutput.model_validate(GENERATE)
    inputs = out.meta_info.input_token_logprobs
    assert inputs is not None
    assert inputs[0] == Logprob(None, 785, None)
    assert inputs[0].logprob is None
    assert inputs[1].logprob == -3.25
    assert inputs[1].token_id == 6722
    outputs = out.meta_info.output_token_logprobs
    assert outputs is not None
    assert [(lp.token_id, lp.text) for lp in outputs] == [(12095, " Paris"), (13, ".")]
    assert isinstance(outputs[0], Logprob)
    top = out.meta_info.output_top_logprobs
    assert top is not None
    assert top[1] is None
    assert top[0] is not None
    assert top[0][1] == Logprob(-4.6, 279, " the")


def test_unknown_fields_kept_at_every_level() -> None:
    out = GenerateOutput.model_validate(GENERATE)
    assert out["server_new_field"] == {"nested": [1, 2, 3]}
    assert out.server_new_field == {"nested": [1, 2, 3]}  # type: ignore[attr-defined]
    assert out.meta_info["total_retractions"] == 0
    assert out.meta_info["output_token_logprobs_length"] == 2
    assert "dp_rank" in out.meta_info
    assert out.meta_info["dp_rank"] is None


def test_dict_style_access_like_the_seed() -> None:
    out = GenerateOutput.model_validate(GENERATE)
    assert out["text"] == out.text
    assert out["meta_info"]["completion_tokens"] == 6
    assert out["meta_info"]["finish_reason"]["type"] == "length"
    assert out.get("missing") is None
    assert out.get("missing", 5) == 5
    assert "text" in out
    assert "nope" not in out
    assert 3 not in out  # type: ignore[operator]
    with pytest.raises(KeyError):
        out["nope"]
    assert set(out.keys()) == {"text", "output_ids", "meta_info", "server_new_field"}


def test_to_dict_round_trip() -> None:
    out = GenerateOutput.model_validate(GENERATE)
    dumped = out.to_dict()
    # Logprob triples come back as lists, unknown fields as they were.
    assert json.loads(json.dumps(dumped)) == GENERATE
    again = GenerateOutput.model_validate(dumped)
    assert again == out


def test_skip_tokenizer_init_has_no_text() -> None:
    out = GenerateOutput.model_validate({"output_ids": [1, 2], "meta_info": {"id": "x"}})
    assert out.text == ""
    assert out.output_ids == [1, 2]
    assert "text" not in out.to_dict()


@pytest.mark.parametrize(
    ("reason", "cls", "check"),
    [
        ({"type": "length", "length": 32}, FinishLength, lambda r: r.length == 32),
        ({"type": "stop", "matched": 151645}, FinishStop, lambda r: r.matched == 151645),
        ({"type": "stop", "matched": [1, 2]}, FinishStop, lambda r: r.matched == [1, 2]),
        ({"type": "stop", "matched": "</s>"}, FinishStop, lambda r: r.matched == "</s>"),
        ({"type": "stop", "matched": "42"}, FinishStop, lambda r: r.matched == "42"),
        (
            {"type": "abort", "message": "Abort by user", "status_code": None, "err_type": None},
            FinishAbort,
            lambda r: r.message == "Abort by user" and r.status_code is None,
        ),
        (
            {"type": "abort", "message": "too long", "status_code": 400, "err_type": "BadRequest"},
            FinishAbort,
            lambda r: r.status_code == 400 and r.err_type == "BadRequest",
        ),
        (
            {"type": "brand_new", "detail": {"x": 1}},
            FinishOther,
            lambda r: r.type == "brand_new" and r["detail"] == {"x": 1},
        ),
    ],
)
def test_finish_reason_variants(reason: dict[str, Any], cls: type, check: Any) -> None:
    data = copy.deepcopy(GENERATE)
    data["meta_info"]["finish_reason"] = reason
    out = GenerateOutput.model_validate(data)
    assert type(out.finish_reason) is cls
    assert check(out.finish_reason)
    # It round-trips to the wire form unchanged.
    assert out.to_dict()["meta_info"]["finish_reason"] == reason


def test_finish_reason_null_mid_stream() -> None:
    data = copy.deepcopy(GENERATE)
    data["meta_info"]["finish_reason"] = None
    assert GenerateOutput.model_validate(data).finish_reason is None


def test_generate_from_json_bytes() -> None:
    out = GenerateOutput.model_validate_json(json.dumps(GENERATE))
    assert out.meta_info.completion_tokens == 6


# -- chat --------------------------------------------------------------------------------

CHAT: dict[str, Any] = {
    "id": "0c7e1f0a9b2d4c3e8f6a5b4c3d2e1f00",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "/models/Qwen2.5-0.5B-Instruct",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello! How can I help?",
                "reasoning_content": None,
                "tool_calls": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
            "matched_stop": 151645,
        }
    ],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 7,
        "total_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 0},
        "reasoning_tokens": 0,
    },
    "metadata": {"weight_version": "default"},
}


def test_chat_completion_typed() -> None:
    reply = ChatCompletion.model_validate(CHAT)
    assert reply.choices[0].message.content == "Hello! How can I help?"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].matched_stop == 151645
    assert isinstance(reply.usage, Usage)
    assert reply.usage.total_tokens == 16
    assert reply.usage.prompt_tokens_details == {"cached_tokens": 0}
    assert reply.model == "/models/Qwen2.5-0.5B-Instruct"
    # Seed-style access and unknown fields.
    assert reply["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert reply["usage"]["total_tokens"] == 16
    assert reply["metadata"]["weight_version"] == "default"
    assert reply.weight_version == "default"  # typed (sglang 0.5.23 ``metadata``)
    assert ChatCompletion.model_validate(reply.to_dict()) == reply


def test_chat_tool_calls_and_matched_stop_string() -> None:
    data = copy.deepcopy(CHAT)
    data["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "index": 0,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    data["choices"][0]["finish_reason"] = "tool_calls"
    data["choices"][0]["matched_stop"] = "</tool>"
    reply = ChatCompletion.model_validate(data)
    calls = reply.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}
    assert reply.choices[0].matched_stop == "</tool>"


def test_chat_chunk() -> None:
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
        }
    )
    assert chunk.choices[0].delta.role == "assistant"
    assert chunk.usage is None


# -- SamplingParams ----------------------------------------------------------------------


def test_sampling_params_forbid_unknown_keys() -> None:
    with pytest.raises(pydantic.ValidationError):
        SamplingParams(temprature=0.5)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        SamplingParams.model_validate({"max_new_tokens": 4, "foo": 1})


def test_sampling_params_to_wire() -> None:
    sp = SamplingParams(temperature=0.0, max_new_tokens=32, top_k=-1, stop_token_ids=[2])
    assert sp.to_wire() == {
        "temperature": 0.0,
        "max_new_tokens": 32,
        "top_k": -1,
        "stop_token_ids": [2],
    }
    assert SamplingParams().to_wire() == {}


@pytest.mark.parametrize(
    "kwargs",
    [{"top_p": 1.01}, {"temperature": -1}, {"n": 0}, {"min_p": 1.5}, {"max_new_tokens": -3}],
)
def test_sampling_params_ranges(kwargs: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        SamplingParams(**kwargs)
