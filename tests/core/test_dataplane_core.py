"""Sans-I/O data-plane builders and steering fields (no sockets): exact bodies,
routing-key headers, request ids, priority / lora_path, and bad input refused
before any I/O."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from rlinf_http import (
    BadRequestError,
    Completion,
    CompletionChunk,
    DuplicateRequestIdError,
    EmbeddingResponse,
    EncodeOutput,
    InvalidRequestError,
    StreamErrorEvent,
)
from rlinf_http._core.dataplane import (
    ROUTING_KEY_HEADER,
    build_completion,
    build_detokenize,
    build_embeddings,
    build_encode,
    build_load_lora,
    build_tokenize,
    build_unload_lora,
    completion_stream_parser,
    fanout_rids,
    fanout_routing_keys,
    steering_fields,
    with_routing_key,
)
from rlinf_http._core.requests import build_generate
from rlinf_http._core.responses import RawResponse, status_error

MSGS = [{"role": "user", "content": "x"}]


def body(op: Any) -> dict[str, Any]:
    return json.loads(op.content)


def raw(content: bytes, status: int = 200, path: str = "/x") -> RawResponse:
    return RawResponse("POST", "http://h" + path, status, {}, content)


# -- routing keys ---------------------------------------------------------------------------


def test_routing_key_header_added_once_and_only_when_given() -> None:
    op = build_tokenize("a b", None, True, {})
    assert with_routing_key(op, None) is op
    keyed = with_routing_key(op, "session-1")
    assert dict(keyed.headers)[ROUTING_KEY_HEADER] == "session-1"
    assert ROUTING_KEY_HEADER not in dict(op.headers)  # the original is unchanged
    assert keyed.content == op.content


@pytest.mark.parametrize("key", ["", "a\r\nX-Evil: 1", "\x00", 5, "k" * 5000, "ключ"])
def test_bad_routing_key_is_invalid_request(key: Any) -> None:
    with pytest.raises(InvalidRequestError, match="routing_key"):
        with_routing_key(build_tokenize("a", None, True, {}), key)


def test_fanout_routing_keys_one_for_all_or_one_each() -> None:
    assert fanout_routing_keys(None, 3) == [None, None, None]
    assert fanout_routing_keys("s", 2) == ["s", "s"]
    assert fanout_routing_keys(["a", "b"], 2) == ["a", "b"]
    with pytest.raises(InvalidRequestError, match="2 keys for 3 items"):
        fanout_routing_keys(["a", "b"], 3)
    with pytest.raises(InvalidRequestError, match=r"routing_key\[1\]"):
        fanout_routing_keys(["a", ""], 2)


# -- request ids, priority, lora_path on /generate --------------------------------------------


def test_generate_generates_a_fresh_rid_per_request() -> None:
    a = body(build_generate("x", None, None, False, {}))["rid"]
    b = body(build_generate("x", None, None, False, {}))["rid"]
    assert re.fullmatch("[0-9a-f]{32}", a) and a != b


def test_generate_rid_given_batch_prefix_or_list() -> None:
    assert body(build_generate("x", None, None, False, {}, rid="r1"))["rid"] == "r1"
    assert body(build_generate(["a", "b"], None, None, False, {}, rid="job"))["rid"] == "job"
    listed = build_generate(["a", "b"], None, None, False, {}, rid=["x", "y"])
    assert body(listed)["rid"] == ["x", "y"]
    # the rid an older caller passed as an untyped extra still wins
    assert body(build_generate("x", None, None, False, {"rid": "old"}))["rid"] == "old"


def test_generate_with_n_samples_leaves_the_rid_to_the_server() -> None:
    # sglang gives every sample a fresh rid: a client rid could not target them.
    assert "rid" not in body(build_generate("x", None, {"n": 2}, False, {}))


@pytest.mark.parametrize(
    ("prompt", "rid", "match"),
    [
        ("x", "", "rid"),
        ("x", ["a"], "rid"),
        (["a", "b"], ["a", "a"], "unique"),
        (["a", "b"], ["a"], "1 ids for a batch of 2"),
        (["a", "b"], 7, "rid"),
    ],
)
def test_bad_rid_is_invalid_request(prompt: Any, rid: Any, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        build_generate(prompt, None, None, False, {}, rid=rid)


def test_generate_priority_and_lora_path() -> None:
    op = build_generate(["a", "b"], None, None, False, {}, priority=3, lora_path=["ad", None])
    assert (body(op)["priority"], body(op)["lora_path"]) == (3, ["ad", None])
    with pytest.raises(InvalidRequestError, match="priority"):
        build_generate("a", None, None, False, {}, priority=True)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="lora_path"):
        build_generate("a", None, None, False, {}, lora_path=["ad"])
    with pytest.raises(InvalidRequestError, match="2 entries for a batch of 3"):
        build_generate(["a", "b", "c"], None, None, False, {}, lora_path=["x", "y"])


def test_fanout_rids() -> None:
    assert fanout_rids(None, 2) == [None, None]
    assert fanout_rids("job", 3) == ["job_0", "job_1", "job_2"]
    assert fanout_rids(["a", "b"], 2) == ["a", "b"]
    with pytest.raises(InvalidRequestError, match="unique"):
        fanout_rids(["a", "a"], 2)


def test_steering_fields_adds_only_what_is_set() -> None:
    assert steering_fields({"x": 1}) == {"x": 1}
    assert steering_fields({}, priority=0, lora_path="ad") == {"priority": 0, "lora_path": "ad"}


def test_duplicate_rid_400_is_its_own_error_type() -> None:
    dup = raw(b'{"error": {"message": "Duplicate request ID detected: job-1"}}', 400)
    exc = status_error(dup)
    assert isinstance(exc, DuplicateRequestIdError) and isinstance(exc, BadRequestError)
    assert exc.rid == "job-1"
    assert "still running" in str(exc)
    other = status_error(raw(b'{"error": {"message": "bad"}}', 400))
    assert type(other) is BadRequestError


# -- /v1/completions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "wire"),
    [
        ("hi", "hi"),
        (["a", "b"], ["a", "b"]),
        ((1, 2), [1, 2]),
        ([[1], (2, 3)], [[1], [2, 3]]),
    ],
)
def test_completion_body(prompt: Any, wire: Any) -> None:
    op = build_completion(prompt, "m", {"max_tokens": 4, "logprobs": 2})
    assert (op.method, op.path) == ("POST", "/v1/completions")
    assert body(op) == {"model": "m", "prompt": wire, "max_tokens": 4, "logprobs": 2}
    assert body(build_completion("hi", "m", {}, stream=True))["stream"] is True


@pytest.mark.parametrize(
    ("prompt", "kwargs", "match"),
    [
        ("", {}, "empty"),
        ([], {}, "prompt"),
        (["a", 1], {}, "prompt"),
        ([-1], {}, "non-negative"),
        ("a", {"max_new_tokens": 3}, "spells it max_tokens="),
        ("a", {"prompt": "b"}, "own argument"),
        ("a", {"stream": True}, "stream=True"),
    ],
)
def test_completion_bad_input(prompt: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        build_completion(prompt, "m", kwargs)


COMPLETION = {
    "id": "c1",
    "object": "text_completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "text": " tok0",
            "logprobs": {
                "text_offset": [-1],
                "token_logprobs": [-0.5],
                "tokens": ["tok0"],
                "top_logprobs": [{"tok0": -0.5}],
            },
            "finish_reason": "length",
            "matched_stop": None,
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    "metadata": {"weight_version": "default"},
}


def test_completion_parses_typed() -> None:
    out = build_completion("a", "m", {}).parse(raw(json.dumps(COMPLETION).encode()))
    assert isinstance(out, Completion)
    choice = out.choices[0]
    assert choice.text == " tok0" and choice.finish_reason == "length"
    assert choice.logprobs is not None and choice.logprobs.token_logprobs == [-0.5]
    assert out.usage.total_tokens == 2
    assert out["metadata"]["weight_version"] == out.weight_version == "default"  # typed


def test_completion_stream_parser_yields_typed_chunks_and_error_events() -> None:
    parser = completion_stream_parser("http://h/v1/completions")
    chunk = {"id": "c", "object": "text_completion", "choices": [{"index": 0, "text": " a"}]}
    items = parser.feed(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n")
    assert [type(i) for i in items] == [CompletionChunk]
    assert items[0].choices[0].text == " a" and parser.done
    failing = completion_stream_parser()
    with pytest.raises(StreamErrorEvent):
        failing.feed(b'data: {"error": {"message": "boom", "code": 400}}\n\n')


# -- embeddings, encode ------------------------------------------------------------------------


def test_embeddings_body_and_parse() -> None:
    op = build_embeddings(["a", "b"], "m", {"dimensions": 4})
    assert (op.path, body(op)) == (
        "/v1/embeddings",
        {"model": "m", "input": ["a", "b"], "dimensions": 4},
    )
    reply = {
        "object": "list",
        "model": "/models/x",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
            {"object": "embedding", "index": 0, "embedding": "AACAPwAAAAA="},  # base64 [1, 0]
        ],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    out = op.parse(raw(json.dumps(reply).encode()))
    assert isinstance(out, EmbeddingResponse)
    assert out.vectors == [[1.0, 0.0], [0.0, 1.0]]  # in input order, base64 decoded


@pytest.mark.parametrize(
    ("inp", "kwargs", "match"),
    [
        ("", {}, "empty"),
        ("a", {"encoding_format": "hex"}, "encoding_format"),
        ("a", {"dimensions": 0}, "dimensions"),
        ("a", {"input": "b"}, "own argument"),
    ],
)
def test_embeddings_bad_input(inp: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        build_embeddings(inp, "m", kwargs)


def test_encode_single_and_batch() -> None:
    one = build_encode("a", None, {})
    assert (one.path, body(one)) == ("/encode", {"text": "a"})
    out = one.parse(raw(b'{"embedding": [0.5], "meta_info": {"id": "e"}}'))
    assert isinstance(out, EncodeOutput) and out.embedding == [0.5]
    many = build_encode(None, [[1], [2]], {})
    assert body(many) == {"input_ids": [[1], [2]]}
    outs = many.parse(raw(b'[{"embedding": [1.0]}, {"embedding": [2.0]}]'))
    assert isinstance(outs, list) and [o.embedding for o in outs] == [[1.0], [2.0]]
    with pytest.raises(InvalidRequestError, match="exactly one"):
        build_encode(None, None, {})
    with pytest.raises(InvalidRequestError, match="text must be"):
        build_encode([1, 2], None, {})  # type: ignore[arg-type]


# -- tokenize, detokenize, LoRA ------------------------------------------------------------------


def test_tokenize_and_detokenize_bodies() -> None:
    tok = build_tokenize(["a b", "c"], "fake-model", False, {})
    assert body(tok) == {"prompt": ["a b", "c"], "add_special_tokens": False, "model": "fake-model"}
    assert "model" not in body(build_tokenize("a", None, True, {}))
    parsed = tok.parse(raw(b'{"tokens": [[1, 2], [3]], "count": [2, 1], "char_count": [3, 1]}'))
    assert parsed.tokens == [[1, 2], [3]] and parsed["char_count"] == [3, 1]
    det = build_detokenize([[1, 2], (3,)], None, True, {})
    assert body(det) == {"tokens": [[1, 2], [3]], "skip_special_tokens": True}
    assert det.parse(raw(b'{"text": ["a b", "c"]}')).text == ["a b", "c"]
    assert body(build_detokenize([], None, True, {}))["tokens"] == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: build_tokenize([1, 2], None, True, {}),  # type: ignore[arg-type]
        lambda: build_tokenize("a", None, "yes", {}),  # type: ignore[arg-type]
        lambda: build_detokenize("abc", None, True, {}),  # type: ignore[arg-type]
        lambda: build_detokenize([1, -2], None, True, {}),
        lambda: build_detokenize([[1], [True]], None, True, {}),
        lambda: build_load_lora("", "/p", False),
        lambda: build_load_lora("a", "", False),
        lambda: build_unload_lora(None),  # type: ignore[arg-type]
    ],
)
def test_tokenizer_and_lora_bad_input(call: Any) -> None:
    with pytest.raises(InvalidRequestError):
        call()


def test_lora_bodies_and_result() -> None:
    load = build_load_lora("ad", "/loras/ad", True)
    assert (load.path, body(load)) == (
        "/load_lora_adapter",
        {"lora_name": "ad", "lora_path": "/loras/ad", "pinned": True},
    )
    res = load.parse(
        raw(b'{"success": true, "error_message": "", "loaded_adapters": {"ad": "/loras/ad"}}')
    )
    assert res.success and res.loaded_adapters == {"ad": "/loras/ad"}
    unload = build_unload_lora("ad")
    assert (unload.path, body(unload)) == ("/unload_lora_adapter", {"lora_name": "ad"})
    assert unload.parse(raw(b"")).success is True
