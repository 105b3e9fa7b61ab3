"""A generate fan-out checks every prompt at once but holds only their bodies: its
operations are made when taken (no per-prompt objects for the garbage collector)."""

from __future__ import annotations

import gc

import pytest

from rlinf_http import InvalidRequestError
from rlinf_http._core.fanout import generate_ops
from rlinf_http._core.requests import LazyOps
from rlinf_http._core.targeting import pin_ops

N = 2000


def test_every_prompt_is_checked_before_any_operation_is_taken() -> None:
    prompts = [f"p{i}" for i in range(N)] + [3]
    with pytest.raises(InvalidRequestError, match=rf"prompts\[{N}\]"):
        generate_ops(prompts, None, {"max_new_tokens": 2}, False, {})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="sampling_params"):
        generate_ops(["a", "b"], None, {"max_new_tokens": "x"}, False, {})


def test_a_fan_out_holds_bodies_not_operations() -> None:
    gc.collect()
    before = len(gc.get_objects())
    ops = generate_ops([f"p{i}" for i in range(N)], None, {"max_new_tokens": 2}, False, {})
    gc.collect()
    held = len(gc.get_objects()) - before
    assert isinstance(ops, LazyOps) and len(ops) == N
    assert held < 50, held  # a handful, whatever N (it was 3 per prompt)


def test_operations_are_made_when_taken_with_their_own_bodies_and_keys() -> None:
    ops = generate_ops(["a", "b", "c"], None, None, False, {}, routing_key=["k0", "k1", "k2"])
    assert ops[0] is not ops[0]
    assert [op.content for op in ops] == [ops[i].content for i in range(3)]
    assert [dict(op.headers).get("x-smg-routing-key") for op in ops] == ["k0", "k1", "k2"]
    assert b'"text":"b"' in (ops[-2].content or b"")
    assert [op.content for op in ops[1:]] == [ops[1].content, ops[2].content]
    with pytest.raises(IndexError):
        ops[3]
    pinned = pin_ops(ops, 1)
    assert isinstance(pinned, LazyOps)
    assert all(dict(op.headers).get("x-smg-target-worker") == "1" for op in pinned)
