"""The entry points of a benchmark run: :func:`run_benchmark` (sync),
:func:`async_run_benchmark` and :func:`run_sweep`.

A run builds its plan (the measured requests and their send times, see
:func:`build_plan`), runs it in one client process, in ``processes`` spawned
client processes or in ``ray_actors`` Ray actors (``rlinf_http.bench.shard``
and ``rlinf_http.bench.ray``), merges their records onto one timeline and
computes every metric with the same code (:func:`summarize`). The types live in
``rlinf_http.bench.config`` and ``rlinf_http.bench.results`` and are importable
from here too.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import anyio

from .._client import InferenceHTTPClient
from .config import BenchConfig, Progress, Status
from .embedded import EmbeddedInfo, EmbeddedTarget, sigterm_as_interrupt
from .metrics import ClientHealth, Metrics, RequestRecord, assess_client, compute_metrics
from .options import BenchOptionError
from .results import BenchResult, SweepResult
from .rl import RLGroupMetrics, rl_group_metrics, rl_groups_workload
from .shard import During, _run_processes, _run_shard, _Shard, split_plan
from .trace import (
    ScheduleFidelity,
    TraceRow,
    load_trace,
    schedule_fidelity,
    trace_schedule,
    trace_workload,
)
from .updates import UpdateEvent, mixed_version_share, run_updates, update_metrics
from .workload import (
    WorkItem,
    arrival_schedule,
    random_workload,
    sharegpt_workload,
    warmup_items,
)

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Progress",
    "Status",
    "SweepResult",
    "async_run_benchmark",
    "build_plan",
    "build_workload",
    "run_benchmark",
    "run_sweep",
    "split_plan",
    "summarize",
]


# ---------------------------------------------------------------------------------
# workload


def _trace_rows(config: BenchConfig) -> list[TraceRow]:
    # --num-prompts limits a trace only when it was given explicitly
    limit = config.num_prompts if "num_prompts" in config.model_fields_set else None
    return load_trace(config.trace_file or "", limit)


def build_plan(config: BenchConfig) -> tuple[list[WorkItem], list[float]]:
    """The measured requests of a run and their send times (deterministic for a seed)."""
    if config.dataset == "trace":
        rows = _trace_rows(config)
        items = trace_workload(
            rows,
            block_size=config.trace_block_size,
            seed=config.seed,
            as_text=config.endpoint == "chat",
        )
        return items, trace_schedule(rows, config.trace_speedup)
    items = build_workload(config)
    if config.dataset == "rl-groups":
        per_group = arrival_schedule(
            config.rl_batch_size, config.request_rate, config.burstiness, config.seed
        )
        return items, [per_group[it.group] for it in items]
    return items, arrival_schedule(len(items), config.request_rate, config.burstiness, config.seed)


def build_workload(config: BenchConfig) -> list[WorkItem]:
    """The measured requests of a run (deterministic for a given seed)."""
    as_text = config.endpoint == "chat"
    if config.dataset == "trace":
        return build_plan(config)[0]
    if config.dataset == "rl-groups":
        return rl_groups_workload(
            config.rl_batch_size,
            config.group_size,
            config.random_input_len,
            config.random_output_len,
            distribution_kind=config.output_len_distribution or "lognormal",
            sigma=config.output_len_sigma,
            seed=config.seed,
            as_text=as_text,
        )
    if config.dataset == "sharegpt":
        if not config.dataset_path:
            raise ValueError("--dataset sharegpt needs --dataset-path (a local JSON file)")
        return sharegpt_workload(
            config.dataset_path, config.num_prompts, config.seed, config.sharegpt_output_len
        )
    return random_workload(
        config.num_prompts,
        config.random_input_len,
        config.random_output_len,
        config.random_range_ratio,
        config.seed,
        as_text=as_text,
        output_len_distribution=config.output_len_distribution,
        output_len_sigma=config.output_len_sigma,
    )


# ---------------------------------------------------------------------------------
# assembling results


def _merge(shards: Sequence[_Shard]) -> tuple[list[RequestRecord], float]:
    base = min(s.start_wall for s in shards)
    records: list[RequestRecord] = []
    end = 0.0
    for s in shards:
        off = s.start_wall - base
        for r in s.records:
            r.scheduled += off
            r.released += off
            r.start += off
            r.end += off
            if r.chunk_times:
                r.chunk_times = [t + off for t in r.chunk_times]
            records.append(r)
        end = max(end, off + s.duration)
    records.sort(key=lambda r: r.index)
    return records, end


def summarize(
    config: BenchConfig,
    records: Sequence[RequestRecord],
    duration: float,
    health: list[ClientHealth],
) -> tuple[Metrics, RLGroupMetrics | None, ScheduleFidelity | None]:
    """Every number of a run from its raw records: the one metric path (local or Ray)."""
    metrics = compute_metrics(
        records,
        duration,
        health,
        slos_ms=config.goodput or None,
        percentiles=config.metric_percentiles,
    )
    scheduled = config.dataset == "trace" or not math.isinf(config.request_rate)
    return (
        metrics,
        rl_group_metrics(records),
        schedule_fidelity(records) if scheduled else None,
    )


def _result(
    config: BenchConfig,
    shards: Sequence[_Shard],
    embedded: EmbeddedInfo | None,
) -> BenchResult:
    records, duration = _merge(shards)
    health = [
        assess_client(
            cpu_seconds=s.cpu_seconds,
            wall_seconds=s.duration,
            requests=len(s.records),
            loop_lags_s=s.loop_lags,
            lateness_s=[r.lateness for r in s.records],
            process=s.process,
        )
        for s in shards
    ]
    metrics, rl, fidelity = summarize(config, records, duration, health)
    info = next((s.server_info for s in shards if s.server_info is not None), None)
    return BenchResult(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command_line=shlex.join(sys.argv),
        config=config,
        target=config.url or "",
        target_kind=shards[0].target_kind,
        embedded=embedded,
        server_info=info,
        metrics=metrics,
        rl_groups=rl,
        schedule=fidelity,
        records=records,
    )


def _updater(config: BenchConfig, events: list[UpdateEvent]) -> During:
    """The weight-update task run alongside the load (``--weight-update-every``)."""

    async def during(t0: float, records: Sequence[RequestRecord], stop: anyio.Event) -> None:
        await run_updates(
            config.url or "",
            every=config.weight_update_every or 0.0,
            unit=config.weight_update_unit,
            pause=config.weight_update_pause,
            path=config.weight_update_path,
            t0=t0,
            records=records,
            stop=stop,
            headers=config.headers,
            events=events,
        )

    return during


async def _worker_urls(config: BenchConfig) -> list[str]:
    """The target's workers (``GET /workers`` on a router; a server is its own worker)."""
    client = InferenceHTTPClient(config.url or "", max_retries=0, headers=config.headers or None)
    try:
        fleet = await client.async_fleet()
        async with fleet:
            return list(fleet.urls)
    finally:
        await client.aclose()


