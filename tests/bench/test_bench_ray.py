"""Load from Ray actors, merged with the local metric code (a local Ray cluster on loopback)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from rlinf_http._errors import MissingDependencyError
from rlinf_http.bench.ray import clock_offset, require_ray
from rlinf_http.bench.runner import BenchConfig, run_benchmark
from rlinf_http.testing import FakeConfig, FakeServer


def test_clock_offset_is_the_midpoint_rule() -> None:
    assert clock_offset(10.0, 15.5, 11.0) == pytest.approx(5.0)


def test_without_ray_the_flag_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"rlinf-http\[ray\]"):
        require_ray()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    try:
        import ray
    except ImportError as exc:
        pytest.skip(f"ray cannot be imported: {exc}")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_ray_actors_merge_to_the_same_metrics_as_a_local_run(local_ray: Any) -> None:
    with FakeServer(config=FakeConfig(ttft_s=0.05, itl_s=0.01)) as srv:
        config = BenchConfig(
            url=srv.url,
            num_prompts=16,
            max_concurrency=4,
            random_input_len=16,
            random_output_len=8,
            warmup_requests=1,
            ready_timeout=30.0,
        )
        local = run_benchmark(config)
        distributed = run_benchmark(
            config.model_copy(update={"ray_address": "auto", "ray_actors": 2})
        )
    lm, dm = local.metrics, distributed.metrics
    assert (dm.completed, dm.failed) == (lm.completed, lm.failed) == (16, 0)
    assert dm.total_output_tokens == lm.total_output_tokens == 128
    assert dm.total_input_tokens == lm.total_input_tokens
    assert sorted(r.index for r in distributed.records) == list(range(16))
    assert {r.process for r in distributed.records} == {0, 1}
    assert len(dm.client) == 2
    assert distributed.ray is not None and distributed.ray["actors"] == 2
    assert len(distributed.ray["nodes"]) == 1  # one local node
    assert distributed.schedule is None  # rate inf: nothing to be late for
    # the same load, measured from two actors: the same latencies within noise
    assert abs(dm.ttft_ms.mean - lm.ttft_ms.mean) <= 20.0, (dm.ttft_ms, lm.ttft_ms)
    assert abs(dm.itl_ms.mean - lm.itl_ms.mean) <= 3.0
    assert abs(dm.e2e_latency_ms.mean - lm.e2e_latency_ms.mean) <= 25.0
    assert dm.itl_ms.count == lm.itl_ms.count == 16 * 7
    assert dm.max_concurrent_requests <= 4
    # the actors were released at one instant: on the merged timeline their
    # requests (all due at t=0 of their actor) are due within a moment of each other
    due = [r.scheduled for r in distributed.records]
    assert max(due) - min(due) < 0.25, due
