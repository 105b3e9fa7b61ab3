"""Sans-I/O: rewards, probes, generate RL fields, sync verification and the stale-label guidance."""

from __future__ import annotations

import base64
import json
import pickle
import struct
from typing import Any

import pytest
from rl_helpers import Driver, answer, ok

from rlinf_http import (
    APIResponseValidationError,
    CacheNotFlushedError,
    ClassifyOutput,
    GenerateOutput,
    InvalidRequestError,
    ParameterSlice,
    RerankResult,
    ScoreResult,
    WeightVersionMismatchError,
)
from rlinf_http._core import control, probes, rewards, rl_generate, weights_check
from rlinf_http._core.requests import build_generate

# -- rewards --------------------------------------------------------------------------------


def test_classify_single_and_batch() -> None:
    op = rewards.build_classify("a reply")
    assert (op.method, op.path, json.loads(op.content or b"")) == (
        "POST",
        "/classify",
        {"text": "a reply"},
    )
    one = answer(op, 200, {"embedding": [0.75], "meta_info": {"id": "r"}})
    assert isinstance(one, ClassifyOutput) and one.score == 0.75
    many_op = rewards.build_classify(input_ids=[[1, 2], [3]], kwargs={"rid": ["a", "b"]})
    assert json.loads(many_op.content or b"") == {"input_ids": [[1, 2], [3]], "rid": ["a", "b"]}
    many = answer(many_op, 200, [{"embedding": [1.0]}, {"embedding": []}])
    assert [m.score for m in many] == [1.0, None]
    with pytest.raises(APIResponseValidationError):
        answer(op, 200, [{"embedding": [1.0]}])
    with pytest.raises(InvalidRequestError):
        rewards.build_classify()
    with pytest.raises(InvalidRequestError):
        rewards.build_classify("x", kwargs={"text": "y"})


def test_score_body_and_result() -> None:
    op = rewards.build_score(
        "Is it good?", ["yes", "no"], label_token_ids=[9693, 2152], apply_softmax=True
    )
    assert op.path == "/v1/score"
    assert json.loads(op.content or b"") == {
        "query": "Is it good?",
        "items": ["yes", "no"],
        "apply_softmax": True,
        "item_first": False,
        "temperature": 1.0,
        "label_token_ids": [9693, 2152],
    }
    out = answer(op, 200, {"scores": [[0.9, 0.1], [0.2, 0.8]], "model": "m", "object": "scoring"})
    assert isinstance(out, ScoreResult) and out.scores[1] == [0.2, 0.8]
    ids = rewards.build_score([1, 2], [[3], [4, 5]], label_token_ids=[[7], [8]])
    assert json.loads(ids.content or b"")["label_token_ids"] == [[7], [8]]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("q", [[1]]), {}, "both be text"),
        (([1], ["a"]), {}, "both be text"),
        (([1], [1, 2]), {}, "id lists"),
        (("q", ["a"]), {"temperature": 0}, "temperature"),
        (("q", ["a"]), {"apply_softmax": 1}, "apply_softmax"),
        (("q", ["a", "b"]), {"label_token_ids": [[1]]}, "one per item"),
        (("q", ["a"]), {"label_token_ids": [-1]}, "label_token_ids"),
        (("", ["a"]), {}, "query"),
        (("q", ["a"]), {"kwargs": {"query": "x"}}, "own argument"),
    ],
)
def test_score_bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        rewards.build_score(*args, **kwargs)


def test_rerank_body_and_result() -> None:
    op = rewards.build_rerank("what is RL?", ["a doc", "another"], top_n=1)
    assert op.path == "/v1/rerank"
    assert json.loads(op.content or b"") == {
        "query": "what is RL?",
        "documents": ["a doc", "another"],
        "return_documents": True,
        "top_n": 1,
    }
    out = answer(op, 200, [{"score": 0.9, "index": 1, "document": "another"}])
    assert isinstance(out[0], RerankResult) and (out[0].index, out[0].score) == (1, 0.9)
    with pytest.raises(APIResponseValidationError):
        answer(op, 200, {"score": 1})
    mm = rewards.build_rerank([{"type": "text", "text": "q"}], [[{"type": "text", "text": "d"}]])
    assert json.loads(mm.content or b"")["query"] == [{"type": "text", "text": "q"}]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("q", []), {}, "documents"),
        (("q", "doc"), {}, "documents"),
        (("q", [" "]), {}, "documents\\[0\\]"),
        (("", ["d"]), {}, "query"),
        (("q", ["d"]), {"top_n": 0}, "top_n"),
        (("q", ["d"]), {"return_documents": "no"}, "return_documents"),
        (("q", ["d"]), {"instruct": 3}, "instruct"),
    ],
)
def test_rerank_bad_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        rewards.build_rerank(*args, **kwargs)


