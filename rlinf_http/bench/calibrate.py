"""``--calibrate``: how far to trust a run, measured against known latencies.

Before the real run, the same load shape (dataset, lengths, rate, concurrency,
endpoint, streaming, client processes) is sent to an embedded fake sglang
server (a separate process on loopback, no router) whose TTFT and ITL are known
(``--fake-ttft-ms``, ``--fake-itl-ms``). The difference between what the
harness measured and those known values is the harness's own error at this
load; it is attached to the result with the client's CPU headroom.

:func:`calibration_from` is the pure part (metrics in, errors out).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel

from .metrics import Distribution, Metrics

if TYPE_CHECKING:
    from .config import BenchConfig

__all__ = ["Calibration", "LatencyError", "async_calibrate", "calibration_from"]


class LatencyError(BaseModel):
    """Measured against expected latency of one metric (ms)."""

    expected_ms: float
    mean_ms: float = 0.0
    p99_ms: float = 0.0
    #: mean - expected (positive: the harness measured too much)
    mean_error_ms: float = 0.0
    #: p99 - expected
    p99_error_ms: float = 0.0
    #: mean error relative to the expected value (0.02 = 2%); 0 when expected is 0
    mean_error_ratio: float = 0.0


class Calibration(BaseModel):
    """The harness's error at this load, against a server with known latencies."""

    fake_ttft_ms: float
    fake_itl_ms: float
    completed: int = 0
    failed: int = 0
    ttft: LatencyError
    itl: LatencyError
    tpot: LatencyError
    #: the busiest client process's CPU use (fraction of one core) during calibration
    client_cpu_utilization: float = 0.0
    #: 1 - that: how much CPU the client had left
    client_cpu_headroom: float = 0.0
    client_saturated: bool = False
    summary: str = ""


def _error(d: Distribution, expected: float) -> LatencyError:
    mean_err = d.mean - expected
    return LatencyError(
        expected_ms=expected,
        mean_ms=d.mean,
        p99_ms=d.p99,
        mean_error_ms=mean_err,
        p99_error_ms=d.p99 - expected,
        mean_error_ratio=mean_err / expected if expected > 0 else 0.0,
    )


def calibration_from(metrics: Metrics, ttft_ms: float, itl_ms: float) -> Calibration:
    """Errors of a run against a fake server with TTFT ``ttft_ms`` and ITL ``itl_ms``."""
    util = metrics.client_cpu_utilization
    ttft, itl, tpot = (
        _error(metrics.ttft_ms, ttft_ms),
        _error(metrics.itl_ms, itl_ms),
        _error(metrics.tpot_ms, itl_ms),
    )
    summary = (
        f"at this load the harness measured TTFT {ttft.mean_error_ms:+.1f} ms "
        f"(p99 {ttft.p99_error_ms:+.1f} ms), ITL {itl.mean_error_ms:+.2f} ms, "
        f"TPOT {tpot.mean_error_ms:+.2f} ms off the known values; client CPU headroom "
        f"{max(0.0, 1.0 - util):.0%}"
    )
    if metrics.failed:
        summary += f"; {metrics.failed} calibration request(s) failed"
    if metrics.client_saturated:
        summary += "; THE CLIENT WAS SATURATED during calibration"
    return Calibration(
        fake_ttft_ms=ttft_ms,
        fake_itl_ms=itl_ms,
        completed=metrics.completed,
        failed=metrics.failed,
        ttft=ttft,
        itl=itl,
        tpot=tpot,
        client_cpu_utilization=util,
        client_cpu_headroom=max(0.0, 1.0 - util),
        client_saturated=metrics.client_saturated,
        summary=summary,
    )


RunOn = Callable[..., Awaitable[Any]]


async def async_calibrate(config: BenchConfig, run_on: RunOn) -> Calibration:
    """Run ``config``'s load against a fresh fake server and measure the error.

    ``run_on(config, embedded, progress, status)`` is the runner's one-run
    function. The calibration always runs from this host (never from Ray actors:
    the fake server listens on loopback only), without SLOs, extra body fields or
    headers meant for the real target.
    """
    from .embedded import EmbeddedTarget

    target = EmbeddedTarget(
        1,
        config.fake_ttft_ms,
        config.fake_itl_ms,
        use_router=False,
        ready_timeout=min(config.ready_timeout, 120.0) or 60.0,
    )
    try:
        info = await anyio.to_thread.run_sync(target.start)
        shaped = config.model_copy(
            update={
                "url": info.url,
                "calibrate": False,
                "ray_address": None,
                "goodput": {},
                "headers": {},
                "extra_request_body": {},
                "flush_cache": False,
            }
        )
        result = await run_on(shaped, info, None, None)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(target.stop)
    return calibration_from(result.metrics, config.fake_ttft_ms, config.fake_itl_ms)
