"""The static sampling type stays in step with the runtime model, and a
non-streamed chat completion must carry ``usage`` (so it is typed as present)."""

from __future__ import annotations

import typing

import pytest

from rlinf_http import (
    APIResponseValidationError,
    ChatCompletion,
    SamplingParams,
    SingleSampleParams,
)
from rlinf_http._core.requests import build_chat_completion
from rlinf_http._core.responses import RawResponse


def test_single_sample_params_lists_every_sampling_field() -> None:
    assert set(typing.get_type_hints(SingleSampleParams)) == set(SamplingParams.model_fields)
    assert SingleSampleParams.__total__ is False


def _chat_raw(body: bytes) -> RawResponse:
    return RawResponse("POST", "http://h/v1/chat/completions", 200, {}, body)


def test_chat_completion_without_usage_is_a_validation_error() -> None:
    op = build_chat_completion([{"role": "user", "content": "x"}], "m", {})
    body = b'{"choices": [{"message": {"role": "assistant", "content": "hi"}}]}'
    with pytest.raises(APIResponseValidationError, match="usage"):
        op.parse(_chat_raw(body))
    with_usage = body[:-1] + b', "usage": {"prompt_tokens": 1, "total_tokens": 2}}'
    reply = op.parse(_chat_raw(with_usage))
    assert isinstance(reply, ChatCompletion)
    assert reply.usage.total_tokens == 2
