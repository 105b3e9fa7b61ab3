"""Goodput, /v1/completions, warm-up and calibration against fake servers with known latencies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlinf_http.bench.calibrate import calibration_from
from rlinf_http.bench.report import render_result, request_details, result_to_json
from rlinf_http.bench.runner import BenchConfig, async_run_benchmark, run_benchmark
from rlinf_http.testing import FakeConfig, FakeServer


@pytest.fixture(scope="module")
def paced() -> Iterator[FakeServer]:
    # TTFT 50 ms, ITL 10 ms: with 8 output tokens TPOT ~10 ms and E2E ~120 ms
    with FakeServer(config=FakeConfig(ttft_s=0.05, itl_s=0.01)) as srv:
        yield srv


def _cfg(url: str, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "url": url,
        "num_prompts": 8,
        "max_concurrency": 4,
        "random_input_len": 16,
        "random_output_len": 8,
        "ready_timeout": 10.0,
        "warmup_requests": 0,
    }
    base.update(kw)
    return BenchConfig.model_validate(base)


def test_goodput_against_known_latencies(paced: FakeServer) -> None:
    loose = run_benchmark(_cfg(paced.url, goodput={"ttft": 1000.0, "tpot": 100.0})).metrics
    assert loose.goodput is not None
    assert loose.goodput.good_requests == 8 and loose.goodput.slo_attainment == 1.0
    assert loose.goodput.request_goodput == pytest.approx(loose.request_throughput)
    # nobody gets a first token in 30 ms from a server whose TTFT is 50 ms
    tight = run_benchmark(_cfg(paced.url, goodput={"ttft": 30.0, "tpot": 100.0})).metrics
    assert tight.goodput is not None
    assert tight.goodput.good_requests == 0
    assert tight.goodput.slo_attainment_by_metric == {"ttft": 0.0, "tpot": 1.0}
    # E2E is at least 50 + 7 * 10 ms
    e2el = run_benchmark(_cfg(paced.url, goodput={"e2el": 110.0})).metrics.goodput
    assert e2el is not None and e2el.good_requests == 0


@pytest.mark.anyio
async def test_completions_endpoint_streams_and_counts(paced: FakeServer) -> None:
    result = await async_run_benchmark(_cfg(paced.url, endpoint="completions"))
    m = result.metrics
    assert (m.completed, m.failed) == (8, 0)
    assert m.total_output_tokens == 64 and m.total_input_tokens == 8 * 16
    assert 48.0 <= m.ttft_ms.mean <= 90.0
    assert 8.0 <= m.itl_ms.mean <= 14.0
    body = paced.app.stats["last_bodies"]["/v1/completions"]
    assert body["max_tokens"] == 8 and body["stream"] is True
    # text, not token ids: sglang-router refuses token-id prompts on /v1/completions
    assert isinstance(body["prompt"], str) and len(body["prompt"].split()) == 16


def test_completions_without_streaming(paced: FakeServer) -> None:
    m = run_benchmark(_cfg(paced.url, endpoint="completions", stream=False)).metrics
    assert (m.completed, m.total_output_tokens) == (8, 64)
    assert m.ttft_ms.mean == pytest.approx(m.e2e_latency_ms.mean)


def test_warmup_requests_are_sent_and_excluded(paced: FakeServer) -> None:
    paced.app.reset_stats()
    result = run_benchmark(_cfg(paced.url, num_prompts=5, warmup_requests=3))
    assert len(result.records) == 5 and result.metrics.completed == 5
    assert sorted(r.index for r in result.records) == list(range(5))
    assert paced.app.stats["requests"]["/generate"] == 3 + 5


def test_details_percentiles_and_table(paced: FakeServer) -> None:
    result = run_benchmark(
        _cfg(
            paced.url,
            percentile_metrics=["ttft", "e2el"],
            metric_percentiles=[50.0, 99.0],
            goodput={"ttft": 1000.0},
        )
    )
    data = result_to_json(result, details=True)
    assert data["p50_ttft_ms"] == pytest.approx(result.metrics.ttft_ms.percentiles["p50"])
    assert data["p99_e2el_ms"] == pytest.approx(result.metrics.e2e_latency_ms.percentiles["p99"])
    assert "p50_itl_ms" not in data and "mean_e2el_ms" in data
    assert data["request_goodput"] > 0
    details = request_details(result)
    assert len(details["ttfts"]) == 8 and all(len(x) == 7 for x in details["itls"])
    assert details["output_lens"] == [8] * 8 and details["errors"] == [""] * 8
    assert data["start_times"] == details["start_times"]
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(render_result(result))
    text = console.export_text()
    assert "P50 TTFT (ms):" in text and "Request goodput (req/s):" in text
    assert "Mean ITL (ms):" not in text  # itl not selected
    assert "Note: All requests were scheduled at t=0" in text


def test_calibration_measures_error_against_known_latencies() -> None:
    config = _cfg(
        "http://127.0.0.1:9",  # never contacted: only the calibration runs here
        fake_ttft_ms=40.0,
        fake_itl_ms=8.0,
        calibrate=True,
    )
    import anyio

    from rlinf_http.bench.calibrate import async_calibrate
    from rlinf_http.bench.runner import _run_on

    cal = anyio.run(async_calibrate, config, _run_on)
    assert (cal.completed, cal.failed) == (8, 0)
    assert (cal.ttft.expected_ms, cal.itl.expected_ms, cal.tpot.expected_ms) == (40.0, 8.0, 8.0)
    assert cal.ttft.mean_error_ms == pytest.approx(cal.ttft.mean_ms - 40.0)
    assert -1.0 <= cal.ttft.mean_error_ms <= 40.0  # a real harness error is small and >= 0
    assert -1.0 <= cal.itl.mean_error_ms <= 5.0
    assert 0.0 <= cal.client_cpu_headroom <= 1.0
    assert "TTFT" in cal.summary


def test_calibration_from_metrics_is_pure() -> None:
    from rlinf_http.bench.metrics import Distribution, Metrics

    m = Metrics(
        ttft_ms=Distribution(mean=22.0, p99=30.0),
        itl_ms=Distribution(mean=5.5, p99=7.0),
        tpot_ms=Distribution(mean=5.2, p99=6.0),
        client_cpu_utilization=0.25,
        completed=3,
    )
    cal = calibration_from(m, 20.0, 5.0)
    assert cal.ttft.mean_error_ms == pytest.approx(2.0)
    assert cal.ttft.p99_error_ms == pytest.approx(10.0)
    assert cal.ttft.mean_error_ratio == pytest.approx(0.1)
    assert cal.itl.mean_error_ms == pytest.approx(0.5)
    assert cal.tpot.mean_error_ms == pytest.approx(0.2)
    assert cal.client_cpu_headroom == pytest.approx(0.75)
