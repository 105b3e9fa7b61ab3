"""Partial rollouts without sockets: what a result remembers, the continuation it
resubmits, and how the pieces merge (ids, text, logprobs, spans, counters)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from rlinf_http import (
    ChatCompletion,
    Completion,
    FinishLength,
    GenerateOutput,
    InvalidRequestError,
    ResponseMetadata,
    WeightVersionSpan,
    weight_version_mix,
)
from rlinf_http._core.dataplane import with_routing_key
from rlinf_http._core.fanout import generate_group_op, generate_ops
from rlinf_http._core.requests import Operation, build_generate
from rlinf_http._core.responses import RawResponse
from rlinf_http._core.rollout import (
    DEFAULT_MAX_NEW_TOKENS,
    continuation,
    continuations,
    merge_pieces,
    remember_request,
)


def raw(obj: Any) -> RawResponse:
    return RawResponse("POST", "http://h/generate", 200, {}, json.dumps(obj).encode())


def lp(i: int) -> list[Any]:
    return [-(i + 1) / 8, 1000 + i, None]


def piece(
    lo: int,
    hi: int,
    *,
    finish: dict[str, Any] | None = None,
    spans: list[dict[str, Any]] | None = None,
    version: str = "v1",
    rid: str = "r",
    logprobs: bool = True,
    prompt_tokens: int | None = 3,
    **meta: Any,
) -> dict[str, Any]:
    """A /generate answer with output tokens lo..hi-1 (ids 1000+i, text " t{i}")."""
    m: dict[str, Any] = {
        "id": rid,
        "finish_reason": finish or {"type": "abort", "message": "Abort request"},
        "completion_tokens": hi - lo,
        "weight_version": version,
        "e2e_latency": 0.5,
        **meta,
    }
    if prompt_tokens is not None:
        m["prompt_tokens"] = prompt_tokens
    if spans is not None:
        m["weight_versions"] = spans
    if logprobs:
        m["output_token_logprobs"] = [lp(i) for i in range(lo, hi)]
    return {
        "text": "".join(f" t{i}" for i in range(lo, hi)),
        "output_ids": [1000 + i for i in range(lo, hi)],
        "meta_info": m,
    }


def answered(op: Operation[Any], obj: Any) -> Any:
    return op.parse(raw(obj))


def generated(
    obj: dict[str, Any],
    *,
    sampling: dict[str, Any] | None = None,
    key: str | None = None,
    **kw: Any,
) -> GenerateOutput:
    """``obj`` as the answer to a remembered /generate of input_ids [1, 2, 3]."""
    sp = {"max_new_tokens": 10} if sampling is None else sampling
    op = build_generate(None, [1, 2, 3], sp, True, kw, rid="orig")
    out = answered(remember_request(with_routing_key(op, key)), obj)
    assert isinstance(out, GenerateOutput)
    return out


def body_of(op: Operation[Any]) -> dict[str, Any]:
    assert op.content is not None
    return dict(json.loads(op.content))


# -- the continuation -----------------------------------------------------------------


def test_continuation_appends_ids_reduces_budget_keeps_params_and_routing_key() -> None:
    first = generated(
        piece(0, 4),
        sampling={"max_new_tokens": 10, "min_new_tokens": 6, "temperature": 0.7, "top_p": 0.9},
        key="sess-1",
        top_logprobs_num=2,
        logprob_start_len=0,
    )
    op = continuation(first)
    assert isinstance(op, Operation)
    body = body_of(op)
    assert body["input_ids"] == [1, 2, 3, 1000, 1001, 1002, 1003]
    assert body["sampling_params"] == {
        "max_new_tokens": 6,
        "min_new_tokens": 2,
        "temperature": 0.7,
        "top_p": 0.9,
    }
    assert body["return_logprob"] is True and body["top_logprobs_num"] == 2
    assert "logprob_start_len" not in body  # prompt logprobs come from the first piece
    assert body["rid"] not in ("orig", first.rid) and len(body["rid"]) == 32
    assert ("x-smg-routing-key", "sess-1") in op.headers
    assert op.path == "/generate" and op.method == "POST"


def test_continuation_takes_a_rid_and_min_new_tokens_floors_at_zero() -> None:
    first = generated(piece(0, 4), sampling={"max_new_tokens": 10, "min_new_tokens": 2})
    op = continuation(first, rid="again-1")
    assert isinstance(op, Operation)
    body = body_of(op)
    assert body["rid"] == "again-1" and body["sampling_params"]["min_new_tokens"] == 0
    with pytest.raises(InvalidRequestError):
        continuation(first, rid="")


def test_default_max_new_tokens_is_sglangs() -> None:
    first = generated(piece(0, 5), sampling={})
    op = continuation(first)
    assert isinstance(op, Operation)
    assert body_of(op)["sampling_params"]["max_new_tokens"] == DEFAULT_MAX_NEW_TOKENS - 5


def test_text_prompt_resumes_as_text_plus_text_so_far() -> None:
    op = remember_request(build_generate("hello there", None, {"max_new_tokens": 8}, False, {}))
    first = answered(op, piece(0, 3, logprobs=False))
    cont = continuation(first)
    assert isinstance(cont, Operation)
    body = body_of(cont)
    assert body["text"] == "hello there t0 t1 t2" and "input_ids" not in body
    assert body["sampling_params"] == {"max_new_tokens": 5}


def test_a_result_that_did_not_abort_is_returned_as_it_is() -> None:
    done = generated(piece(0, 10, finish={"type": "length", "length": 10}))
    assert continuation(done) is done
    stopped = GenerateOutput.model_validate(piece(0, 2, finish={"type": "stop", "matched": 2}))
    assert continuation(stopped) is stopped  # even without a remembered request


def test_budget_exhausted_finishes_as_length_without_a_request() -> None:
    first = generated(piece(0, 10), sampling={"max_new_tokens": 10})
    out = continuation(first)
    assert isinstance(out, GenerateOutput)
    assert out.finish_reason == FinishLength(type="length", length=10)
    assert out.output_ids == first.output_ids and out.text == first.text
    assert continuation(out) is out  # finished now


def test_aborted_before_any_token_resends_the_whole_request() -> None:
    first = generated(
        piece(0, 0, spans=[{"version": "v1", "start": 0, "end": 0}], prompt_tokens=None),
        logprob_start_len=1,
    )
    op = continuation(first)
    assert isinstance(op, Operation)
    body = body_of(op)
    assert body["input_ids"] == [1, 2, 3] and body["sampling_params"]["max_new_tokens"] == 10
    assert body["logprob_start_len"] == 1  # nothing generated: the prompt is the original
    second = piece(0, 10, finish={"type": "length", "length": 10}, version="v2", rid="new")
    second["meta_info"]["input_token_logprobs"] = [[None, 2, None], [-1.0, 3, None]]
    second["meta_info"]["weight_versions"] = [{"version": "v2", "start": 0, "end": 10}]
    merged = answered(op, second)
    assert merged.output_ids == [1000 + i for i in range(10)]
    assert merged.meta_info.input_token_logprobs is not None  # from the only real prefill
    assert merged.meta_info.prompt_tokens == 3
    assert merged.meta_info.weight_version_mix().versions == ["v2"]


def test_results_without_their_request_are_refused_before_io() -> None:
    bare = GenerateOutput.model_validate(piece(0, 3))
    with pytest.raises(InvalidRequestError, match="does not remember its request"):
        continuation(bare)
    first = generated(piece(0, 3))
    with pytest.raises(InvalidRequestError, match="does not remember"):
        continuation(first.model_copy())
    with pytest.raises(InvalidRequestError, match="GenerateOutput"):
        continuation({"text": ""})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="list of GenerateOutput"):
        continuations("abc")  # type: ignore[arg-type]


def test_input_embeds_cannot_be_resumed() -> None:
    op = Operation(
        "POST",
        "/generate",
        json.dumps({"input_embeds": [[0.1]], "sampling_params": {}}).encode(),
        (),
        lambda r: GenerateOutput.model_validate_json(r.content),
    )
    first = answered(remember_request(op), piece(0, 1))
    with pytest.raises(InvalidRequestError, match="input_embeds"):
        continuation(first)


def test_the_remembered_request_survives_pickling() -> None:
    first = generated(piece(0, 4), key="k")
    again = pickle.loads(pickle.dumps(first))
    assert again == first
    op = continuation(again)
    assert isinstance(op, Operation) and ("x-smg-routing-key", "k") in op.headers
    assert body_of(op)["input_ids"][-1] == 1003


def test_batch_items_resume_their_own_prompt_and_per_prompt_fields() -> None:
    body = {
        "input_ids": [[1, 2], [5, 6, 7]],
        "sampling_params": [{"max_new_tokens": 4}, {"max_new_tokens": 6}],
        "return_logprob": True,
        "top_logprobs_num": [0, 3],
        "token_ids_logprob": [[7], [8, 9]],
        "rid": ["a", "b"],
    }
    batch = build_generate(None, [[1, 2], [5, 6, 7]], None, True, {})
    op = remember_request(
        Operation("POST", "/generate", json.dumps(body).encode(), (), batch.parse)
    )
    outs = answered(op, [piece(0, 4, rid="a"), piece(0, 2, rid="b")])
    final, positions, ops = continuations(outs)
    assert positions == [1] and final[0] is not None
    assert final[0].finish_reason == FinishLength(type="length", length=4)
    body = body_of(ops[0])
    assert body["input_ids"] == [5, 6, 7, 1000, 1001]
    assert body["sampling_params"] == {"max_new_tokens": 4}
    assert body["top_logprobs_num"] == 3 and body["token_ids_logprob"] == [8, 9]
    assert body["rid"] not in ("a", "b")


def test_group_and_fanout_results_remember_their_request() -> None:
    group = generate_group_op(None, [4, 5], 3, {"max_new_tokens": 5}, False, {}, "g")
    outs = answered(group, [piece(0, 2), piece(0, 5, finish={"type": "length"}), piece(0, 1)])
    final, positions, ops = continuations(outs)
    assert positions == [0, 2] and final[1] is outs[1]
    bodies = [body_of(o) for o in ops]
    assert [b["input_ids"] for b in bodies] == [[4, 5, 1000, 1001], [4, 5, 1000]]
    assert all("n" not in b["sampling_params"] for b in bodies)
    assert [b["sampling_params"]["max_new_tokens"] for b in bodies] == [3, 4]
    assert all(("x-smg-routing-key", "g") in o.headers for o in ops)
    fan = generate_ops(["p q", "r"], None, {"max_new_tokens": 3}, False, {}, routing_key="f")
    out = answered(fan[1], piece(0, 1))
    cont = continuation(out)
    assert isinstance(cont, Operation)
    assert body_of(cont)["text"] == "r t0" and ("x-smg-routing-key", "f") in cont.headers


# -- merging ---------------------------------------------------------------------------


def test_merge_joins_ids_text_logprobs_and_offsets_spans() -> None:
    first = generated(
        piece(
            0,
            4,
            spans=[
                {"version": "v1", "start": 0, "end": 2},
                {"version": "v2", "start": 2, "end": 4},
            ],
            version="v2",
            cached_tokens=0,
            num_retractions=1,
        )
    )
    op = continuation(first)
    assert isinstance(op, Operation)
    second = piece(
        4,
        10,
        finish={"type": "length", "length": 6},
        spans=[{"version": "v2", "start": 0, "end": 1}, {"version": "v3", "start": 1, "end": 6}],
        version="v3",
        rid="second",
        prompt_tokens=7,
        cached_tokens=7,
        num_retractions=0,
    )
    second["meta_info"]["output_top_logprobs"] = [[lp(i)] for i in range(4, 10)]
    merged = answered(op, second)
    assert merged.output_ids == [1000 + i for i in range(10)]
    assert merged.text == "".join(f" t{i}" for i in range(10))
    logprobs = merged.meta_info.output_token_logprobs
    assert logprobs is not None and [x.token_id for x in logprobs] == merged.output_ids
    # the first piece had no top logprobs while it produced tokens: not aligned, dropped
    assert merged.meta_info.output_top_logprobs is None
    assert merged.meta_info.weight_versions == [
        WeightVersionSpan(version="v1", start=0, end=2),
        WeightVersionSpan(version="v2", start=2, end=5),
        WeightVersionSpan(version="v3", start=5, end=10),
    ]
    mix = weight_version_mix(merged)
    assert mix.mixed and mix.versions == ["v1", "v2", "v3"] and mix.version_at(4) == "v2"
    meta = merged.meta_info
    assert meta.finish_reason == FinishLength(type="length", length=10)
    assert meta.prompt_tokens == 3 and meta.completion_tokens == 10
    assert meta.cached_tokens == 7 and meta.num_retractions == 1 and meta.e2e_latency == 1.0
    assert merged.rid == "second" and meta.weight_version == "v3"
    assert merged["meta_info"]["output_token_logprobs_length"] == 10
    # the merged result remembers the original request: it can be resumed again
    assert continuation(merged) is merged  # finished


def test_merge_of_an_aborted_continuation_can_be_resumed_again() -> None:
    first = generated(piece(0, 3, spans=[{"version": "v1", "start": 0, "end": 3}]))
    op = continuation(first)
    assert isinstance(op, Operation)
    merged = answered(op, piece(3, 5, spans=[{"version": "v2", "start": 0, "end": 2}]))
    again = continuation(merged)
    assert isinstance(again, Operation)
    body = body_of(again)
    assert body["input_ids"] == [1, 2, 3, 1000, 1001, 1002, 1003, 1004]
    assert body["sampling_params"]["max_new_tokens"] == 5
    final = answered(
        again,
        piece(5, 10, finish={"type": "length", "length": 5}, spans=[], version="v3"),
    )
    assert [s.to_dict() for s in final.meta_info.weight_versions or []] == [
        {"version": "v1", "start": 0, "end": 3},
        {"version": "v2", "start": 3, "end": 5},
    ]  # a piece with an empty span list says nothing about its tokens


def test_pieces_without_spans_count_as_their_weight_version() -> None:
    first = generated(piece(0, 2, version="old"))
    op = continuation(first)
    assert isinstance(op, Operation)
    merged = answered(op, piece(2, 10, finish={"type": "length", "length": 8}, version="new"))
    assert merged.meta_info.weight_version_mix().ranges == {
        "old": [(0, 2)],
        "new": [(2, 10)],
    }


def test_merge_derives_prompt_tokens_when_the_abort_answer_lacks_them() -> None:
    first = generated(piece(0, 4, prompt_tokens=None))
    op = continuation(first)
    assert isinstance(op, Operation)
    merged = answered(op, piece(4, 10, finish={"type": "length"}, prompt_tokens=7))
    assert merged.meta_info.prompt_tokens == 3


def test_merge_pieces_keeps_first_piece_extras() -> None:
    a = GenerateOutput.model_validate({**piece(0, 1), "prompt_token_ids": [1, 2, 3], "index": 4})
    b = GenerateOutput.model_validate({**piece(1, 2), "prompt_token_ids": [1, 2, 3, 1000]})
    merged = merge_pieces(a, b)
    assert merged["prompt_token_ids"] == [1, 2, 3] and merged.index == 4


# -- version-aware completions -------------------------------------------------------------


def test_span_accepts_sglangs_array_form() -> None:
    assert WeightVersionSpan.model_validate(["v", 1, 4]) == WeightVersionSpan(
        version="v", start=1, end=4
    )


def test_chat_and_completion_expose_the_weight_version_and_spans() -> None:
    body = {
        "id": "x",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
        "metadata": {
            "weight_version": "v2",
            "weight_versions": [
                {"version": "v1", "start": 0, "end": 3},
                {"version": "v2", "start": 3, "end": 5},
            ],
        },
    }
    chat = ChatCompletion.model_validate(body)
    assert chat.weight_version == "v2" and isinstance(chat.metadata, ResponseMetadata)
    assert weight_version_mix(chat).ranges == {"v1": [(0, 3)], "v2": [(3, 5)]}
    text = Completion.model_validate(
        {**body, "choices": [{"index": 0, "text": "hi"}], "metadata": {"weight_version": "v9"}}
    )
    assert text.weight_version == "v9" and not text.weight_version_mix().mixed
    assert text.weight_version_mix().versions == ["v9"]
    bare = Completion.model_validate({**body, "metadata": None})
    assert bare.weight_version is None and bare.weight_version_mix().versions == []


def test_a_pickled_batch_result_carries_its_own_prompt_only() -> None:
    prompts = [list(range(1, 2001)), [7, 8]]
    op = remember_request(build_generate(None, prompts, {"max_new_tokens": 5}, False, {}))
    outs = answered(op, [piece(0, 2, logprobs=False), piece(0, 3, logprobs=False)])
    small = pickle.dumps(outs[1])
    assert len(small) < len(pickle.dumps(outs[0])) / 4  # not the 2000 ids of prompt 0
    again = pickle.loads(small)
    cont = continuation(again)
    assert isinstance(cont, Operation)
    assert body_of(cont)["input_ids"] == [7, 8, 1000, 1001, 1002]
    first = continuation(pickle.loads(pickle.dumps(outs[0])))
    assert isinstance(first, Operation)
    assert body_of(first)["input_ids"] == [*prompts[0], 1000, 1001]
    # samples of one prompt (n > 1) keep their prompt too
    group = generate_group_op(None, [4, 5], 2, {"max_new_tokens": 5}, False, {})
    samples = answered(group, [piece(0, 1), piece(0, 2)])
    cont = continuation(pickle.loads(pickle.dumps(samples[1])))
    assert isinstance(cont, Operation) and body_of(cont)["input_ids"] == [4, 5, 1000, 1001]


def test_pickling_never_fails_on_a_request_that_cannot_be_resumed() -> None:
    body = {"input_embeds": [[[0.1]], [[0.2]]], "sampling_params": {}}
    batch = build_generate(None, [[1], [2]], None, False, {})
    op = remember_request(
        Operation("POST", "/generate", json.dumps(body).encode(), (), batch.parse)
    )
    outs = answered(op, [piece(0, 1), piece(0, 1)])
    again = pickle.loads(pickle.dumps(outs[1]))
    with pytest.raises(InvalidRequestError, match="input_embeds"):
        continuation(again)