# -- probes -------------------------------------------------------------------------------------


def test_ready_and_ping() -> None:
    assert Driver(ok(b"", 200)).run(probes.ready_plan()) is True
    assert Driver(ok(b"", 503)).run(probes.ready_plan()) is False
    assert Driver(ok(b"", 503)).run(probes.ping_plan(1.0)) is False
    d = Driver(ok(b""))
    d.run(probes.ping_plan(2.0))
    assert d.calls[0][:2] == ("GET", "/ping") and d.calls[0][3].timeout == 2.0
    with pytest.raises(InvalidRequestError):
        probes.ready_plan(0)


def test_flush_cache_when_idle() -> None:
    d = Driver(ok(b"Cache flushed.\n"))
    out = d.run(probes.flush_cache_when_idle_plan(5))
    assert out.flushed and d.calls[0][:2] == ("POST", "/flush_cache?timeout=5.0")
    assert d.calls[0][3].timeout == 5.0 + probes.FLUSH_GRACE_S
    late = Driver(ok(b"Timed out waiting for idle state.", 400)).run(
        probes.flush_cache_when_idle_plan(0.5)
    )
    assert (late.flushed, late.message) == (False, "Timed out waiting for idle state.")
    with pytest.raises(InvalidRequestError):
        probes.flush_cache_when_idle_plan(0)


def test_loads_prometheus() -> None:
    text = '# TYPE sglang_num_running_reqs gauge\nsglang_num_running_reqs{dp_rank="0"} 2\n'
    d = Driver(ok(text.encode()))
    out = d.run(probes.loads_prometheus_plan(["core", "queues"], dp_rank=0))
    assert out == text
    assert d.paths == ["/v1/loads?format=prometheus&include=core,queues&dp_rank=0"]
    with pytest.raises(InvalidRequestError):
        probes.loads_prometheus_plan("cpu")


# -- /generate RL fields ---------------------------------------------------------------------


class _Processor:
    @classmethod
    def to_str(cls) -> str:
        return json.dumps({"callable": "00"})


def test_generate_rl_fields_all() -> None:
    fields = rl_generate.generate_rl_fields(
        return_routed_experts=True,
        routed_experts_start_len=3,
        return_entropy=True,
        return_hidden_states="last",
        return_sampling_mask=True,
        sampling_logprobs_mode="selected",
        scheduler_routing_key="conv-1",
        routed_dp_rank=1,
        session_params={"id": "s", "rid": None, "offset": -1, "replace": False},
        cache_salt="tenant",
        max_thinking_tokens=256,
        custom_logit_processor=_Processor,
    )
    assert set(fields) == rl_generate.RL_FIELD_NAMES
    assert fields["routing_key"] == "conv-1"
    assert fields["custom_logit_processor"] == '{"callable": "00"}'
    op = build_generate("hi", None, None, False, {}, rl_fields=fields)
    body = json.loads(op.content or b"")
    assert body["routing_key"] == "conv-1" and body["return_hidden_states"] == "last"


