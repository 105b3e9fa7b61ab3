"""``--calibrate``: how far to trust a run, measured against known latencies.

Before the real run, the same load shape (dataset, lengths, rate, concurrency,
endpoint, streaming, client processes) is sent to an embedded fake sglang
server (a separate process on loopback, no router) whose TTFT and ITL are known
(``--fake-ttft-ms``, ``--fake-itl-ms``). The difference between what the
harness measured and those known values is the harness's own error at this
load; it is attached to the result with the client's CPU headroom.

That holds only while the fake server keeps to its own schedule. On a small
machine a heavy load makes the fake server itself late: its tokens leave after
they are due, in bursts, and the client measures the server's lag. The fake
server records how late it wrote each streamed step (``/_fake/stats``,
``"lateness"``); the calibration reads it, reports it apart from the harness's
error, and refuses to call the numbers a calibration (``valid`` False, a
``NOT A CALIBRATION`` verdict) when the server was late beyond
:func:`lateness_limit_ms` on average, for first tokens or for later ones.

:func:`calibration_from` is the pure part (metrics and server lateness in,
errors and verdict out).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel

from .metrics import Distribution, Metrics

if TYPE_CHECKING:
    from .config import BenchConfig

__all__ = [
    "Calibration",
    "LatencyError",
    "ServerLateness",
    "async_calibrate",
    "calibration_from",
    "lateness_limit_ms",
]

#: the fake server is "late" when its mean lateness exceeds this fraction of the
#: latency it models (TTFT for first tokens, ITL for later ones) ...
LATE_FRACTION = 0.25
#: ... or this many milliseconds, whichever is larger
LATE_FLOOR_MS = 3.0


def lateness_limit_ms(expected_ms: float) -> float:
    """The mean lateness (ms) above which the fake server is too late to calibrate."""
    return max(LATE_FLOOR_MS, LATE_FRACTION * expected_ms)


class LatenessSummary(BaseModel):
    """How late the fake server wrote one kind of token (ms, against its schedule)."""

    count: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


class ServerLateness(BaseModel):
    """The fake server's own lateness during the calibration run (``/_fake/stats``)."""

    first_token: LatenessSummary = LatenessSummary()
    later_tokens: LatenessSummary = LatenessSummary()


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
    #: how late the fake server itself was (None: not measured)
    server_lateness: ServerLateness | None = None
    #: False when the fake server was too late: the errors are then its lag, not the harness's
    valid: bool = True
    #: one line: a valid calibration, NOT A CALIBRATION (and why), or lateness not measured
    verdict: str = ""
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


def _verdict(lateness: ServerLateness | None, ttft_ms: float, itl_ms: float) -> tuple[bool, str]:
    if lateness is None or lateness.first_token.count + lateness.later_tokens.count == 0:
        return True, (
            "calibration: the fake server's lateness was not measured (it is measured on "
            "streamed responses); the errors include any lag of the server"
        )
    first, later = lateness.first_token, lateness.later_tokens
    first_limit, later_limit = lateness_limit_ms(ttft_ms), lateness_limit_ms(itl_ms)
    late = []
    if first.count and first.mean_ms > first_limit:
        late.append(f"first tokens {first.mean_ms:.1f} ms late on average (limit {first_limit:g})")
    if later.count and later.mean_ms > later_limit:
        late.append(f"later tokens {later.mean_ms:.2f} ms late on average (limit {later_limit:g})")
    if late:
        return False, (
            "NOT A CALIBRATION: the fake server itself could not keep up ("
            + ", ".join(late)
            + "); the errors above are mostly its lag, not the harness's. Calibrate at a "
            "lower --max-concurrency / --request-rate, or on a machine with more cores."
        )
    return True, (
        f"valid calibration: the fake server kept to its schedule (first tokens "
        f"{first.mean_ms:.2f} ms, later tokens {later.mean_ms:.2f} ms late on average); "
        f"the errors above are the harness's"
    )


def calibration_from(
    metrics: Metrics,
    ttft_ms: float,
    itl_ms: float,
    server_lateness: ServerLateness | None = None,
) -> Calibration:
    """Errors of a run against a fake server with TTFT ``ttft_ms`` and ITL ``itl_ms``.

    ``server_lateness`` (the fake server's ``/_fake/stats`` ``"lateness"``) decides
    whether the numbers are a calibration at all.
    """
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
    if server_lateness is not None:
        summary += (
            f"; the fake server was late by {server_lateness.first_token.mean_ms:.1f} ms "
            f"(first tokens) and {server_lateness.later_tokens.mean_ms:.2f} ms (later tokens) "
            "on average"
        )
    valid, verdict = _verdict(server_lateness, ttft_ms, itl_ms)
    if metrics.client_saturated:
        summary += "; THE CLIENT WAS SATURATED during calibration"
        if not valid:
            summary += " (or looked so: the server was late too)"
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
        server_lateness=server_lateness,
        valid=valid,
        verdict=verdict,
        summary=summary,
    )


async def _fake_stats(url: str, reset: bool = False) -> dict[str, Any] | None:
    """``GET`` (or ``DELETE``: reset) the fake server's ``/_fake/stats``; None if it fails."""
    import httpx

    try:
        async with httpx.AsyncClient(trust_env=False, timeout=10.0) as http:
            resp = await (http.delete if reset else http.get)(url + "/_fake/stats")
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data
    except (httpx.HTTPError, ValueError):
        return None


def _lateness_of(stats: dict[str, Any] | None) -> ServerLateness | None:
    if not stats or not isinstance(stats.get("lateness"), dict):
        return None
    return ServerLateness.model_validate(stats["lateness"])


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
        await _fake_stats(info.url, reset=True)
        result = await run_on(shaped, info, None, None)
        lateness = _lateness_of(await _fake_stats(info.url))
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(target.stop)
    return calibration_from(result.metrics, config.fake_ttft_ms, config.fake_itl_ms, lateness)
