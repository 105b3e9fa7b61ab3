"""RL rollout groups and trace replay: synthetic timelines and runs on the fake server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rlinf_http.bench.metrics import RequestRecord
from rlinf_http.bench.rl import rl_group_metrics, rl_groups_workload
from rlinf_http.bench.runner import BenchConfig, build_plan, run_benchmark, split_plan
from rlinf_http.bench.trace import (
    TraceFormatError,
    load_trace,
    schedule_fidelity,
    trace_schedule,
    trace_workload,
)
from rlinf_http.bench.workload import draw_output_lengths
from rlinf_http.testing import FakeConfig, FakeServer


@pytest.fixture(scope="module")
def paced() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(ttft_s=0.02, itl_s=0.005)) as srv:
        yield srv


def _rec(group: int, start: float, end: float, ok: bool = True) -> RequestRecord:
    return RequestRecord(group=group, start=start, end=end, success=ok, output_tokens=10 * ok)


# -- RL groups, synthetic ------------------------------------------------------------


def test_group_makespans_and_straggler_ratio_on_a_synthetic_timeline() -> None:
    recs = [
        _rec(0, 0.0, 1.0),
        _rec(0, 0.0, 1.0),
        _rec(0, 0.0, 3.0),  # straggler: 3 / median 1
        _rec(1, 0.5, 1.5),
        _rec(1, 0.5, 2.5),
        _rec(1, 0.5, 1.0, ok=False),  # failed: in the makespan, not in the ratio
        _rec(-1, 0.0, 9.0),  # not a group sample
    ]
    m = rl_group_metrics(recs)
    assert m is not None
    assert (m.groups, m.group_size, m.complete_groups) == (2, 3, 1)
    assert m.group_makespan_ms.max == pytest.approx(3000.0)
    assert m.group_makespan_ms.min == pytest.approx(2000.0)
    assert m.group_makespan_ms.percentiles["p50"] == pytest.approx(2500.0)
    # group 1's successful e2e are 1.0 and 2.0: median 1.5, slowest 2.0
    assert sorted([m.straggler_ratio.min, m.straggler_ratio.max]) == pytest.approx([4 / 3, 3.0])
    assert m.batch_makespan_ms == pytest.approx(3000.0)
    assert m.batch_output_throughput == pytest.approx(50 / 3.0)
    assert rl_group_metrics([_rec(-1, 0.0, 1.0)]) is None


def test_output_length_distributions() -> None:
    rng = np.random.default_rng(0)
    assert draw_output_lengths(rng, "fixed", 7, 3) == [7, 7, 7]
    uni = draw_output_lengths(rng, "uniform", 50, 4000)
    assert min(uni) >= 1 and max(uni) <= 99 and 47 <= np.mean(uni) <= 53
    logn = draw_output_lengths(rng, "lognormal", 100, 20000, sigma=1.0)
    assert min(logn) >= 1 and max(logn) <= 1000
    assert 90 <= np.mean(logn) <= 105  # the mean is kept (slightly less: the cap)
    assert np.percentile(logn, 99) > 4 * np.median(logn)  # a long tail
    with pytest.raises(ValueError):
        draw_output_lengths(rng, "lognormal", 10, 2, sigma=0.0)


def test_rl_workload_groups_share_prompts_and_split_whole() -> None:
    items = rl_groups_workload(3, 4, 16, 20, distribution_kind="lognormal", seed=1)
    assert len(items) == 12 and [it.group for it in items] == [g for g in range(3) for _ in "abcd"]
    assert items[0].input_ids == items[3].input_ids != items[4].input_ids
    assert len({it.output_len for it in items}) > 1
    parts = split_plan(items, [0.0] * 12, 2)
    assert [sorted({it.group for it in p[0]}) for p in parts] == [[0, 2], [1]]


# -- traces, synthetic ---------------------------------------------------------------


def _write_trace(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_trace_loading_schedule_and_shared_blocks(tmp_path: Path) -> None:
    f = _write_trace(
        tmp_path / "t.jsonl",
        [
            {"timestamp": 1000, "input_length": 6, "output_length": 2, "hash_ids": [7, 8]},
            {"timestamp": 1500, "input_length": 5, "output_length": 3, "hash_ids": [7]},
            {"timestamp": 1200, "input_length": 3, "output_length": 1},
        ],
    )
    rows = load_trace(f)
    assert [r.timestamp_ms for r in rows] == [1000, 1200, 1500]
    assert trace_schedule(rows, 2.0) == pytest.approx([0.0, 0.1, 0.25])
    items = trace_workload(rows, block_size=4, seed=3)
    assert [len(it.input_ids or []) for it in items] == [6, 3, 5]
    # block 7 is the same 4 tokens in both requests that name it
    assert (items[0].input_ids or [])[:4] == (items[2].input_ids or [])[:4]
    assert (items[0].input_ids or [])[4:6] != (items[2].input_ids or [])[4:5]
    assert len(load_trace(f, limit=2)) == 2
    bad = _write_trace(tmp_path / "bad.jsonl", [{"timestamp": 1, "input_length": 0}])
    with pytest.raises(TraceFormatError, match=r"bad.jsonl:1: 'input_length'"):
        load_trace(bad)
    with pytest.raises(ValueError):
        trace_schedule(rows, 0.0)


def test_schedule_fidelity_on_a_synthetic_timeline() -> None:
    recs = [
        RequestRecord(scheduled=s, released=s + late, start=s + late + q)
        for s, late, q in ((0.0, 0.0, 0.0), (1.0, 0.0005, 0.0), (2.0, 0.002, 0.05))
    ]
    f = schedule_fidelity(recs)
    assert f.requests == 3
    assert f.on_time == pytest.approx({"1ms": 2 / 3, "10ms": 2 / 3, "100ms": 1.0})
    assert f.send_lateness_ms.max == pytest.approx(52.0)
    assert f.dispatch_lateness_ms.max == pytest.approx(2.0)
    assert f.pace == pytest.approx(2.0 / 2.052)


# -- end to end on the fake server ---------------------------------------------------


def test_rl_groups_run_end_to_end(paced: FakeServer) -> None:
    config = BenchConfig(
        url=paced.url,
        dataset="rl-groups",
        group_size=4,
        rl_batch_size=3,
        random_input_len=16,
        random_output_len=10,
        output_len_distribution="lognormal",
        max_concurrency=4,  # one group at a time: its 4 samples start together
        warmup_requests=0,
        ready_timeout=10.0,
    )
    result = run_benchmark(config)
    m, rl = result.metrics, result.rl_groups
    assert (m.completed, m.failed) == (12, 0)
    assert rl is not None and (rl.groups, rl.group_size, rl.complete_groups) == (3, 4, 3)
    items, _ = build_plan(config)
    by_group: dict[int, list[RequestRecord]] = {}
    for r in result.records:
        by_group.setdefault(r.group, []).append(r)
    for g, members in by_group.items():
        longest = max(items[r.index].output_len for r in members)
        # the group lasts at least as long as its longest sample takes on the server
        makespan = max(r.end for r in members) - min(r.start for r in members)
        assert makespan >= 0.02 + (longest - 1) * 0.005 - 0.002, g
        # every sample of the group was released at the same instant
        assert len({r.released for r in members}) == 1
    # groups ran one after another (the cap is one group): batch ≈ sum of makespans
    assert rl.batch_makespan_ms >= 0.95 * sum(
        1000 * (max(r.end for r in ms) - min(r.start for r in ms)) for ms in by_group.values()
    )
    assert rl.straggler_ratio.min >= 1.0
    assert sum(r.output_tokens for r in result.records) == sum(it.output_len for it in items)


def test_trace_replay_keeps_the_schedule(paced: FakeServer, tmp_path: Path) -> None:
    rows = [
        {"timestamp": 5000 + 100 * i, "input_length": 8, "output_length": 3, "hash_ids": [1]}
        for i in range(10)
    ]
    f = _write_trace(tmp_path / "trace.jsonl", rows)
    result = run_benchmark(
        BenchConfig(
            url=paced.url,
            dataset="trace",
            trace_file=str(f),
            trace_speedup=2.0,
            warmup_requests=0,
            ready_timeout=10.0,
        )
    )
    m, sched = result.metrics, result.schedule
    assert (m.completed, m.failed) == (10, 0)
    assert m.total_output_tokens == 30 and m.total_input_tokens == 80
    assert [r.scheduled for r in result.records] == pytest.approx([0.05 * i for i in range(10)])
    assert sched is not None and sched.requests == 10
    starts = [r.start for r in result.records]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # in trace order
    assert sched.pace == pytest.approx(0.45 / (starts[-1] - starts[0]))
    assert sched.send_lateness_ms.max == pytest.approx(
        1000 * max(r.start - r.scheduled for r in result.records)
    )


def test_num_prompts_limits_a_trace_only_when_given(tmp_path: Path) -> None:
    f = _write_trace(
        tmp_path / "t.jsonl",
        [{"timestamp": 10 * i, "input_length": 2, "output_length": 1} for i in range(1500)],
    )
    items, schedule = build_plan(BenchConfig(dataset="trace", trace_file=str(f)))
    assert len(items) == len(schedule) == 1500  # the default 1000 does not cut a trace
    items, schedule = build_plan(BenchConfig(dataset="trace", trace_file=str(f), num_prompts=3))
    assert len(items) == 3 and schedule == pytest.approx([0.0, 0.01, 0.02])
