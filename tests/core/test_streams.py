"""Stream parsers: /generate (cumulative and incremental) and chat chunks (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlinf_http import APIResponseValidationError, IncompleteStreamError, StreamErrorEvent
from rlinf_http._core.streams import ChatStreamParser, GenerateStreamParser

URL = "http://srv/generate"
DONE = b"data: [DONE]\n\n"


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def gen_chunk(
    text: str, ids: list[int], tokens: int, *, finish: Any = None, index: int | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "text": text,
        "output_ids": ids,
        "meta_info": {
            "id": "rid",
            "finish_reason": finish,
            "prompt_tokens": 3,
            "completion_tokens": tokens,
        },
    }
    if index is not None:
        obj["index"] = index
    return obj


def wire(tokens: list[str], groups: list[int], incremental: bool, index: int | None = None):
    """The chunks an sglang server sends for ``tokens`` emitted in ``groups``."""
    out = []
    pos = 0
    for i, size in enumerate(groups):
        lo = pos if incremental else 0
        hi = pos + size
        last = i == len(groups) - 1
        finish = {"type": "length", "length": hi} if last else None
        out.append(
            gen_chunk(
                "".join(tokens[lo:hi]),
                list(range(100 + lo, 100 + hi)),
                hi,
                finish=finish,
                index=index,
            )
        )
        pos = hi
    return out


def run(parser: GenerateStreamParser | ChatStreamParser, payload: bytes, step: int = 0):
    """Feed ``payload`` (in ``step``-byte pieces, 0 = at once) and finish."""
    out: list[Any] = []
    if step:
        for i in range(0, len(payload), step):
            out += parser.feed(payload[i : i + step])
    else:
        out += parser.feed(payload)
    out += parser.finish()
    return out


TOKENS = [" The", " cat", " sat", "", " on", " the", " mat", "."]
GROUPS = [1, 2, 1, 3, 1]  # a ttft chunk, then uneven stream intervals


def expected_sequence(tokens: list[str], groups: list[int]):
    texts, deltas, ids, delta_ids = [], [], [], []
    pos = 0
    for size in groups:
        texts.append("".join(tokens[: pos + size]))
        deltas.append("".join(tokens[pos : pos + size]))
        ids.append(list(range(100, 100 + pos + size)))
        delta_ids.append(list(range(100 + pos, 100 + pos + size)))
        pos += size
    return texts, deltas, ids, delta_ids


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
@pytest.mark.parametrize("mode", ["auto", "explicit"])
@pytest.mark.parametrize("step", [0, 1, 7])
def test_generate_text_and_delta(incremental: bool, mode: str, step: int) -> None:
    payload = b"".join(event(c) for c in wire(TOKENS, GROUPS, incremental)) + DONE
    parser = GenerateStreamParser(
        ("incremental" if incremental else "cumulative") if mode == "explicit" else "auto", URL
    )
    chunks = run(parser, payload, step)
    texts, deltas, ids, delta_ids = expected_sequence(TOKENS, GROUPS)
    assert [c.text for c in chunks] == texts
    assert [c.delta for c in chunks] == deltas
    assert [c.output_ids for c in chunks] == ids
    assert [c.delta_output_ids for c in chunks] == delta_ids
    assert parser.mode == ("incremental" if incremental else "cumulative")
    assert chunks[-1].meta_info.finish_reason is not None
    assert chunks[-1].meta_info.finish_reason.type == "length"
    assert all(c.meta_info.finish_reason is None for c in chunks[:-1])
    assert parser.done


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.lists(st.text(max_size=3), min_size=1, max_size=20),
    data=st.data(),
)
def test_generate_modes_agree(tokens: list[str], data: st.DataObject) -> None:
    # split the tokens into non-empty groups (the server's stream interval)
    groups: list[int] = []
    left = len(tokens)
    while left:
        size = data.draw(st.integers(1, left))
        groups.append(size)
        left -= size
    results = []
    for incremental in (False, True):
        payload = b"".join(event(c) for c in wire(tokens, groups, incremental)) + DONE
        chunks = run(GenerateStreamParser("auto", URL), payload)
        results.append([(c.text, c.delta, c.output_ids, c.delta_output_ids) for c in chunks])
    assert results[0] == results[1]
    texts, deltas, ids, delta_ids = expected_sequence(tokens, groups)
    assert results[0] == list(zip(texts, deltas, ids, delta_ids, strict=True))
    assert "".join(d for _, d, _, _ in results[0]) == "".join(tokens)


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
def test_generate_final_chunk_without_new_tokens(incremental: bool) -> None:
    chunks = wire(["a", "b", "c"], [1, 2], incremental)
    last = gen_chunk("" if incremental else "abc", [] if incremental else [100, 101, 102], 3)
    last["meta_info"]["finish_reason"] = {"type": "stop", "matched": 2}
    chunks[-1]["meta_info"]["finish_reason"] = None
    payload = b"".join(event(c) for c in [*chunks, last]) + DONE
    out = run(GenerateStreamParser("auto", URL), payload)
    assert [c.text for c in out] == ["a", "abc", "abc"]
    assert [c.delta for c in out] == ["a", "bc", ""]
    assert out[-1].delta_output_ids == []
    assert out[-1].output_ids == [100, 101, 102]


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
def test_generate_empty_first_chunk_then_text(incremental: bool) -> None:
    chunks = [gen_chunk("", [], 0), *wire(["x", "y", "z"], [1, 1, 1], incremental)]
    out = run(GenerateStreamParser("auto", URL), b"".join(event(c) for c in chunks) + DONE)
    assert [c.text for c in out] == ["", "x", "xy", "xyz"]
    assert [c.delta for c in out] == ["", "x", "y", "z"]


@pytest.mark.parametrize("incremental", [False, True], ids=["cumulative", "incremental"])
def test_generate_batch_stream_tracks_each_index(incremental: bool) -> None:
    a = wire(["a1", "a2", "a3"], [1, 1, 1], incremental, index=0)
    b = wire(["b1", "b2"], [1, 1], incremental, index=1)
    interleaved = [a[0], b[0], b[1], a[1], a[2]]
    out = run(GenerateStreamParser("auto", URL), b"".join(event(c) for c in interleaved) + DONE)
    assert [(c.index, c.text, c.delta) for c in out] == [
        (0, "a1", "a1"),
        (1, "b1", "b1"),
        (1, "b1b2", "b2"),
        (0, "a1a2", "a2"),
        (0, "a1a2a3", "a3"),
    ]


def test_generate_done_is_required() -> None:
    parser = GenerateStreamParser("auto", URL)
    payload = b"".join(event(c) for c in wire(["a", "b"], [1, 1], False))
    assert len(parser.feed(payload)) == 2
    with pytest.raises(IncompleteStreamError) as info:
        parser.finish()
    assert URL in str(info.value)


def test_generate_empty_body_is_incomplete() -> None:
    with pytest.raises(IncompleteStreamError):
        GenerateStreamParser("auto", URL).finish()


def test_done_without_trailing_blank_line_is_accepted() -> None:
    payload = event(gen_chunk("a", [1], 1)) + b"data: [DONE]"
    out = run(GenerateStreamParser("auto", URL), payload)
    assert [c.text for c in out] == ["a"]


def test_events_after_done_are_ignored() -> None:
    parser = GenerateStreamParser("auto", URL)
    payload = event(gen_chunk("a", [1], 1)) + DONE + event(gen_chunk("ab", [1, 2], 2))
    assert [c.text for c in parser.feed(payload)] == ["a"]
    assert parser.feed(event(gen_chunk("abc", [1, 2, 3], 3))) == []
    assert parser.finish() == []


@pytest.mark.parametrize(
    ("error", "message", "code"),
    [
        (
            {
                "message": "bad thing",
                "type": "invalid_request_error",
                "code": 400,
                "retryable": False,
            },
            "bad thing",
            400,
        ),
        ({"message": "old style"}, "old style", None),
        ("plain string error", "plain string error", None),
    ],
)
def test_generate_error_event(error: Any, message: str, code: Any) -> None:
    parser = GenerateStreamParser("auto", URL)
    first = parser.feed(event(gen_chunk("a", [1], 1)))
    assert [c.text for c in first] == ["a"]
    with pytest.raises(StreamErrorEvent) as info:
        parser.feed(event({"error": error}) + DONE)
    exc = info.value
    assert message in str(exc)
    assert exc.code == code
    assert exc.error == error
    assert exc.url == URL


def test_error_event_split_across_feeds() -> None:
    parser = GenerateStreamParser("auto", URL)
    payload = event({"error": {"message": "boom", "code": 500}})
    parser.feed(payload[:9])
    with pytest.raises(StreamErrorEvent) as info:
        parser.feed(payload[9:])
    assert info.value.code == 500


def test_non_json_event_is_a_validation_error() -> None:
    with pytest.raises(APIResponseValidationError):
        GenerateStreamParser("auto", URL).feed(b"data: {not json\n\n")


def test_wrong_shape_chunk_is_a_validation_error() -> None:
    with pytest.raises(APIResponseValidationError):
        GenerateStreamParser("auto", URL).feed(event({"text": "no meta_info"}))


# -- chat --------------------------------------------------------------------------------


def chat_chunk(choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
        "usage": usage,
    }


def test_chat_chunks_with_deltas_and_usage() -> None:
    stream = [
        chat_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
        chat_chunk([{"index": 0, "delta": {"reasoning_content": "think"}}]),
        chat_chunk([{"index": 0, "delta": {"content": "Hel"}}]),
        chat_chunk([{"index": 0, "delta": {"content": "lo"}}]),
        chat_chunk(
            [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "index": 0,
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ]
                    },
                }
            ]
        ),
        chat_chunk(
            [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                }
            ]
        ),
        chat_chunk(
            [{"index": 0, "delta": {}, "finish_reason": "tool_calls", "matched_stop": None}]
        ),
        chat_chunk([], usage={"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}),
    ]
    for step in (0, 3):
        out = run(ChatStreamParser(URL), b"".join(event(c) for c in stream) + DONE, step)
        assert len(out) == len(stream)
        assert out[0].choices[0].delta.role == "assistant"
        assert out[0].choices[0].delta.content == ""
        assert out[1].choices[0].delta.reasoning_content == "think"
        content = "".join(c.choices[0].delta.content or "" for c in out if c.choices)
        assert content == "Hello"
        calls = [tc for c in out if c.choices for tc in c.choices[0].delta.tool_calls or []]
        assert calls[0].id == "call_1"
        assert calls[0].function is not None and calls[0].function.name == "f"
        args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
        assert json.loads(args) == {"a": 1}
        assert out[-2].choices[0].finish_reason == "tool_calls"
        assert out[-1].choices == []
        assert out[-1].usage is not None
        assert (out[-1].usage.prompt_tokens, out[-1].usage.completion_tokens) == (5, 4)
        assert out[-1].usage.total_tokens == 9


def test_chat_stream_needs_done() -> None:
    parser = ChatStreamParser(URL)
    parser.feed(event(chat_chunk([{"index": 0, "delta": {"content": "x"}}])))
    with pytest.raises(IncompleteStreamError):
        parser.finish()


def test_chat_error_event() -> None:
    parser = ChatStreamParser(URL)
    with pytest.raises(StreamErrorEvent) as info:
        parser.feed(
            event({"error": {"message": "nope", "type": "BadRequestError", "code": 400}}) + DONE
        )
    assert info.value.code == 400
    assert "nope" in str(info.value)