def test_generate_rl_fields_batch_lists() -> None:
    fields = rl_generate.generate_rl_fields(
        batch_size=2, cache_salt=["a", "b"], custom_logit_processor=[None, '{"callable": "1"}']
    )
    assert fields == {
        "cache_salt": ["a", "b"],
        "custom_logit_processor": [None, '{"callable": "1"}'],
    }
    assert rl_generate.generate_rl_fields() == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"return_entropy": 1}, "return_entropy"),
        ({"routed_experts_start_len": 2}, "needs return_routed_experts"),
        ({"return_routed_experts": True, "routed_experts_start_len": -1}, "routed_experts"),
        ({"return_hidden_states": "first"}, "return_hidden_states"),
        ({"sampling_logprobs_mode": "selected"}, "needs return_sampling_mask"),
        ({"return_sampling_mask": True, "sampling_logprobs_mode": "all"}, "sampling_logprobs"),
        ({"scheduler_routing_key": ""}, "scheduler_routing_key"),
        ({"routed_dp_rank": -1}, "routed_dp_rank"),
        ({"routed_dp_rank": True}, "routed_dp_rank"),
        ({"session_params": {"session": "x"}}, "no field"),
        ({"session_params": {"offset": "3"}}, "offset"),
        ({"session_params": {"offset": True}}, "offset"),
        ({"session_params": ["id"]}, "session_params"),
        ({"cache_salt": ["a", "b"]}, "batch"),
        ({"cache_salt": ["a"], "batch_size": 2}, "2"),
        ({"cache_salt": 3}, "cache_salt"),
        ({"max_thinking_tokens": -5}, "max_thinking_tokens"),
        ({"custom_logit_processor": "lambda x: x"}, "to_str"),
        ({"custom_logit_processor": 5}, "custom_logit_processor"),
    ],
)
def test_generate_rl_fields_bad(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        rl_generate.generate_rl_fields(**kwargs)


def test_build_generate_rl_fields_conflict_with_extra() -> None:
    with pytest.raises(InvalidRequestError, match="twice"):
        build_generate("hi", None, None, False, {"cache_salt": "x"}, rl_fields={"cache_salt": "y"})


def test_header_routing_key_untouched() -> None:
    """The body routing_key (scheduler) is not the X-SMG-Routing-Key header."""
    op = build_generate("hi", None, None, False, {}, rl_fields={"routing_key": "sched"})
    assert dict(op.headers).get("x-smg-routing-key") is None
    assert json.loads(op.content or b"")["routing_key"] == "sched"


# -- meta_info RL fields -----------------------------------------------------------------------


def _output(meta: dict[str, Any]) -> GenerateOutput:
    return GenerateOutput.model_validate({"text": "", "meta_info": {"id": "r", **meta}})


def test_meta_info_rl_fields_and_mix() -> None:
    experts = base64.b64encode(struct.pack("<4i", 1, 2, 3, 4)).decode()
    out = _output(
        {
            "weight_version": "v2",
            "weight_versions": [
                {"version": "v1", "start": 0, "end": 3},
                {"version": "v2", "start": 3, "end": 5},
            ],
            "num_retractions": 1,
            "output_token_ids_logprobs": [[[-0.5, 7, None]], None],
            "cached_tokens_details": {"device": 4, "host": 2},
            "routed_experts": experts,
            "hidden_states": [[0.1, 0.2]],
            "output_token_sampling_mask": [[1, 2]],
            "output_token_sampling_logprobs": [-0.1],
            "output_token_sampling_mask_length": 1,
            "spec_accept_rate": 0.5,
        }
    )
    meta = out.meta_info
    assert meta.num_retractions == 1
    assert meta.cached_tokens_details is not None and meta.cached_tokens_details.device == 4
    assert meta.output_token_ids_logprobs is not None
    assert meta.output_token_ids_logprobs[0][0].token_id == 7  # type: ignore[index]
    assert out.routed_expert_ids() == [1, 2, 3, 4]
    assert meta["spec_accept_rate"] == 0.5  # unknown fields kept
    mix = rl_generate.weight_version_mix(out)
    assert mix.mixed and mix.versions == ["v1", "v2"]
    assert mix.ranges == {"v1": [(0, 3)], "v2": [(3, 5)]}
    assert (mix.version_at(2), mix.version_at(3), mix.version_at(9)) == ("v1", "v2", None)
    assert mix.final_version == "v2"


def test_weight_version_mix_single_and_absent() -> None:
    one = _output(
        {"weight_version": "v1", "weight_versions": [{"version": "v1", "start": 0, "end": 0}]}
    )
    mix = rl_generate.weight_version_mix(one.meta_info)
    assert not mix.mixed and mix.versions == ["v1"] and mix.ranges == {}
    old = rl_generate.weight_version_mix(_output({"weight_version": "v0"}))
    assert (old.mixed, old.versions, old.final_version) == (False, ["v0"], "v0")
    assert _output({}).routed_expert_ids() is None


# -- sync verification -------------------------------------------------------------------------


def _slice(values: list[Any], truncate: int = 100) -> ParameterSlice:
    return ParameterSlice(name="w", truncate_size=truncate, values=values)


def test_compare_with_expected_truncates_like_sglang() -> None:
    expected = {"w": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}
    report = weights_check.compare_weight_slices(
        {
            "http://a": {"w": _slice([[1.0, 2.0], [3.0, 4.0]], 2)},
            "http://b": {"w": _slice([[1.0, 2.0], [3.0, 4.25]], 2)},
            "http://c": RuntimeError("connection refused"),
            "http://d": {"w": ValueError("bad name")},
            "http://e": {},
        },
        expected,
    )
    assert report.reference == "expected"
    assert report.matched == ["http://a"] and report.mismatched == ["http://b"]
    b = report.workers["http://b"].parameters[0]
    assert (b.max_abs_diff, b.first_mismatch_index, b.num_values) == (0.25, 3, 4)
    assert set(report.errors) == {"http://c", "http://d", "http://e"}
    assert "connection refused" in report.errors["http://c"]
    assert report.errors["http://e"] == "w: not read"
    assert not report.ok and "1/5 workers match" in report.summary()


def test_compare_with_each_other_picks_majority() -> None:
    report = weights_check.compare_weight_slices(
        {
            "http://odd": {"w": [1.0, 9.0]},
            "http://a": {"w": [1.0, 2.0]},
            "http://b": {"w": [1.0, 2.0]},
        }
    )
    assert report.reference == "http://a"
    assert report.mismatched == ["http://odd"] and report.matched == ["http://a", "http://b"]


def test_compare_tolerance_nan_and_shape() -> None:
    check = weights_check.compare_values
    assert check("w", [1.0, 2.0], [1.0, 2.001], atol=0.01).status == "match"
    assert check("w", [1.0, 2.0], [1.0, 2.001]).status == "mismatch"
    assert check("w", [100.0], [100.5], rtol=0.01).status == "match"
    assert check("w", [float("nan")], [float("nan")]).status == "match"
    nan = check("w", [float("nan")], [1.0])
    assert nan.status == "mismatch" and nan.first_mismatch_index == 0
    shape = check("w", [[1.0, 2.0]], [1.0, 2.0])
    assert shape.status == "mismatch" and shape.reason and "shape" in shape.reason
    assert check("w", ["x"], [1.0]).status == "error"


def test_compare_accepts_tolist_and_checks_arguments() -> None:
    class Tensor:
        def tolist(self) -> list[float]:
            return [1.0, 2.0, 3.0]

    report = weights_check.compare_weight_slices(
        {"u": {"w": _slice([1.0, 2.0], 2)}}, {"w": Tensor()}
    )
    assert report.ok
    with pytest.raises(InvalidRequestError, match="atol"):
        weights_check.compare_weight_slices({}, atol=-1)
    with pytest.raises(InvalidRequestError, match="expected"):
        weights_check.compare_weight_slices({}, {})


# -- the stale-label guidance ---------------------------------------------------------------


def test_cache_not_flushed_error_says_relabel() -> None:
    msg = "Weights were updated, but the cache was not flushed because requests are running."
    d = Driver(lambda m, p, b: (400, {"success": False, "message": msg}))
    with pytest.raises(CacheNotFlushedError) as info:
        d.run(control.update_weights_from_disk_plan("/ckpt", weight_version="v2"))
    text = str(info.value)
    assert msg in text
    assert "update_weight_version" in text and "Do not load them again" in text
    assert info.value.message == msg  # the server's own text is untouched
    assert CacheNotFlushedError.GUIDANCE in text


def test_weight_version_mismatch_names_stale_label_case() -> None:
    versions: dict[str, str | None] = {"http://a": "v2", "http://b": "v1"}
    text = WeightVersionMismatchError.describe("v2", versions)
    assert text.startswith("1 of 2 workers do not serve weight version 'v2': http://b serves 'v1'")
    assert "CacheNotFlushedError" in text and "update_weight_version(expected)" in text
    exc = WeightVersionMismatchError(text, expected="v2", versions=versions)
    assert exc.mismatched == {"http://b": "v1"}
    again = pickle.loads(pickle.dumps(exc))
    assert str(again) == str(exc) and str(again).count(exc.HINT) == 1
