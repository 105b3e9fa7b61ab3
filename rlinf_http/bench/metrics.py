"""Benchmark metrics, computed without any I/O from per-request timelines.

Everything here is a pure function of :class:`RequestRecord` lists and a few
client readings, so the definitions can be checked on synthetic timelines.
The definitions follow sglang's ``bench_serving`` (see ``docs/bench.md``):

- TTFT: first token-bearing chunk - request start.
- ITL: per *token*: the gap between two token-bearing chunks divided by the
  increase of ``completion_tokens`` between them, repeated that many times;
  pooled over all successful requests.
- TPOT: ``(e2e - ttft) / (output_tokens - 1)`` for requests with more than one
  output token.
- E2E latency: request start -> last byte of the response.
- Statistics: mean, median, population std (``ddof=0``), p90/p95/p99 with numpy's
  linear interpolation (plus any percentiles asked for); an empty sample gives 0
  for all of them.
- Goodput (vLLM's ``--goodput``): a request is good when it succeeded and meets
  every given SLO (``ttft``, ``tpot``, ``e2el``, ms, ``<=``); the TPOT of a
  response with at most one token counts as 0. ``request_goodput`` = good /
  duration; ``slo_attainment`` = good / all requests (failures count against it).

Times in records are seconds relative to the benchmark start; reported latencies
are in milliseconds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

__all__ = [
    "ERROR_KINDS",
    "GOODPUT_METRICS",
    "PERCENTILE_METRICS",
    "QUEUE_AT_T0_NOTE",
    "CPU_SATURATION_THRESHOLD",
    "LAG_SATURATION_MS",
    "ClientHealth",
    "Distribution",
    "Goodput",
    "Metrics",
    "RequestRecord",
    "assess_client",
    "compute_metrics",
    "goodput",
    "percentile_key",
    "request_tpot",
    "distribution",
    "itl_per_token",
    "peak_concurrency",
    "peak_output_rate",
]

#: Failure kinds, in report order.
ERROR_KINDS = (
    "http_status",
    "connection",
    "timeout",
    "stream_error_event",
    "incomplete_stream",
    "empty_response",
    "aborted",
    "invalid_response",
    "other",
)

#: The SLO keys of ``--goodput`` (vLLM's names), in milliseconds.
GOODPUT_METRICS = ("ttft", "tpot", "e2el")
#: The metrics ``--percentile-metrics`` can select (vLLM's names) -> Metrics attribute.
PERCENTILE_METRICS = {
    "ttft": "ttft_ms",
    "tpot": "tpot_ms",
    "itl": "itl_ms",
    "e2el": "e2e_latency_ms",
}

#: A client process using at least this fraction of one core is saturated.
CPU_SATURATION_THRESHOLD = 0.9
#: Event-loop lag (p99) or dispatch lateness (p99) above this is saturation, in ms.
LAG_SATURATION_MS = 50.0


@dataclass(slots=True)
class RequestRecord:
    """One request's timeline (seconds relative to the benchmark start).

    ``chunk_times[i]`` is when the bytes of the i-th token-bearing chunk arrived
    and ``chunk_tokens[i]`` the server's cumulative ``completion_tokens`` at that
    chunk (strictly increasing). ``scheduled`` is the arrival time from the
    schedule, ``released`` when the dispatcher actually handed the request on
    (before any ``--max-concurrency`` wait), ``start`` when it was sent.
    """

    index: int = 0
    scheduled: float = 0.0
    released: float = 0.0
    start: float = 0.0
    end: float = 0.0
    ttft: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    expected_prompt_tokens: int = 0
    expected_output_tokens: int = 0
    success: bool = False
    error_kind: str | None = None
    status_code: int | None = None
    error: str = ""
    process: int = 0
    #: the RL group (prompt) this sample belongs to; -1 outside ``rl-groups``
    group: int = -1
    #: the server aborted it (``finish_reason`` abort, e.g. a pause in abort mode);
    #: ``tokens_received`` counts the partial output it streamed before
    aborted: bool = False
    tokens_received: int = 0
    #: the weight versions that produced its output, in order (``meta_info.weight_versions``
    #: spans; None when the server did not say)
    weight_versions: list[str] | None = None

    @property
    def e2e(self) -> float:
        """End-to-end latency in seconds (start -> last byte)."""
        return self.end - self.start

    @property
    def queue_time(self) -> float:
        """Client queue time: sent - scheduled (semaphore wait + dispatch lateness)."""
        return max(0.0, self.start - self.scheduled)

    @property
    def lateness(self) -> float:
        """Dispatch lateness: released - scheduled (a busy client releases late)."""
        return max(0.0, self.released - self.scheduled)

    @property
    def error_key(self) -> str:
        """The key of this failure in the error breakdown, e.g. ``http_503``."""
        if self.error_kind == "http_status" and self.status_code is not None:
            return f"http_{self.status_code}"
        return self.error_kind or "other"


class Distribution(BaseModel):
    """Summary statistics of a sample, in milliseconds (0 for an empty sample)."""

    count: int = 0
    mean: float = 0.0
    median: float = 0.0
    std: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    min: float = 0.0
    max: float = 0.0
    #: the percentiles asked for (``--metric-percentiles``), keyed ``p50``, ``p99.9``...
    percentiles: dict[str, float] = Field(default_factory=dict)


def percentile_key(p: float) -> str:
    """``50`` -> ``"p50"``, ``99.9`` -> ``"p99.9"`` (vLLM's spelling)."""
    return f"p{p:g}"


def distribution(
    values_s: Sequence[float] | np.ndarray,
    scale: float = 1000.0,
    percentiles: Sequence[float] = (),
) -> Distribution:
    """Mean/median/std(ddof=0)/p90/p95/p99/min/max of ``values_s * scale``.

    ``percentiles`` (0-100) are computed too, into ``Distribution.percentiles``.
    """
    arr = np.asarray(values_s, dtype=float) * scale
    if arr.size == 0:
        return Distribution(percentiles={percentile_key(p): 0.0 for p in percentiles})
    p90, p95, p99 = np.percentile(arr, [90, 95, 99])
    extra: list[float] = (
        [float(x) for x in np.percentile(arr, list(percentiles))] if percentiles else []
    )
    return Distribution(
        percentiles={percentile_key(p): float(v) for p, v in zip(percentiles, extra, strict=True)},
        count=int(arr.size),
        mean=float(np.mean(arr)),
        median=float(np.median(arr)),
        std=float(np.std(arr)),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        min=float(np.min(arr)),
        max=float(np.max(arr)),
    )


def itl_per_token(record: RequestRecord) -> list[float]:
    """Per-token inter-token latencies (seconds) of one request.

    The gap between consecutive token-bearing chunks is split evenly over the
    tokens the later chunk added (sglang's native-backend rule); tokens of the
    first chunk belong to TTFT and produce no ITL entry.
    """
    out: list[float] = []
    times, toks = record.chunk_times, record.chunk_tokens
    n = min(len(times), len(toks))
    if n == 0:
        return out
    last_t, last_k = times[0], toks[0]
    for i in range(1, n):
        delta = toks[i] - last_k
        if delta <= 0:  # a chunk without new tokens is not a token arrival
            continue
        out.extend([(times[i] - last_t) / delta] * delta)
        last_t, last_k = times[i], toks[i]
    return out


def peak_output_rate(records: Iterable[RequestRecord], bucket_s: float = 1.0) -> float:
    """The largest number of output tokens that arrived in one bucket, per second.

    Buckets are ``[k*bucket_s, (k+1)*bucket_s)`` from the benchmark start; a
    chunk's new tokens count at its arrival time. Successful requests only.
    """
    buckets: Counter[int] = Counter()
    for r in records:
        if not r.success:
            continue
        prev = 0
        if r.chunk_times:
            for t, tok in zip(r.chunk_times, r.chunk_tokens, strict=False):
                if tok > prev:
                    buckets[math.floor(t / bucket_s)] += tok - prev
                    prev = tok
        elif r.output_tokens > 0:  # non-streaming: all tokens land at the end
            buckets[math.floor(r.end / bucket_s)] += r.output_tokens
    if not buckets:
        return 0.0
    return max(buckets.values()) / bucket_s


def peak_concurrency(records: Iterable[RequestRecord]) -> int:
    """The largest number of requests simultaneously in flight (exact, sweep line).

    A request (successful or not) is in flight on ``[start, end)``. vLLM instead
    counts every request that overlaps a 1-s bucket, which can exceed the
    concurrency cap; this is the true maximum.
    """
    events: list[tuple[float, int]] = []
    for r in records:
        if r.end < r.start:
            continue
        events.append((r.start, 1))
        events.append((r.end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


class ClientHealth(BaseModel):
    """Was the client process the bottleneck? One per client process."""

    process: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    #: CPU seconds / wall seconds: 1.0 is one core fully busy
    cpu_utilization: float = 0.0
    cpu_ms_per_request: float = 0.0
    requests: int = 0
    loop_lag_ms: Distribution = Field(default_factory=Distribution)
    dispatch_lateness_ms: Distribution = Field(default_factory=Distribution)
    saturated: bool = False
    reasons: list[str] = Field(default_factory=list)


def assess_client(
    *,
    cpu_seconds: float,
    wall_seconds: float,
    requests: int,
    loop_lags_s: Sequence[float] = (),
    lateness_s: Sequence[float] = (),
    process: int = 0,
    cpu_threshold: float = CPU_SATURATION_THRESHOLD,
    lag_threshold_ms: float = LAG_SATURATION_MS,
) -> ClientHealth:
    """Judge one client process from its CPU time, loop lag and dispatch lateness."""
    util = cpu_seconds / wall_seconds if wall_seconds > 0 else 0.0
    lag = distribution(loop_lags_s)
    late = distribution(lateness_s)
    reasons: list[str] = []
    if util >= cpu_threshold:
        reasons.append(
            f"client process {process} used {util:.0%} of one CPU core "
            f"(threshold {cpu_threshold:.0%})"
        )
    if lag.p99 >= lag_threshold_ms:
        reasons.append(
            f"client process {process} event-loop lag p99 {lag.p99:.1f} ms "
            f"(threshold {lag_threshold_ms:.0f} ms)"
        )
    if late.p99 >= lag_threshold_ms:
        reasons.append(
            f"client process {process} dispatched requests late: p99 {late.p99:.1f} ms "
            f"behind schedule (threshold {lag_threshold_ms:.0f} ms)"
        )
    return ClientHealth(
        process=process,
        cpu_seconds=cpu_seconds,
        wall_seconds=wall_seconds,
        cpu_utilization=util,
        cpu_ms_per_request=1000.0 * cpu_seconds / requests if requests else 0.0,
        requests=requests,
        loop_lag_ms=lag,
        dispatch_lateness_ms=late,
        saturated=bool(reasons),
        reasons=reasons,
    )


def request_tpot(record: RequestRecord) -> float:
    """TPOT of one request in seconds; 0 with at most one output token (vLLM's goodput rule)."""
    if record.output_tokens <= 1 or record.ttft is None:
        return 0.0
    return (record.e2e - record.ttft) / (record.output_tokens - 1)


def _slo_values(record: RequestRecord) -> dict[str, float]:
    """The SLO quantities of one successful request, in ms."""
    return {
        "ttft": 1000.0 * (record.ttft if record.ttft is not None else record.e2e),
        "tpot": 1000.0 * request_tpot(record),
        "e2el": 1000.0 * record.e2e,
    }


class Goodput(BaseModel):
    """Goodput under SLOs (vLLM's ``--goodput`` / sglang's ``goodput.py``)."""

    slos_ms: dict[str, float]
    good_requests: int = 0
    #: good requests / duration
    request_goodput: float = 0.0
    #: good requests / all requests (failed ones count as not good)
    slo_attainment: float = 0.0
    #: per SLO: requests meeting it / all requests
    slo_attainment_by_metric: dict[str, float] = Field(default_factory=dict)


def goodput(
    records: Sequence[RequestRecord], duration: float, slos_ms: dict[str, float]
) -> Goodput:
    """Which requests met every SLO in ``slos_ms`` (keys from :data:`GOODPUT_METRICS`)."""
    unknown = set(slos_ms) - set(GOODPUT_METRICS)
    if unknown:
        raise ValueError(f"unknown goodput metric(s) {sorted(unknown)}; use {GOODPUT_METRICS}")
    met = dict.fromkeys(slos_ms, 0)
    good = 0
    for r in records:
        if not r.success:
            continue
        values = _slo_values(r)
        ok = True
        for key, limit in slos_ms.items():
            if values[key] <= limit:
                met[key] += 1
            else:
                ok = False
        good += ok
    n = len(records)
    return Goodput(
        slos_ms=dict(slos_ms),
        good_requests=good,
        request_goodput=good / duration if duration > 0 else 0.0,
        slo_attainment=good / n if n else 0.0,
        slo_attainment_by_metric={k: v / n if n else 0.0 for k, v in met.items()},
    )


#: the note added when every request was scheduled at t=0 and queued in the client
QUEUE_AT_T0_NOTE = (
    "All requests were scheduled at t=0 (--request-rate inf), so client queue time is "
    "how long each request waited for a free --max-concurrency slot: expected in a "
    "closed-loop run, not a client delay. TTFT and E2E latency exclude it (they start "
    "when the request is sent)."
)


class Metrics(BaseModel):
    """Aggregate metrics of one benchmark run (bench_serving's definitions)."""

    completed: int = 0
    failed: int = 0
    error_breakdown: dict[str, int] = Field(default_factory=dict)
    #: one example error message per kind of ``error_breakdown``
    error_examples: dict[str, str] = Field(default_factory=dict)
    duration: float = 0.0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    request_throughput: float = 0.0
    input_throughput: float = 0.0
    output_throughput: float = 0.0
    total_throughput: float = 0.0
    max_output_tokens_per_s: float = 0.0
    max_concurrent_requests: int = 0
    concurrency: float = 0.0
    #: requests sent per second between the first and the last send
    achieved_request_rate: float = 0.0
    ttft_ms: Distribution = Field(default_factory=Distribution)
    itl_ms: Distribution = Field(default_factory=Distribution)
    tpot_ms: Distribution = Field(default_factory=Distribution)
    e2e_latency_ms: Distribution = Field(default_factory=Distribution)
    client_queue_ms: Distribution = Field(default_factory=Distribution)
    client: list[ClientHealth] = Field(default_factory=list)
    client_saturated: bool = False
    client_cpu_seconds: float = 0.0
    client_cpu_ms_per_request: float = 0.0
    #: the highest per-process CPU utilisation (fraction of one core)
    client_cpu_utilization: float = 0.0
    #: present when SLOs were given (``--goodput``)
    goodput: Goodput | None = None
    #: the percentiles asked for (``--metric-percentiles``), e.g. ``[50, 90, 99]``
    metric_percentiles: list[float] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    #: explanations of numbers that are easy to misread (not problems)
    notes: list[str] = Field(default_factory=list)


def compute_metrics(
    records: Sequence[RequestRecord],
    duration: float,
    client: Sequence[ClientHealth] = (),
    *,
    slos_ms: dict[str, float] | None = None,
    percentiles: Sequence[float] = (),
) -> Metrics:
    """Aggregate per-request records into :class:`Metrics`.

    Failed requests count in ``failed`` and the error breakdown, and in peak
    concurrency and client queue time; they are excluded from every latency
    statistic and from the token throughputs. ``duration`` is the measured
    phase's wall time (first dispatch -> last response), failures included.
    """
    ok = [r for r in records if r.success]
    bad = [r for r in records if not r.success]
    breakdown = Counter(r.error_key for r in bad)
    examples: dict[str, str] = {}
    for r in bad:
        examples.setdefault(r.error_key, r.error)
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    dur = duration if duration > 0 else 0.0

    def per_s(x: float) -> float:
        return x / dur if dur > 0 else 0.0

    ttfts = [r.ttft for r in ok if r.ttft is not None]
    e2es = [r.e2e for r in ok]
    tpots = [
        (r.e2e - r.ttft) / (r.output_tokens - 1)
        for r in ok
        if r.output_tokens > 1 and r.ttft is not None
    ]
    itls: list[float] = []
    for r in ok:
        itls.extend(itl_per_token(r))
    starts = sorted(r.start for r in records)
    achieved = (
        (len(starts) - 1) / (starts[-1] - starts[0])
        if len(starts) > 1 and starts[-1] > starts[0]
        else 0.0
    )
    cpu = sum(c.cpu_seconds for c in client)
    warnings = [reason for c in client for reason in c.reasons]
    queue = [r.queue_time for r in records]
    notes = []
    scheduled = [r.scheduled for r in records]
    # all requests due at one instant (per-process clocks may differ by a little)
    at_once = len(records) > 1 and max(scheduled) - min(scheduled) <= 0.001
    if at_once and max(queue) > 0.001:
        notes.append(QUEUE_AT_T0_NOTE)
    pcts = list(percentiles)
    return Metrics(
        completed=len(ok),
        failed=len(bad),
        error_breakdown=dict(sorted(breakdown.items())),
        error_examples=dict(sorted(examples.items())),
        duration=dur,
        total_input_tokens=total_in,
        total_output_tokens=total_out,
        request_throughput=per_s(len(ok)),
        input_throughput=per_s(total_in),
        output_throughput=per_s(total_out),
        total_throughput=per_s(total_in + total_out),
        max_output_tokens_per_s=peak_output_rate(records),
        max_concurrent_requests=peak_concurrency(records),
        concurrency=per_s(sum(e2es)),
        achieved_request_rate=achieved,
        ttft_ms=distribution(ttfts, percentiles=pcts),
        itl_ms=distribution(itls, percentiles=pcts),
        tpot_ms=distribution(tpots, percentiles=pcts),
        e2e_latency_ms=distribution(e2es, percentiles=pcts),
        client_queue_ms=distribution(queue, percentiles=pcts),
        client=list(client),
        client_saturated=any(c.saturated for c in client),
        client_cpu_seconds=cpu,
        client_cpu_ms_per_request=1000.0 * cpu / len(records) if records else 0.0,
        client_cpu_utilization=max((c.cpu_utilization for c in client), default=0.0),
        goodput=goodput(records, dur, slos_ms) if slos_ms else None,
        metric_percentiles=pcts,
        warnings=warnings,
        notes=notes,
    )