async def _run_on(
    config: BenchConfig,
    embedded: EmbeddedInfo | None,
    progress: Progress | None,
    status: Status | None = None,
    direct_urls: Sequence[str] = (),
) -> BenchResult:
    items, schedule = build_plan(config)
    events: list[UpdateEvent] = []
    ray_info: dict[str, Any] | None = None
    if config.ray_address is not None:
        from .ray import async_run_on_ray

        shards, ray_info = await async_run_on_ray(config, items, schedule, status, progress)
    elif config.processes > 1:
        shards = await anyio.to_thread.run_sync(_run_processes, config, items, schedule, status)
    else:
        shards = [
            await _run_shard(
                config,
                items,
                schedule,
                max_concurrency=config.max_concurrency,
                warmups=warmup_items(items, config.warmup_requests),
                progress=progress,
                status=status,
                during=None if config.weight_update_every is None else _updater(config, events),
                direct_urls=direct_urls,
            )
        ]
    result = _result(config, shards, embedded)
    result.ray = ray_info
    result.mixed_version_share = mixed_version_share(result.records)
    if config.weight_update_every is not None:
        result.weight_updates = update_metrics(events, result.records)
    if direct_urls:
        result.target = ", ".join(direct_urls)
        result.target_kind = "direct"
    return result


