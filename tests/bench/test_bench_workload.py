"""Workloads: determinism, exact lengths, range-ratio bounds, schedules, request bodies."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from rlinf_http.bench.workload import (
    arrival_schedule,
    build_chat_kwargs,
    build_generate_kwargs,
    merge_body,
    random_workload,
    sharegpt_workload,
    warmup_items,
)


def test_random_is_exact_by_default_and_deterministic() -> None:
    a = random_workload(50, 128, 16, seed=7)
    b = random_workload(50, 128, 16, seed=7)
    c = random_workload(50, 128, 16, seed=8)
    assert [x.input_ids for x in a] == [x.input_ids for x in b]
    assert [x.input_ids for x in a] != [x.input_ids for x in c]
    assert all(x.input_len == 128 and x.output_len == 16 for x in a)
    assert all(x.input_ids is not None and len(x.input_ids) == 128 for x in a)


def test_range_ratio_uses_bench_serving_interval() -> None:
    items = random_workload(500, 100, 40, range_ratio=0.5, seed=1)
    ins = [x.input_len for x in items]
    outs = [x.output_len for x in items]
    assert min(ins) >= 50 and max(ins) <= 100
    assert min(outs) >= 20 and max(outs) <= 40
    assert len(set(ins)) > 10
    assert all(x.input_ids is not None and len(x.input_ids) == x.input_len for x in items)
    zero = random_workload(200, 10, 10, range_ratio=0.0, seed=1)
    assert min(x.input_len for x in zero) >= 1


def test_text_prompts_have_the_word_count() -> None:
    items = random_workload(5, 30, 4, seed=3, as_text=True)
    assert all(x.text is not None and len(x.text.split()) == 30 for x in items)


def test_schedule_inf_and_poisson() -> None:
    assert arrival_schedule(4, math.inf) == [0.0] * 4
    s = arrival_schedule(100, 10.0, seed=3)
    assert s[0] == 0.0
    assert s[-1] == pytest.approx(9.9)
    assert all(b >= a for a, b in itertools.pairwise(s))
    assert s == arrival_schedule(100, 10.0, seed=3)
    even = arrival_schedule(5, 2.0, burstiness=math.inf)
    assert even == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    bursty = arrival_schedule(200, 10.0, burstiness=0.2, seed=3)
    gaps = [b - a for a, b in itertools.pairwise(bursty)]
    regular = arrival_schedule(200, 10.0, burstiness=5.0, seed=3)
    rgaps = [b - a for a, b in itertools.pairwise(regular)]
    assert max(gaps) > max(rgaps)


def test_sharegpt_local_file(tmp_path: Path) -> None:
    data = [
        {
            "conversations": [
                {"from": "human", "value": "hello there"},
                {"from": "gpt", "value": "a b c"},
            ]
        },
        {"conversations": [{"from": "human", "value": "only one turn"}]},
        {"conversations": [{"from": "human", "value": "x y z w"}, {"from": "gpt", "value": "ok"}]},
    ]
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(data))
    items = sharegpt_workload(path, 5, seed=1)
    assert len(items) == 5
    assert {x.text for x in items} == {"hello there", "x y z w"}
    assert {(x.text, x.output_len) for x in items} <= {("hello there", 3), ("x y z w", 1)}
    fixed = sharegpt_workload(path, 2, output_len=9)
    assert all(x.output_len == 9 for x in fixed)
    with pytest.raises(FileNotFoundError):
        sharegpt_workload(tmp_path / "missing.json", 1)


def test_request_bodies_force_output_length() -> None:
    item = random_workload(1, 8, 5, seed=0)[0]
    g = build_generate_kwargs(
        item, stream=True, extra={"sampling_params": {"top_k": 3}, "rid": "x"}
    )
    assert g["sampling_params"] == {
        "max_new_tokens": 5,
        "ignore_eos": True,
        "temperature": 0.0,
        "top_k": 3,
    }
    assert g["input_ids"] == item.input_ids and g["stream"] is True and g["rid"] == "x"
    text = random_workload(1, 8, 5, seed=0, as_text=True)[0]
    c = build_chat_kwargs(text, model="m", stream=True, extra={"temperature": 0.5})
    assert c["max_tokens"] == 5 and c["ignore_eos"] is True
    assert c["stream_options"] == {"include_usage": True}
    assert c["temperature"] == 0.5 and c["model"] == "m"
    assert "stream_options" not in build_chat_kwargs(text, model="m", stream=False)


def test_merge_body_is_deep_and_pure() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": 1}
    out = merge_body(base, {"a": {"c": 3}, "e": [1]})
    assert out == {"a": {"b": 1, "c": 3}, "d": 1, "e": [1]}
    assert base == {"a": {"b": 1, "c": 2}, "d": 1}


def test_warmup_items_cap_output() -> None:
    items = random_workload(3, 4, 100, seed=0)
    w = warmup_items(items, 2)
    assert len(w) == 2 and all(x.output_len == 32 and x.index < 0 for x in w)
    assert warmup_items(items, 0) == []
