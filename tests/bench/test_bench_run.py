"""End-to-end runs of the harness against the fake server (loopback, bounded)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlinf_http.bench.report import (
    plot_sweep,
    render_result,
    result_to_json,
    sweep_to_json,
    write_json,
)
from rlinf_http.bench.runner import BenchConfig, async_run_benchmark, run_benchmark, run_sweep
from rlinf_http.testing import FakeConfig, FakeServer, FaultSpec


@pytest.fixture
def paced() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(ttft_s=0.05, itl_s=0.01)) as srv:
        yield srv


@pytest.fixture
def quick() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(ttft_s=0.005, itl_s=0.001)) as srv:
        yield srv


def _cfg(url: str, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "url": url,
        "num_prompts": 20,
        "max_concurrency": 2,
        "random_input_len": 32,
        "random_output_len": 8,
        "ready_timeout": 10.0,
    }
    base.update(kw)
    return BenchConfig.model_validate(base)


@pytest.mark.anyio
async def test_measured_latencies_match_the_fake_latency_model(paced: FakeServer) -> None:
    result = await async_run_benchmark(_cfg(paced.url))
    m = result.metrics
    assert (m.completed, m.failed) == (20, 0)
    assert m.total_output_tokens == 160
    assert m.total_input_tokens == 20 * 32  # server-reported prompt tokens
    assert 48.0 <= m.ttft_ms.mean <= 80.0
    assert 8.0 <= m.itl_ms.mean <= 13.0
    assert m.itl_ms.count == 20 * 7  # per token, excluding the first
    assert 8.0 <= m.tpot_ms.mean <= 13.0
    expected_e2e = 50 + 7 * 10
    assert expected_e2e - 2 <= m.e2e_latency_ms.mean <= expected_e2e + 35
    assert m.max_concurrent_requests <= 2
    assert 1.5 <= m.concurrency <= 2.0
    assert result.target_kind == "server"
    assert len(m.client) == 1 and m.client[0].cpu_seconds > 0


@pytest.mark.anyio
async def test_chat_streaming_uses_usage_counts(paced: FakeServer) -> None:
    result = await async_run_benchmark(_cfg(paced.url, endpoint="chat", num_prompts=6))
    m = result.metrics
    assert (m.completed, m.failed) == (6, 0)
    assert m.total_output_tokens == 48
    assert 48.0 <= m.ttft_ms.mean <= 80.0
    assert 8.0 <= m.itl_ms.mean <= 13.0


def test_non_stream_ttft_equals_e2e(paced: FakeServer) -> None:
    m = run_benchmark(_cfg(paced.url, stream=False, num_prompts=4)).metrics
    assert m.completed == 4
    assert m.ttft_ms.mean == pytest.approx(m.e2e_latency_ms.mean)
    assert m.itl_ms.count == 0


def test_failures_are_counted_and_excluded(quick: FakeServer) -> None:
    quick.app.faults.add(
        FaultSpec(path="/generate", status=503, times=3),
        FaultSpec(path="/generate", stream_error_after=2, times=2),
        FaultSpec(path="/generate", malformed=True, times=1),
        FaultSpec(
            path="/generate",
            status=200,
            body="data: [DONE]\n\n",
            content_type="text/event-stream",
            times=1,
        ),
    )
    result = run_benchmark(_cfg(quick.url, num_prompts=30, max_concurrency=1, warmup_requests=0))
    m = result.metrics
    assert m.failed == 7
    assert m.completed == 23
    assert m.error_breakdown["http_503"] == 3
    assert m.error_breakdown["stream_error_event"] == 2
    assert m.error_breakdown["empty_response"] == 1
    assert sum(m.error_breakdown.values()) == 7
    assert m.ttft_ms.count == 23 and m.e2e_latency_ms.count == 23
    assert m.total_output_tokens == 23 * 8
    data = result_to_json(result)
    assert data["failed"] == 7 and data["completed"] == 23


def test_json_output_is_strict_with_bench_serving_keys(quick: FakeServer, tmp_path: Path) -> None:
    result = run_benchmark(_cfg(quick.url, num_prompts=5, seed=3))
    out = tmp_path / "r.json"
    write_json(out, result_to_json(result))
    text = out.read_text()
    assert "Infinity" not in text and "NaN" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    for key in (
        "request_throughput",
        "input_throughput",
        "output_throughput",
        "total_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "std_ttft_ms",
        "p99_ttft_ms",
        "mean_itl_ms",
        "p99_itl_ms",
        "mean_tpot_ms",
        "mean_e2e_latency_ms",
        "p99_e2e_latency_ms",
        "concurrency",
        "completed",
        "failed",
        "duration",
        "total_input_tokens",
        "total_output_tokens",
        "max_output_tokens_per_s",
        "max_concurrent_requests",
        "date",
        "rlinf_http_version",
        "command_line",
        "seed",
        "target",
        "server_info",
        "client_saturated",
        "client_cpu_ms_per_request",
        "mean_client_queue_ms",
    ):
        assert key in data, key
    assert data["request_rate"] == "inf"
    assert data["seed"] == 3
    assert data["server_info"] is not None


def test_table_renders(quick: FakeServer) -> None:
    from rich.console import Console

    result = run_benchmark(_cfg(quick.url, num_prompts=3))
    console = Console(record=True, width=100)
    console.print(render_result(result))
    text = console.export_text()
    for label in ("Successful requests:", "Failed requests:", "Mean TTFT (ms):", "Client CPU"):
        assert label in text


def test_sweep_writes_json_and_png(quick: FakeServer, tmp_path: Path) -> None:
    sweep = run_sweep(_cfg(quick.url, num_prompts=6), concurrencies=[1, 4])
    assert [p.config.max_concurrency for p in sweep.points] == [1, 4]
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    write_json(out, sweep_to_json(sweep))
    plot_sweep(sweep, png)
    data = json.loads(out.read_text())
    assert data["sweep_parameter"] == "max_concurrency"
    assert [p["max_concurrency"] for p in data["points"]] == [1, 4]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rates = run_sweep(_cfg(quick.url, num_prompts=4, max_concurrency=None), rates=[50.0, 100.0])
    assert rates.parameter == "request_rate"
    assert [p.config.request_rate for p in rates.points] == [50.0, 100.0]


def test_poisson_rate_is_achieved(quick: FakeServer) -> None:
    m = run_benchmark(_cfg(quick.url, num_prompts=30, request_rate=100.0, max_concurrency=None))
    m2 = m.metrics
    assert m2.completed == 30
    assert 80.0 <= m2.achieved_request_rate <= 120.0
    assert m2.client_queue_ms.p99 < 50.0


def test_two_processes_merge(paced: FakeServer) -> None:
    result = run_benchmark(_cfg(paced.url, num_prompts=12, max_concurrency=4, processes=2))
    m = result.metrics
    assert (m.completed, m.failed) == (12, 0)
    assert len(m.client) == 2
    assert {r.process for r in result.records} == {0, 1}
    assert sorted(r.index for r in result.records) == list(range(12))
    assert 48.0 <= m.ttft_ms.mean <= 90.0
    assert m.duration < 5.0
    assert result.server_info is not None


def test_latencies_through_the_real_router_match_the_workers() -> None:
    # The router writes stream chunks with Nagle's algorithm on; without quick ACKs
    # on our side Linux delays our ACK (up to 40 ms) and the first chunk with it,
    # so TTFT measured through the router came out ~40 ms above the workers'.
    from rlinf_http.testing import launch_router, router_available, start_fake_worker

    if not router_available():
        pytest.skip("sglang-router is not installed")
    config = FakeConfig(ttft_s=0.05, itl_s=0.01)
    with start_fake_worker(config=config) as worker, launch_router([worker.url]) as router:
        result = run_benchmark(_cfg(router.url))
    m = result.metrics
    assert (m.completed, m.failed) == (20, 0)
    assert 48.0 <= m.ttft_ms.mean <= 75.0, m.ttft_ms
    assert 8.0 <= m.itl_ms.mean <= 13.0, m.itl_ms
    assert result.target_kind == "router"
