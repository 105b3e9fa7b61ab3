"""Goodput, chosen percentiles, error examples and notes: sans-I/O definitions."""

from __future__ import annotations

import numpy as np
import pytest

from rlinf_http.bench.metrics import (
    QUEUE_AT_T0_NOTE,
    RequestRecord,
    compute_metrics,
    distribution,
    goodput,
    percentile_key,
    request_tpot,
)
from rlinf_http.bench.options import (
    BenchOptionError,
    check_writable,
    parse_backend,
    parse_goodput,
    parse_metric_percentiles,
    parse_percentile_metrics,
)


def _rec(
    ttft: float, e2e: float, out: int, *, ok: bool = True, start: float = 0.0
) -> RequestRecord:
    return RequestRecord(
        start=start,
        released=start,
        scheduled=start,
        end=start + e2e,
        ttft=ttft if ok else None,
        chunk_times=[start + ttft, start + e2e] if ok else [],
        chunk_tokens=[1, out] if ok else [],
        output_tokens=out if ok else 0,
        success=ok,
        error_kind=None if ok else "timeout",
        error="" if ok else "ReadTimeout: slow",
    )


def test_goodput_needs_every_slo_and_counts_failures_against_attainment() -> None:
    recs = [
        _rec(0.10, 0.50, 5),  # ttft 100, tpot 100, e2e 500
        _rec(0.30, 0.40, 11),  # ttft 300, tpot 10, e2e 400
        _rec(0.05, 0.05, 1),  # one token: tpot counts as 0
        _rec(0.0, 1.0, 0, ok=False),
    ]
    g = goodput(recs, 2.0, {"ttft": 200.0, "tpot": 50.0})
    assert g.good_requests == 1  # only the one-token request meets both
    assert g.request_goodput == pytest.approx(0.5)
    assert g.slo_attainment == pytest.approx(1 / 4)
    assert g.slo_attainment_by_metric == pytest.approx({"ttft": 2 / 4, "tpot": 2 / 4})
    assert goodput(recs, 2.0, {"e2el": 450.0}).good_requests == 2
    # a limit equal to the value is met (<=)
    assert goodput(recs, 2.0, {"ttft": 300.0}).good_requests == 3
    assert request_tpot(recs[2]) == 0.0
    assert request_tpot(recs[1]) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown goodput"):
        goodput(recs, 1.0, {"itl": 5.0})


def test_compute_metrics_carries_goodput_percentiles_and_examples() -> None:
    recs = [_rec(0.1 * i, 0.1 * i + 0.2, 3, start=0.0) for i in range(1, 6)]
    bad = _rec(0.0, 0.1, 0, ok=False)
    m = compute_metrics([*recs, bad], 1.0, slos_ms={"ttft": 250.0}, percentiles=[50, 99.9])
    assert m.goodput is not None and m.goodput.good_requests == 2
    ttfts = np.array([100, 200, 300, 400, 500], dtype=float)
    assert m.ttft_ms.percentiles == pytest.approx(
        {"p50": 300.0, "p99.9": float(np.percentile(ttfts, 99.9))}
    )
    assert m.metric_percentiles == [50, 99.9]
    assert m.error_examples == {"timeout": "ReadTimeout: slow"}
    assert compute_metrics(recs, 1.0).goodput is None


def test_queue_note_only_when_everything_was_scheduled_at_t0_and_waited() -> None:
    waited = [_rec(0.1, 0.2, 2, start=s) for s in (0.0, 0.3)]
    for r in waited:
        r.scheduled = 0.0
    assert QUEUE_AT_T0_NOTE in compute_metrics(waited, 1.0).notes
    paced = [_rec(0.1, 0.2, 2, start=s) for s in (0.0, 0.3)]
    assert compute_metrics(paced, 1.0).notes == []


def test_distribution_percentiles_and_keys() -> None:
    d = distribution([0.01, 0.02, 0.03, 0.04], percentiles=[50, 75])
    assert d.percentiles == pytest.approx({"p50": 25.0, "p75": 32.5})
    assert percentile_key(99.9) == "p99.9" and percentile_key(50.0) == "p50"
    assert distribution([], percentiles=[50]).percentiles == {"p50": 0.0}


def test_option_parsers() -> None:
    assert parse_goodput(["ttft:200", "tpot:20", "e2el:5000"]) == {
        "ttft": 200.0,
        "tpot": 20.0,
        "e2el": 5000.0,
    }
    assert parse_goodput(["ttft:1.5,tpot:2"]) == {"ttft": 1.5, "tpot": 2.0}
    for bad in (["ttft"], ["itl:5"], ["ttft:x"], ["ttft:-1"], ["ttft:1", "ttft:2"]):
        with pytest.raises(BenchOptionError) as info:
            parse_goodput(bad)
        assert info.value.option == "--goodput"
    assert parse_percentile_metrics("ttft, e2el,ttft") == ["ttft", "e2el"]
    with pytest.raises(BenchOptionError, match="--percentile-metrics"):
        parse_percentile_metrics("ttft,latency")
    assert parse_metric_percentiles("99,50,90") == [50.0, 90.0, 99.0]
    for bad_p in ("0", "101", "x", ""):
        with pytest.raises(BenchOptionError, match="--metric-percentiles"):
            parse_metric_percentiles(bad_p)
    assert parse_backend("sglang") == "generate"
    assert parse_backend("sglang-oai") == "completions"
    assert parse_backend("sglang-oai-chat") == "chat"
    with pytest.raises(BenchOptionError, match="--backend"):
        parse_backend("vllm")


def test_check_writable(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    assert check_writable(base / "new.jsonl") == base / "new.jsonl"
    with pytest.raises(BenchOptionError, match="does not exist"):
        check_writable(base / "missing" / "x.jsonl")
    with pytest.raises(BenchOptionError, match="is a directory"):
        check_writable(base)
