"""The single ``generate`` call checks its RL keywords without ``locals()`` on the common
path (no RL field): each keyword alone must still reach the wire, and a bad one alone must
still be refused before any I/O. The tuple given to ``no_rl_arguments`` must name
every RL keyword, in order."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlinf_http import InferenceHTTPClient, InvalidRequestError
from rlinf_http._core.rl_generate import RL_KEYWORDS

#: keyword -> (value given, the body fields it must produce); each one alone.
ALONE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "return_routed_experts": ({"return_routed_experts": True}, {"return_routed_experts": True}),
    "routed_experts_start_len": (
        {"return_routed_experts": True, "routed_experts_start_len": 2},
        {"routed_experts_start_len": 2},
    ),
    "return_hidden_states": ({"return_hidden_states": "last"}, {"return_hidden_states": "last"}),
    "return_sampling_mask": ({"return_sampling_mask": True}, {"return_sampling_mask": True}),
    "sampling_logprobs_mode": (
        {"return_sampling_mask": True, "sampling_logprobs_mode": "support"},
        {"sampling_logprobs_mode": "support"},
    ),
    "scheduler_routing_key": ({"scheduler_routing_key": "t"}, {"routing_key": "t"}),
    "routed_dp_rank": ({"routed_dp_rank": 1}, {"routed_dp_rank": 1}),
    "session_params": ({"session_params": {"id": "s"}}, {"session_params": {"id": "s"}}),
    "cache_salt": ({"cache_salt": "salt"}, {"cache_salt": "salt"}),
    "max_thinking_tokens": ({"max_thinking_tokens": 7}, {"max_thinking_tokens": 7}),
    "custom_logit_processor": (
        {"custom_logit_processor": json.dumps({"callable": "x"})},
        {"custom_logit_processor": json.dumps({"callable": "x"})},
    ),
}
#: keyword -> a value refused on its own (a bad type or range).
BAD: dict[str, Any] = {
    "return_routed_experts": "yes",
    "routed_experts_start_len": 2,  # without return_routed_experts=True
    "return_hidden_states": "all",
    "return_sampling_mask": 1,
    "sampling_logprobs_mode": "selected",  # without return_sampling_mask=True
    "scheduler_routing_key": "",
    "routed_dp_rank": -1,
    "session_params": {"nope": 1},
    "cache_salt": ["a", "b"],  # a list is for a batch
    "max_thinking_tokens": -1,
    "custom_logit_processor": "not json",
}
ANSWER = {"text": "x", "output_ids": [1], "meta_info": {"id": "i", "finish_reason": None}}


def test_every_rl_keyword_has_a_case() -> None:
    assert set(ALONE) == set(BAD) == set(RL_KEYWORDS)


def test_the_no_rl_test_names_every_rl_keyword() -> None:
    source = Path(__file__).parents[2] / "rlinf_http/_endpoints/_async/generate.py"
    tree = ast.parse(source.read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "no_rl_arguments"
    ]
    assert len(calls) == 1
    values = calls[0].args[0]
    assert isinstance(values, ast.Tuple)
    assert [n.id for n in values.elts if isinstance(n, ast.Name)] == list(RL_KEYWORDS)


def _client(sent: list[dict[str, Any]]) -> InferenceHTTPClient:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=ANSWER)

    transport = httpx.MockTransport(handler)
    return InferenceHTTPClient(
        "http://127.0.0.1:9",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
    )


@pytest.mark.parametrize("name", RL_KEYWORDS)
def test_each_rl_keyword_alone_reaches_the_wire_sync(name: str) -> None:
    given, wire = ALONE[name]
    sent: list[dict[str, Any]] = []
    with _client(sent) as client:
        client.generate("x", **given)
    assert {k: sent[-1].get(k) for k in wire} == wire


@pytest.mark.anyio
@pytest.mark.parametrize("name", RL_KEYWORDS)
async def test_each_rl_keyword_alone_reaches_the_wire_async(name: str) -> None:
    given, wire = ALONE[name]
    sent: list[dict[str, Any]] = []
    async with _client(sent) as client:
        await client.async_generate("x", **given)
    assert {k: sent[-1].get(k) for k in wire} == wire


@pytest.mark.anyio
@pytest.mark.parametrize("name", RL_KEYWORDS)
async def test_each_bad_rl_keyword_alone_is_refused_before_io(name: str) -> None:
    sent: list[dict[str, Any]] = []
    async with _client(sent) as client:
        with pytest.raises(InvalidRequestError):
            await client.async_generate("x", **{name: BAD[name]})
    with _client(sent) as client, pytest.raises(InvalidRequestError):
        client.generate("x", **{name: BAD[name]})
    assert sent == []
