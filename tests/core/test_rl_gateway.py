"""smg's RL fan-out without sockets: the request, the answer's shapes, the lockstep of plans.

The same behaviour against the real smg binary is in tests/control/test_fleet_gateway.py.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from rlinf_http import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    BadRequestError,
    InternalServerError,
    WeightUpdateError,
)
from rlinf_http._core import control, plans
from rlinf_http._core.responses import RawResponse, error_details
from rlinf_http._core.rl_gateway import Lockstep, discover_plan, fanout_operation, parse_fanout
from rlinf_http.models import FlushCacheResult


def fanout_raw(results: dict[str, Any], failed: list[Any] | None = None) -> RawResponse:
    body = {"results": results, "failed": failed or [], "total": 0, "succeeded": 0}
    return RawResponse("POST", "http://smg/v1/rl/engine/x", 207, {}, json.dumps(body).encode())


def result(url: str, status: int, body: Any) -> dict[str, Any]:
    return {"worker_id": "?", "url": url, "status": status, "latency_ms": 0, "body": body}


def test_fanout_request() -> None:
    op = fanout_operation(plans.flush_cache_plan().send(None).op, ["a", "b"], None)
    path, _, query = op.path.partition("?")
    assert (op.method, path) == ("POST", "/v1/rl/engine/flush_cache")
    assert urllib.parse.parse_qs(query) == {"selector": ["engine=sglang,id in (a,b)"]}
    assert op.content == b"{}"  # sglang needs a JSON object on body-less control calls
    loads = fanout_operation(control.loads_plan("core").send(None).op, (), "role=actor")
    path, _, query = loads.path.partition("?")
    assert (loads.method, path, loads.content) == ("GET", "/v1/rl/engine/v1/loads", None)
    assert urllib.parse.parse_qs(query) == {"selector": ["role=actor"], "include": ["core"]}


def test_answer_shapes() -> None:
    answers = parse_fanout(
        "POST",
        "/flush_cache",
        fanout_raw(
            {
                "a": result("http://a", 200, "Cache flushed.\n"),
                "b": result("http://b", 400, {"success": False, "message": "no"}),
                "c": result("http://c", 200, None),
            },
            [
                {"worker_id": "b", "url": "http://b", "status": 400, "error": "upstream_error"},
                {"worker_id": "d", "url": "http://d", "error": "upstream_timeout", "message": "2s"},
                {"worker_id": "e", "url": "http://e", "error": "upstream_unreachable"},
                {"worker_id": "f", "url": "http://f", "error": "no_control_endpoint"},
            ],
        ),
    )
    a, b, c = answers["a"], answers["b"], answers["c"]
    assert isinstance(a, RawResponse) and a.content == b"Cache flushed.\n"
    assert a.url == "http://a/flush_cache"
    assert isinstance(b, RawResponse) and b.status_code == 400 and b"no" in b.content
    assert isinstance(c, RawResponse) and c.content == b""
    d, e, f = answers["d"], answers["e"], answers["f"]
    assert isinstance(d, APITimeoutError) and d.code == "upstream_timeout" and "http://d" in str(d)
    assert type(e) is APIConnectionError and e.code == "upstream_unreachable"
    assert isinstance(f, InternalServerError) and f.code == "no_control_endpoint"
    with pytest.raises(APIResponseValidationError):
        parse_fanout("POST", "/x", RawResponse("POST", "u", 200, {}, b'{"workers": []}'))


def test_smg_rl_error_bodies_carry_the_code() -> None:
    body = b'{"error":"selector_required","message":"a non-empty `selector` is required"}'
    _, message, code = error_details(body, {})
    assert (code, message) == ("selector_required", "a non-empty `selector` is required")
    # sglang's {"error": "<text>"} keeps its text as the message, and so does prose
    assert error_details(b'{"error": "boom"}', {})[1:] == ("boom", None)
    prose = b'{"error": "Bad Request", "message": "no"}'
    assert error_details(prose, {})[1:] == ("Bad Request", None)


def test_lockstep_groups_and_feeds() -> None:
    ids = {"http://a": "a", "http://b": "b"}
    offsets = {"http://a": 1, "http://b": 2}
    work = [(u, control.init_weights_update_group_plan("127.0.0.1", 1, offsets[u], 3)) for u in ids]
    step = Lockstep(work, ids, None)
    groups = step.groups()
    assert [g.urls for g in groups] == [("http://a",), ("http://b",)]  # bodies differ
    ok = {"success": True, "message": "ok"}
    step.feed(groups[0], parse_fanout("POST", "/x", fanout_raw({"a": result("http://a", 200, ok)})))
    refused = {"success": False, "message": "Failed to init: engine says no"}
    step.feed(
        groups[1],
        parse_fanout("POST", "/x", fanout_raw({"b": result("http://b", 400, refused)})),
    )
    assert step.done
    assert step.outcomes["http://a"].success  # type: ignore[union-attr]
    error = step.outcomes["http://b"]
    assert isinstance(error, WeightUpdateError) and error.message == refused["message"]

    same = Lockstep([(u, plans.flush_cache_plan()) for u in ids], ids, "role=x")
    (group,) = same.groups()  # the same request: one fan-out
    assert group.urls == ("http://a", "http://b") and "role%3Dx" in group.request.op.path
    assert (
        len(Lockstep([(u, plans.flush_cache_plan()) for u in ids], ids, None, True).groups()) == 2
    )


def test_a_refused_fanout_is_not_the_workers_answer() -> None:
    # a 400 of the gateway (bad selector) must not read as a busy flush (flushed=False)
    ids = {"http://a": "a"}
    step = Lockstep([("http://a", plans.flush_cache_plan())], ids, None)
    refused = BadRequestError("no_workers_match", status_code=400, code="no_workers_match")
    step.feed(step.groups()[0], refused)
    assert step.outcomes == {"http://a": refused}
    # a worker missing from the answer (removed from the gateway) fails alone
    step = Lockstep([("http://a", plans.flush_cache_plan())], ids, None)
    step.feed(step.groups()[0], {})
    assert isinstance(step.outcomes["http://a"], APIConnectionError)
    assert "removed" in str(step.outcomes["http://a"])
    # and a 2xx answer goes through the call's own parser
    step = Lockstep([("http://a", plans.flush_cache_plan())], ids, None)
    step.feed(step.groups()[0], parse_fanout("POST", "/f", fanout_raw({"a": result("u", 200, "")})))
    assert isinstance(step.outcomes["http://a"], FlushCacheResult)


def test_discovery_arguments_are_checked_before_io() -> None:
    from rlinf_http import InvalidRequestError

    for kwargs in (
        {"via": "router"},
        {"selector": ""},
        {"selector": 3},
        {"via": "direct", "selector": "engine=sglang"},
        {"worker_type": "nope"},
    ):
        with pytest.raises(InvalidRequestError):
            discover_plan(**kwargs)  # type: ignore[arg-type]


def test_a_plan_that_waits_between_steps() -> None:
    def polling() -> plans.Plan[FlushCacheResult]:
        yield plans.Sleep(0.01)
        return (yield from plans.flush_cache_plan())

    ids = {"http://a": "a", "http://b": "b"}
    step = Lockstep([(u, polling()) for u in ids], ids, None)
    waits = step.groups()
    assert [(g.urls, type(g.request)) for g in waits] == [
        (("http://a",), plans.Sleep),
        (("http://b",), plans.Sleep),
    ]
    for group in waits:
        step.feed(group, None)
    (flush,) = step.groups()  # both wait done: one fan-out again
    answer = {"a": result("u", 200, ""), "b": result("u", 200, "")}
    step.feed(flush, parse_fanout("POST", "/flush_cache", fanout_raw(answer)))
    assert step.done and all(isinstance(v, FlushCacheResult) for v in step.outcomes.values())
