"""Metric definitions on synthetic timelines with hand-computed answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlinf_http.bench.metrics import (
    RequestRecord,
    assess_client,
    compute_metrics,
    distribution,
    itl_per_token,
    peak_concurrency,
    peak_output_rate,
)


def _ok(start: float, chunks: list[tuple[float, int]], end: float, prompt: int) -> RequestRecord:
    return RequestRecord(
        start=start,
        released=start,
        scheduled=start,
        end=end,
        ttft=chunks[0][0] - start,
        chunk_times=[t for t, _ in chunks],
        chunk_tokens=[k for _, k in chunks],
        prompt_tokens=prompt,
        output_tokens=chunks[-1][1],
        success=True,
    )


A = _ok(0.0, [(0.1, 1), (0.12, 2), (0.16, 4)], 0.17, 10)
B = _ok(0.5, [(0.55, 1), (0.65, 2)], 0.65, 20)
F = RequestRecord(
    start=0.2, released=0.2, end=0.21, error_kind="http_status", status_code=503, success=False
)


def test_itl_splits_gaps_per_token() -> None:
    assert itl_per_token(A) == pytest.approx([0.02, 0.02, 0.02])
    assert itl_per_token(B) == pytest.approx([0.1])
    # a chunk that adds no token contributes nothing
    r = _ok(0.0, [(0.1, 1), (0.2, 1), (0.3, 2)], 0.3, 1)
    assert itl_per_token(r) == pytest.approx([0.2])


def test_distribution_matches_numpy_definitions() -> None:
    d = distribution([0.02, 0.02, 0.02, 0.1])
    assert d.mean == pytest.approx(40.0)
    assert d.median == pytest.approx(20.0)
    assert d.std == pytest.approx(np.sqrt(1200.0))  # population std (ddof=0)
    assert d.p99 == pytest.approx(20 + 0.97 * 80)  # numpy linear interpolation
    assert d.p90 == pytest.approx(20 + 0.7 * 80)
    empty = distribution([])
    assert (empty.mean, empty.p99, empty.count) == (0.0, 0.0, 0)


def test_aggregate_metrics_known_answers() -> None:
    m = compute_metrics([A, F, B], duration=1.0)
    assert m.completed == 2
    assert m.failed == 1
    assert m.error_breakdown == {"http_503": 1}
    assert m.total_input_tokens == 30
    assert m.total_output_tokens == 6
    assert m.request_throughput == pytest.approx(2.0)
    assert m.input_throughput == pytest.approx(30.0)
    assert m.output_throughput == pytest.approx(6.0)
    assert m.total_throughput == pytest.approx(36.0)
    # TTFT: 100 ms and 50 ms
    assert m.ttft_ms.mean == pytest.approx(75.0)
    assert m.ttft_ms.median == pytest.approx(75.0)
    assert m.ttft_ms.std == pytest.approx(25.0)
    # ITL pooled per token: 20, 20, 20, 100
    assert m.itl_ms.mean == pytest.approx(40.0)
    assert m.itl_ms.count == 4
    # TPOT = (e2e - ttft) / (out - 1): (170-100)/3 and (150-50)/1
    assert m.tpot_ms.mean == pytest.approx(((70 / 3) + 100) / 2)
    # E2E: 170 and 150 ms; the failure is excluded
    assert m.e2e_latency_ms.mean == pytest.approx(160.0)
    assert m.e2e_latency_ms.max == pytest.approx(170.0)
    assert m.concurrency == pytest.approx(0.32)
    assert m.max_output_tokens_per_s == pytest.approx(6.0)
    assert m.max_concurrent_requests == 1  # never overlapping
    # sends at 0, 0.2, 0.5 -> 2 intervals in 0.5 s
    assert m.achieved_request_rate == pytest.approx(4.0)


def test_tpot_skips_single_token_outputs() -> None:
    one = _ok(0.0, [(0.05, 1)], 0.06, 3)
    m = compute_metrics([one], duration=0.1)
    assert m.tpot_ms.count == 0
    assert m.tpot_ms.mean == 0.0
    assert m.itl_ms.count == 0
    assert m.ttft_ms.mean == pytest.approx(50.0)


def test_peak_tokens_use_one_second_buckets_and_peak_concurrency_is_exact() -> None:
    r1 = _ok(0.0, [(0.5, 1), (1.5, 3)], 1.6, 1)
    r2 = _ok(1.2, [(1.3, 2), (2.1, 4)], 2.2, 1)
    # bucket 0: 1 token; bucket 1: 2 (r1) + 2 (r2) = 4; bucket 2: 2
    assert peak_output_rate([r1, r2]) == pytest.approx(4.0)
    assert peak_concurrency([r1, r2]) == 2
    assert peak_concurrency([]) == 0
    # back to back: one ends exactly when the next starts -> never 2 at once
    c1 = _ok(0.0, [(0.1, 1)], 0.5, 1)
    c2 = _ok(0.5, [(0.6, 1)], 0.9, 1)
    assert peak_concurrency([c1, c2]) == 1


def test_queue_time_and_lateness() -> None:
    r = RequestRecord(scheduled=1.0, released=1.01, start=1.5, end=2.0, success=False)
    assert r.queue_time == pytest.approx(0.5)
    assert r.lateness == pytest.approx(0.01)
    m = compute_metrics([r], duration=2.0)
    assert m.client_queue_ms.mean == pytest.approx(500.0)
    assert m.error_breakdown == {"other": 1}


def test_all_failed_gives_zero_latencies() -> None:
    m = compute_metrics([F], duration=0.5)
    assert m.completed == 0
    assert m.ttft_ms.mean == 0.0
    assert m.request_throughput == 0.0
    json.dumps(m.model_dump(), allow_nan=False)


def test_saturation_from_synthetic_cpu_reading() -> None:
    h = assess_client(cpu_seconds=10.0, wall_seconds=10.0, requests=100)
    assert h.cpu_utilization == pytest.approx(1.0)
    assert h.saturated
    assert "CPU" in h.reasons[0]
    assert h.cpu_ms_per_request == pytest.approx(100.0)
    m = compute_metrics([A], duration=1.0, client=[h])
    assert m.client_saturated
    assert m.warnings


def test_not_saturated_when_idle_and_lag_detection() -> None:
    idle = assess_client(cpu_seconds=1.0, wall_seconds=10.0, requests=10, loop_lags_s=[0.001])
    assert not idle.saturated
    laggy = assess_client(cpu_seconds=1.0, wall_seconds=10.0, requests=10, loop_lags_s=[0.2] * 5)
    assert laggy.saturated
    assert "lag" in laggy.reasons[0]
    late = assess_client(cpu_seconds=0.1, wall_seconds=10.0, requests=10, lateness_s=[0.3] * 3)
    assert late.saturated
