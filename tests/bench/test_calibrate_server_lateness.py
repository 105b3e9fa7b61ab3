"""The calibration tells the fake server's own lateness from the harness's error."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from rlinf_http.bench.calibrate import (
    Calibration,
    ServerLateness,
    async_calibrate,
    calibration_from,
    lateness_limit_ms,
)
from rlinf_http.bench.metrics import Distribution, Metrics
from rlinf_http.bench.report import render_result
from rlinf_http.bench.runner import BenchConfig, BenchResult, _run_on
from rlinf_http.testing import FakeConfig, FakeSGLangApp


def _calibrate(**kw: object) -> tuple[float, Calibration]:
    config = BenchConfig(
        url="http://127.0.0.1:9",  # never contacted: only the calibration runs here
        random_input_len=8,
        warmup_requests=1,
        ready_timeout=60.0,
        calibrate=True,
        **kw,  # type: ignore[arg-type]
    )
    t0 = time.monotonic()
    cal = anyio.run(async_calibrate, config, _run_on)
    return time.monotonic() - t0, cal


def test_the_fake_server_records_how_late_its_tokens_leave() -> None:
    app = FakeSGLangApp(FakeConfig(ttft_s=0.01, itl_s=0.01))

    async def main() -> None:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as http:
            body = {"text": "hi", "stream": True, "sampling_params": {"max_new_tokens": 8}}

            async def stream() -> None:
                async with http.stream("POST", "/generate", json=body) as resp:
                    async for _ in resp.aiter_lines():
                        pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(stream)
                await anyio.sleep(0.03)
                time.sleep(0.15)  # the server's event loop is blocked: its tokens are late
            stats = (await http.get("/_fake/stats")).json()
        late = stats["lateness"]
        assert late["first_token"]["count"] == 1
        assert late["later_tokens"]["count"] == 7
        assert late["later_tokens"]["max_ms"] >= 100.0, late
        assert late["later_tokens"]["mean_ms"] > 10.0, late
        app.reset_stats()
        assert app.stats["lateness"]["later_tokens"]["count"] == 0

    anyio.run(main)


def test_a_light_calibration_is_valid_and_reports_the_server_lateness() -> None:
    took, cal = _calibrate(
        num_prompts=24, max_concurrency=4, random_output_len=8, fake_ttft_ms=20, fake_itl_ms=5
    )
    assert took < 20.0
    assert cal.valid, cal.verdict
    assert cal.verdict.startswith("valid calibration"), cal.verdict
    late = cal.server_lateness
    assert late is not None
    assert late.first_token.count == 25 and late.later_tokens.count == 25 * 7
    assert late.later_tokens.mean_ms <= lateness_limit_ms(5.0)


def test_an_overloaded_fake_server_is_not_a_calibration() -> None:
    # 1000 streams of 64 tokens, 5 ms apart: far more writes per second than the
    # fake server's one event loop can make on a small machine
    took, cal = _calibrate(
        num_prompts=1000,
        max_concurrency=1000,
        random_output_len=64,
        fake_ttft_ms=20,
        fake_itl_ms=5,
    )
    assert took < 60.0
    assert not cal.valid
    assert cal.verdict.startswith("NOT A CALIBRATION"), cal.verdict
    late = cal.server_lateness
    assert late is not None and late.later_tokens.mean_ms > lateness_limit_ms(5.0)
    assert "fake server was late" in cal.summary


def _metrics() -> Metrics:
    return Metrics(
        ttft_ms=Distribution(mean=3600.0, p99=4800.0),
        itl_ms=Distribution(mean=0.1, p99=3.0),
        tpot_ms=Distribution(mean=5.2, p99=6.0),
        completed=3000,
    )


def test_injected_server_lateness_decides_the_verdict() -> None:
    late = ServerLateness.model_validate(
        {
            "first_token": {"count": 3000, "mean_ms": 3400.0, "p99_ms": 4500.0},
            "later_tokens": {"count": 189000, "mean_ms": 3300.0, "p99_ms": 4700.0},
        }
    )
    cal = calibration_from(_metrics(), 20.0, 5.0, late)
    assert not cal.valid and cal.verdict.startswith("NOT A CALIBRATION")
    assert "3400.0 ms late" in cal.verdict and "limit 5" in cal.verdict
    on_time = ServerLateness.model_validate(
        {
            "first_token": {"count": 3000, "mean_ms": 0.5},
            "later_tokens": {"count": 189000, "mean_ms": 0.4},
        }
    )
    cal = calibration_from(_metrics(), 20.0, 5.0, on_time)
    assert cal.valid and cal.verdict.startswith("valid calibration")
    cal = calibration_from(_metrics(), 20.0, 5.0)  # not measured (e.g. --no-stream)
    assert cal.valid and "not measured" in cal.verdict


def test_the_report_shows_the_lateness_and_the_refusal() -> None:
    from rich.console import Console

    late = ServerLateness.model_validate(
        {"first_token": {"count": 1, "mean_ms": 300.0}, "later_tokens": {"count": 9}}
    )
    result = BenchResult(
        date="2026-01-01T00:00:00+00:00",
        command_line="rlinf-http bench --calibrate",
        config=BenchConfig(url="http://127.0.0.1:9"),
        target="http://127.0.0.1:9",
        metrics=_metrics(),
        calibration=calibration_from(_metrics(), 20.0, 5.0, late),
    )
    console = Console(record=True, width=200)
    console.print(render_result(result))
    text = console.export_text()
    assert "Fake server late, first / later tokens (ms):" in text
    assert "NOT A CALIBRATION" in text


@pytest.mark.parametrize(("expected", "limit"), [(0.0, 3.0), (5.0, 3.0), (20.0, 5.0), (40.0, 10.0)])
def test_lateness_limit(expected: float, limit: float) -> None:
    assert lateness_limit_ms(expected) == limit