async def _run_with_direct(
    config: BenchConfig,
    embedded: EmbeddedInfo | None,
    progress: Progress | None,
    status: Status | None,
) -> BenchResult:
    """One run; with ``config.compare_direct`` the same load again, straight to the workers."""
    result = await _run_on(config, embedded, progress, status)
    if config.compare_direct:
        urls = await _worker_urls(config)
        if status is not None:
            status(f"--compare-direct: the same load directly against {len(urls)} worker(s)")
        result.direct = await _run_on(config, embedded, progress, status, direct_urls=urls)
    return result


def _embedded_target(config: BenchConfig) -> EmbeddedTarget:
    return EmbeddedTarget(
        config.num_workers,
        config.fake_ttft_ms,
        config.fake_itl_ms,
        use_router=config.use_router,
        load_ms=config.fake_load_ms,
        gateway=config.gateway,
        ready_timeout=min(config.ready_timeout, 120.0) or 60.0,
    )


async def async_run_benchmark(
    config: BenchConfig, progress: Progress | None = None, status: Status | None = None
) -> BenchResult:
    """Run one benchmark (embedded default target when ``config.url`` is None).

    With ``config.calibrate`` the same load first runs against the embedded fake
    server with known latencies, and the result carries the measured error.
    ``status`` receives notices (what the run waits for, calibration).
    """
    config.check()
    calibration = None
    if config.calibrate:
        from .calibrate import async_calibrate

        if status is not None:
            status(
                f"calibrating: the same load against a fake server with TTFT "
                f"{config.fake_ttft_ms:g} ms and ITL {config.fake_itl_ms:g} ms"
            )
        calibration = await async_calibrate(config, _run_on)
    if config.url is not None:
        result = await _run_with_direct(config, None, progress, status)
    else:
        target = _embedded_target(config)
        try:
            info = await anyio.to_thread.run_sync(target.start)
            result = await _run_with_direct(
                config.model_copy(update={"url": info.url}), info, progress, status
            )
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(target.stop)
    result.calibration = calibration
    return result


def run_benchmark(
    config: BenchConfig, progress: Progress | None = None, status: Status | None = None
) -> BenchResult:
    """Sync :func:`async_run_benchmark` (runs its own event loop).

    In the main thread SIGTERM is handled like Ctrl-C, so an embedded target is
    always torn down.
    """

    async def main() -> BenchResult:
        return await async_run_benchmark(config, progress, status)

    with sigterm_as_interrupt():
        return anyio.run(main)


def run_sweep(
    config: BenchConfig,
    *,
    concurrencies: Sequence[int] = (),
    rates: Sequence[float] = (),
    on_point: Callable[[BenchResult], object] | None = None,
    progress: Progress | None = None,
    status: Status | None = None,
) -> SweepResult:
    """One run per ``max_concurrency`` (or ``request_rate``) value, one embedded target.

    ``status`` receives what a point waits for, and why (as in :func:`run_benchmark`).
    """
    if bool(concurrencies) == bool(rates):
        raise ValueError("give exactly one of concurrencies or rates")
    config.check()
    if config.calibrate:
        raise BenchOptionError("--calibrate", "calibrates one run; not used with sweeps")
    if config.compare_direct:
        raise BenchOptionError("--compare-direct", "compares one run; not used with sweeps")
    parameter: Literal["max_concurrency", "request_rate"] = (
        "max_concurrency" if concurrencies else "request_rate"
    )
    values = [float(v) for v in (concurrencies or rates)]

    async def main() -> SweepResult:
        target = None
        embedded = None
        base = config
        try:
            if config.url is None:
                target = _embedded_target(config)
                embedded = await anyio.to_thread.run_sync(target.start)
                base = config.model_copy(update={"url": embedded.url})
            points = []
            for v in values:
                update: dict[str, Any] = (
                    {"max_concurrency": int(v)} if parameter == "max_concurrency" else {}
                )
                if parameter == "request_rate":
                    update["request_rate"] = v
                point = await _run_on(base.model_copy(update=update), embedded, progress, status)
                if on_point is not None:
                    on_point(point)
                points.append(point)
            return SweepResult(parameter=parameter, values=values, points=points)
        finally:
            if target is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(target.stop)

    with sigterm_as_interrupt():
        return anyio.run(main)
