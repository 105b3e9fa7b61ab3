"""Drive an :class:`~rlinf_http.InferenceHTTPClient` through a workload and time it.

One pooled client session per process, no retries (a failure is counted, not
hidden). Dispatch follows a precomputed absolute schedule; ``max_concurrency``
is a semaphore acquired *after* the scheduled time, so the time spent waiting
for it is reported as client queue time. Streamed responses are timed when their
bytes arrive, before they are parsed. A ticker task measures event-loop lag and
the process CPU time is read around the measured phase, so a run whose client
was the bottleneck says so. ``processes > 1`` splits the workload over several
client processes (spawned) that start at the same instant; ``ray_actors`` does
the same over Ray actors (``rlinf_http.bench.ray``); results are merged and go
through the same metric code as a local run. An ``rl-groups`` workload is
dispatched one group at a time: a group's samples are released together and take
their ``max_concurrency`` slots together.

Entry points: :func:`run_benchmark` (sync), :func:`async_run_benchmark` and
:func:`run_sweep`.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import queue
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._base_client import NOT_GIVEN
from .._client import InferenceHTTPClient
from .._core.requests import build_post
from .._core.streams import EventStreamParser
from .._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    IncompleteStreamError,
    StreamErrorEvent,
)
from .._streaming import AsyncStream
from .._version import __version__
from ..testing._children import die_with_parent
from .calibrate import Calibration
from .embedded import EmbeddedInfo, EmbeddedTarget, sigterm_as_interrupt
from .metrics import (
    PERCENTILE_METRICS,
    ClientHealth,
    Metrics,
    RequestRecord,
    assess_client,
    compute_metrics,
)
from .options import BenchOptionError
from .rl import OutputLenDistribution, RLGroupMetrics, rl_group_metrics, rl_groups_workload
from .trace import (
    DEFAULT_BLOCK_SIZE,
    ScheduleFidelity,
    TraceRow,
    load_trace,
    schedule_fidelity,
    trace_schedule,
    trace_workload,
)
from .workload import (
    WorkItem,
    arrival_schedule,
    build_chat_kwargs,
    build_completion_kwargs,
    build_generate_kwargs,
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
]

#: ``progress(done, failed, total)`` is called after every measured request.
Progress = Callable[[int, int, int], object]
#: ``status(message)`` receives what the harness is waiting for (e.g. an unreachable target).
Status = Callable[[str], object]

_clock = time.perf_counter
_LAG_TICK_S = 0.01
#: say what we wait for once readiness takes this long, then every _READY_EVERY_S
_READY_NOTICE_S = 2.0
_READY_EVERY_S = 5.0


class BenchConfig(BaseModel):
    """Everything a benchmark run needs (the CLI options, one to one)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    endpoint: Literal["generate", "chat", "completions"] = "generate"
    stream: bool = True
    dataset: Literal["random", "sharegpt", "rl-groups", "trace"] = "random"
    dataset_path: str | None = None
    #: rl-groups: samples per prompt (K) and prompts per batch (B)
    group_size: int = Field(8, ge=1)
    rl_batch_size: int = Field(8, ge=1)
    #: output lengths of rl-groups (default lognormal) and random (default: the range ratio)
    output_len_distribution: OutputLenDistribution | None = None
    output_len_sigma: float = Field(1.0, gt=0.0)
    #: trace: the mooncake JSONL file, replay speed-up and tokens per hash id
    trace_file: str | None = None
    trace_speedup: float = Field(1.0, gt=0.0)
    trace_block_size: int = Field(DEFAULT_BLOCK_SIZE, ge=1)
    random_input_len: int = Field(1024, ge=1)
    random_output_len: int = Field(128, ge=1)
    random_range_ratio: float = Field(1.0, ge=0.0, le=1.0)
    sharegpt_output_len: int | None = Field(None, ge=1)
    seed: int = 42
    num_prompts: int = Field(1000, ge=1)
    request_rate: float = math.inf
    burstiness: float = Field(1.0, gt=0.0)
    max_concurrency: int | None = Field(None, ge=1)
    warmup_requests: int = Field(1, ge=0)
    extra_request_body: dict[str, Any] = Field(default_factory=dict)
    processes: int = Field(1, ge=1)
    num_workers: int = Field(2, ge=1)
    fake_ttft_ms: float = Field(20.0, ge=0.0)
    fake_itl_ms: float = Field(5.0, ge=0.0)
    use_router: bool | None = None
    model: str = "default"
    ready_timeout: float = Field(300.0, ge=0.0)
    request_timeout: float | None = Field(None, gt=0.0)
    headers: dict[str, str] = Field(default_factory=dict)
    flush_cache: bool = False
    #: SLOs in ms (``ttft``, ``tpot``, ``e2el``): adds goodput to the metrics
    goodput: dict[str, float] = Field(default_factory=dict)
    #: which latency metrics the table shows (vLLM's names) and extra percentiles
    percentile_metrics: list[str] = Field(default_factory=lambda: list(PERCENTILE_METRICS))
    metric_percentiles: list[float] = Field(default_factory=list)
    #: first run the same load against the embedded fake server with known latencies
    calibrate: bool = False
    #: run the load from Ray actors: "local" (start a local cluster), "auto" or an address
    ray_address: str | None = None
    ray_actors: int = Field(1, ge=1)

    @field_validator("request_rate")
    @classmethod
    def _rate(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("request_rate must be > 0 (or inf)")
        return v

    def check(self) -> None:
        """Cross-option checks (raises :class:`BenchOptionError` before any I/O)."""
        if self.dataset == "sharegpt" and not self.dataset_path:
            raise BenchOptionError("--dataset-path", "--dataset sharegpt needs a local JSON file")
        if self.dataset == "trace" and not self.trace_file:
            raise BenchOptionError("--trace-file", "--dataset trace needs a mooncake JSONL file")
        if self.dataset == "trace" and not os.path.isfile(self.trace_file or ""):
            raise BenchOptionError("--trace-file", f"no such file: {self.trace_file}")
        if self.dataset == "sharegpt" and not os.path.isfile(self.dataset_path or ""):
            raise BenchOptionError("--dataset-path", f"no such file: {self.dataset_path}")
        if self.trace_file and self.dataset != "trace":
            raise BenchOptionError("--trace-file", "is only used with --dataset trace")
        if self.dataset == "rl-groups" and self.max_concurrency is not None:
            parts = max(self.processes, self.ray_actors if self.ray_address else 1)
            if self.max_concurrency < self.group_size * parts:
                raise BenchOptionError(
                    "--max-concurrency",
                    f"must be at least --group-size ({self.group_size}) per client "
                    f"process/actor: a group's samples are sent together",
                )
        if self.ray_address is not None and self.processes > 1:
            raise BenchOptionError("--ray", "use --ray-actors, not --processes, with Ray")
        if self.dataset not in ("random", "rl-groups") and self.output_len_distribution:
            raise BenchOptionError(
                "--output-len-distribution", "applies to --dataset random and rl-groups"
            )


class BenchResult(BaseModel):
    """One run: its configuration, target, metadata and metrics."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    date: str
    version: str = __version__
    command_line: str = ""
    config: BenchConfig
    target: str
    target_kind: str | None = None
    embedded: EmbeddedInfo | None = None
    server_info: dict[str, Any] | None = None
    metrics: Metrics
    #: rl-groups: group and batch makespans, straggler ratios
    rl_groups: RLGroupMetrics | None = None
    #: a scheduled (rate or trace) run: how late requests were sent
    schedule: ScheduleFidelity | None = None
    #: --calibrate: the harness's measured error against known latencies
    calibration: Calibration | None = None
    #: Ray runs: the actors' nodes and clock offsets
    ray: dict[str, Any] | None = None
    records: list[RequestRecord] = Field(default_factory=list, exclude=True, repr=False)


class SweepResult(BaseModel):
    """A sweep: one :class:`BenchResult` per concurrency or rate."""

    parameter: Literal["max_concurrency", "request_rate"]
    values: list[float]
    points: list[BenchResult]


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
# one request


def _classify(rec: RequestRecord, exc: BaseException) -> None:
    rec.success = False
    rec.error = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, StreamErrorEvent):
        rec.error_kind = "stream_error_event"
    elif isinstance(exc, IncompleteStreamError):
        rec.error_kind = "incomplete_stream"
    elif isinstance(exc, APIStatusError):
        rec.error_kind = "http_status"
        rec.status_code = exc.status_code
    elif isinstance(exc, (APITimeoutError, TimeoutError, httpx.TimeoutException)):
        rec.error_kind = "timeout"
    elif isinstance(exc, (APIConnectionError, httpx.TransportError)):
        rec.error_kind = "connection"
    elif isinstance(exc, APIResponseValidationError):
        rec.error_kind = "invalid_response"
    else:
        rec.error_kind = "other"


def _empty(rec: RequestRecord) -> None:
    rec.success = False
    rec.error_kind = "empty_response"
    rec.error = "HTTP 200 without any generated token"


class _Timeline:
    """Token arrivals of one streamed request."""

    __slots__ = ("rec", "t0", "tokens")

    def __init__(self, rec: RequestRecord, t0: float) -> None:
        self.rec = rec
        self.t0 = t0
        self.tokens = 0

    def tokens_at(self, now: float, cumulative: int) -> None:
        if cumulative <= self.tokens:
            return
        rec = self.rec
        if rec.ttft is None:
            rec.ttft = now - rec.start
        rec.chunk_times.append(now)
        rec.chunk_tokens.append(cumulative)
        self.tokens = cumulative


async def _generate_stream(
    client: InferenceHTTPClient, kwargs: dict[str, Any], rec: RequestRecord, t0: float
) -> None:
    stream = await client.async_generate(max_retries=0, **kwargs)
    line = _Timeline(rec, t0)
    async with stream:
        async for chunk in stream:
            now = stream.arrived_at - t0  # when the bytes arrived, not when parsed
            rec.end = now
            meta = chunk.meta_info
            line.tokens_at(now, meta.completion_tokens or len(chunk.output_ids))
            if meta.prompt_tokens:
                rec.prompt_tokens = meta.prompt_tokens
    rec.output_tokens = line.tokens
    if line.tokens == 0:
        _empty(rec)
    else:
        rec.success = True


async def _chat_stream(
    client: InferenceHTTPClient, kwargs: dict[str, Any], rec: RequestRecord, t0: float
) -> None:
    messages = kwargs.pop("messages")
    model = kwargs.pop("model")
    stream = await client.async_chat_completion(messages, model, max_retries=0, **kwargs)
    line = _Timeline(rec, t0)
    usage = None
    async with stream:
        async for chunk in stream:
            now = stream.arrived_at - t0
            rec.end = now
            if chunk.usage is not None:
                usage = chunk.usage
            if any(c.delta.content or c.delta.reasoning_content for c in chunk.choices):
                # continuous usage stats give exact token counts; else 1 per chunk
                reported = chunk.usage.completion_tokens if chunk.usage is not None else 0
                line.tokens_at(now, max(reported, line.tokens + 1))
    rec.output_tokens = usage.completion_tokens if usage is not None else line.tokens
    rec.prompt_tokens = usage.prompt_tokens if usage is not None else rec.expected_prompt_tokens
    if line.tokens == 0:
        _empty(rec)
    else:
        rec.success = True


def _completion_tokens(chunk: Any) -> tuple[bool, int | None]:
    """(carries text, cumulative completion tokens if reported) of a completions chunk."""
    if not isinstance(chunk, dict):
        return False, None
    usage = chunk.get("usage")
    reported = usage.get("completion_tokens") if isinstance(usage, dict) else None
    choices = chunk.get("choices") or []
    has_text = any(isinstance(c, dict) and c.get("text") for c in choices)
    return has_text, reported if isinstance(reported, int) else None


async def _completion_stream(
    client: InferenceHTTPClient, body: dict[str, Any], rec: RequestRecord, t0: float
) -> None:
    # No typed /v1/completions method yet: the generic POST operation, opened as
    # an SSE stream of plain dicts through the client's retry-aware transport.
    op = build_post("/v1/completions", body)
    response, url = await client._aopen(op, NOT_GIVEN, client._policy(0))
    stream: AsyncStream[Any] = AsyncStream(
        response, EventStreamParser(lambda v: v, url), op.method, url
    )
    line = _Timeline(rec, t0)
    usage: dict[str, Any] | None = None
    async with stream:
        async for chunk in stream:
            now = stream.arrived_at - t0
            rec.end = now
            has_text, reported = _completion_tokens(chunk)
            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            if has_text:
                line.tokens_at(now, max(reported or 0, line.tokens + 1))
    _finish_openai(rec, line.tokens, usage)


def _finish_openai(rec: RequestRecord, tokens: int, usage: dict[str, Any] | None) -> None:
    usage = usage or {}
    out = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    rec.output_tokens = out if isinstance(out, int) else tokens
    rec.prompt_tokens = prompt if isinstance(prompt, int) else rec.expected_prompt_tokens
    if tokens == 0:
        _empty(rec)
    else:
        rec.success = True


async def _non_stream(
    client: InferenceHTTPClient,
    endpoint: str,
    kwargs: dict[str, Any],
    rec: RequestRecord,
    t0: float,
) -> None:
    if endpoint == "generate":
        out = await client.async_generate(max_retries=0, **kwargs)
        rec.end = _clock() - t0
        rec.output_tokens = out.meta_info.completion_tokens or len(out.output_ids)
        rec.prompt_tokens = out.meta_info.prompt_tokens
    elif endpoint == "completions":
        body = await client.async_post("/v1/completions", kwargs)
        rec.end = _clock() - t0
        usage = body.get("usage") if isinstance(body, dict) else None
        choices = body.get("choices") if isinstance(body, dict) else None
        has_text = isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("text") for c in choices
        )
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            rec.output_tokens = usage["completion_tokens"]
            rec.prompt_tokens = int(usage.get("prompt_tokens") or rec.expected_prompt_tokens)
        elif has_text:
            rec.output_tokens = rec.expected_output_tokens
            rec.prompt_tokens = rec.expected_prompt_tokens
    else:
        messages = kwargs.pop("messages")
        model = kwargs.pop("model")
        chat = await client.async_chat_completion(messages, model, max_retries=0, **kwargs)
        rec.end = _clock() - t0
        if chat.usage is not None:
            rec.output_tokens = chat.usage.completion_tokens
            rec.prompt_tokens = chat.usage.prompt_tokens
        elif chat.choices and chat.choices[0].message.content:
            rec.output_tokens = rec.expected_output_tokens
            rec.prompt_tokens = rec.expected_prompt_tokens
    rec.ttft = rec.e2e  # non-streaming: the first token arrives with the last (sglang)
    if rec.output_tokens <= 0:
        _empty(rec)
    else:
        rec.success = True


async def _one_request(
    client: InferenceHTTPClient,
    config: BenchConfig,
    item: WorkItem,
    rec: RequestRecord,
    t0: float,
) -> None:
    rec.expected_prompt_tokens = item.input_len
    rec.expected_output_tokens = item.output_len
    extra = config.extra_request_body or None
    if config.endpoint == "generate":
        kwargs = build_generate_kwargs(item, stream=config.stream, extra=extra)
    elif config.endpoint == "completions":
        kwargs = build_completion_kwargs(
            item, model=config.model, stream=config.stream, extra=extra
        )
    else:
        kwargs = build_chat_kwargs(item, model=config.model, stream=config.stream, extra=extra)
    rec.start = _clock() - t0
    try:
        with (
            anyio.fail_after(config.request_timeout)
            if config.request_timeout
            else contextlib.nullcontext()
        ):
            if not config.stream:
                await _non_stream(client, config.endpoint, kwargs, rec, t0)
            elif config.endpoint == "generate":
                await _generate_stream(client, kwargs, rec, t0)
            elif config.endpoint == "completions":
                await _completion_stream(client, kwargs, rec, t0)
            else:
                await _chat_stream(client, kwargs, rec, t0)
    except Exception as exc:
        _classify(rec, exc)
    if rec.end < rec.start or not rec.success:
        rec.end = max(rec.end, _clock() - t0)
    if not rec.success:
        rec.ttft = None
        rec.chunk_times.clear()
        rec.chunk_tokens.clear()


# ---------------------------------------------------------------------------------
# one client process


@dataclass
class _Shard:
    """What one client process measured (times relative to its own ``start_wall``)."""

    process: int
    start_wall: float = 0.0
    duration: float = 0.0
    cpu_seconds: float = 0.0
    records: list[RequestRecord] = field(default_factory=list)
    loop_lags: list[float] = field(default_factory=list)
    server_info: dict[str, Any] | None = None
    target_kind: str | None = None


async def _ticker(lags: list[float]) -> None:
    while True:
        before = _clock()
        await anyio.sleep(_LAG_TICK_S)
        lags.append(max(0.0, _clock() - before - _LAG_TICK_S))


async def _run_shard(
    config: BenchConfig,
    items: Sequence[WorkItem],
    schedule: Sequence[float],
    *,
    process: int = 0,
    max_concurrency: int | None = None,
    warmups: Sequence[WorkItem] = (),
    fetch_info: bool = True,
    go: Callable[[], Awaitable[float | None]] | None = None,
    progress: Progress | None = None,
    status: Status | None = None,
) -> _Shard:
    assert config.url is not None
    shard = _Shard(process=process)
    limit = max_concurrency or 0
    client = InferenceHTTPClient(
        config.url,
        max_connections=max(limit, 16384) if limit else 16384,
        max_retries=0,
        headers=config.headers or None,
    )
    sem = anyio.Semaphore(limit) if limit else None
    try:
        if config.ready_timeout > 0:
            shard.target_kind = await _wait_ready(client, config, status)
        if fetch_info:
            with contextlib.suppress(Exception):
                info = await client.async_server_info()
                shard.server_info = info.model_dump(mode="json")
        if warmups:
            await _warmup(client, config, warmups, sem)
        if config.flush_cache:
            with contextlib.suppress(Exception):
                await client.async_flush_cache()
        if go is not None:
            start_wall = await go()
            if start_wall is not None:
                await anyio.sleep(max(0.0, start_wall - time.time()))
        shard.records = await _measure(client, config, items, schedule, sem, shard, progress)
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
    return shard


async def _wait_ready(
    client: InferenceHTTPClient, config: BenchConfig, status: Status | None
) -> str:
    """Wait for readiness; after a moment, say every few seconds what we wait for."""
    if status is None:
        return await client.async_wait_until_ready(timeout=config.ready_timeout)
    t0 = _clock()

    async def notices() -> None:
        await anyio.sleep(_READY_NOTICE_S)
        while True:
            status(
                f"waiting for {config.url} to become ready (GET /readiness on a router, "
                f"/health on a server): {_clock() - t0:.0f} s of --ready-timeout "
                f"{config.ready_timeout:g} s"
            )
            await anyio.sleep(_READY_EVERY_S)

    async with anyio.create_task_group() as tg:
        tg.start_soon(notices)
        try:
            kind = await client.async_wait_until_ready(timeout=config.ready_timeout)
        finally:
            tg.cancel_scope.cancel()
    return kind


async def _warmup(
    client: InferenceHTTPClient,
    config: BenchConfig,
    warmups: Sequence[WorkItem],
    sem: anyio.Semaphore | None,
) -> None:
    recs = [RequestRecord(index=w.index) for w in warmups]
    t0 = _clock()

    async def one(item: WorkItem, rec: RequestRecord) -> None:
        async with sem if sem is not None else contextlib.nullcontext():
            await _one_request(client, config, item, rec, t0)

    async with anyio.create_task_group() as tg:
        for item, rec in zip(warmups, recs, strict=True):
            tg.start_soon(one, item, rec)
    if not any(r.success for r in recs):
        raise RuntimeError(f"all {len(recs)} warmup request(s) failed; first: {recs[0].error}")


async def _measure(
    client: InferenceHTTPClient,
    config: BenchConfig,
    items: Sequence[WorkItem],
    schedule: Sequence[float],
    sem: anyio.Semaphore | None,
    shard: _Shard,
    progress: Progress | None,
) -> list[RequestRecord]:
    records = [RequestRecord(index=it.index, process=shard.process, group=it.group) for it in items]
    total = len(items)
    counts = [0, 0]
    group_lock = anyio.Lock()

    async def one(item: WorkItem, rec: RequestRecord, slot_held: bool = False) -> None:
        if sem is not None and not slot_held:
            await sem.acquire()
        try:
            await _one_request(client, config, item, rec, t0)
        finally:
            if sem is not None:
                sem.release()
        counts[0] += 1
        counts[1] += not rec.success
        if progress is not None:
            progress(counts[0], counts[1], total)

    async def group(members: list[int]) -> None:
        # A group takes all its slots before any sample is sent, so its samples
        # start together; one group acquires at a time (no partial deadlock).
        if sem is not None:
            async with group_lock:
                for _ in members:
                    await sem.acquire()
        async with anyio.create_task_group() as g:
            for i in members:
                g.start_soon(one, items[i], records[i], True)

    shard.start_wall = time.time()
    t0 = _clock()
    cpu0 = time.process_time()
    async with anyio.create_task_group() as outer:
        outer.start_soon(_ticker, shard.loop_lags)
        async with anyio.create_task_group() as tg:
            for members in _units(items):
                at = schedule[members[0]]
                delay = t0 + at - _clock()
                if delay > 0:
                    await anyio.sleep(delay)
                released = _clock() - t0
                for i in members:
                    records[i].scheduled = schedule[i]
                    records[i].released = released
                if len(members) == 1:
                    tg.start_soon(one, items[members[0]], records[members[0]])
                else:
                    tg.start_soon(group, members)
        shard.duration = _clock() - t0
        outer.cancel_scope.cancel()
    shard.cpu_seconds = time.process_time() - cpu0
    return records


# ---------------------------------------------------------------------------------
# several client processes


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _units(items: Sequence[WorkItem]) -> list[list[int]]:
    """Indices dispatched together: an RL group's samples, else one request each."""
    units: list[list[int]] = []
    for i, it in enumerate(items):
        if it.group >= 0 and units and items[units[-1][0]].group == it.group:
            units[-1].append(i)
        else:
            units.append([i])
    return units


def split_plan(
    items: Sequence[WorkItem], schedule: Sequence[float], parts: int
) -> list[tuple[list[WorkItem], list[float]]]:
    """Deal dispatch units (requests, or whole RL groups) round robin over ``parts``."""
    out: list[tuple[list[WorkItem], list[float]]] = [([], []) for _ in range(parts)]
    for u, members in enumerate(_units(items)):
        its, sched = out[u % parts]
        for i in members:
            its.append(items[i])
            sched.append(schedule[i])
    return out


def _child_main(
    config: BenchConfig,
    items: list[WorkItem],
    schedule: list[float],
    process: int,
    max_concurrency: int | None,
    warmups: list[WorkItem],
    ready_q: Any,
    go_event: Any,
    start_value: Any,
    result_q: Any,
) -> None:
    parent = mp.parent_process()
    if parent is not None and parent.pid is not None:
        die_with_parent(parent.pid)  # a killed harness takes its client processes along

    async def go() -> float:
        ready_q.put(process)
        ok = await anyio.to_thread.run_sync(go_event.wait, 600.0)
        if not ok:
            raise TimeoutError("the parent never said go")
        return float(start_value.value)

    try:
        shard = anyio.run(
            lambda: _run_shard(
                config,
                items,
                schedule,
                process=process,
                max_concurrency=max_concurrency,
                warmups=warmups,
                fetch_info=process == 0,
                go=go,
            )
        )
        result_q.put(("ok", process, shard))
    except BaseException:
        result_q.put(("error", process, traceback.format_exc()))
        ready_q.put(process)  # never leave the parent waiting


def _run_processes(
    config: BenchConfig,
    items: list[WorkItem],
    schedule: list[float],
    status: Status | None = None,
) -> list[_Shard]:
    n = min(config.processes, len(_units(items)))
    parts = split_plan(items, schedule, n)
    ctx = mp.get_context("spawn")
    ready_q = ctx.Queue()
    result_q = ctx.Queue()
    go_event = ctx.Event()
    start_value = ctx.Value("d", 0.0)
    limits = _split(config.max_concurrency, n) if config.max_concurrency else [0] * n
    warm = warmup_items(items, config.warmup_requests)
    procs = []
    try:
        for i in range(n):
            p = ctx.Process(
                target=_child_main,
                args=(
                    config,
                    parts[i][0],
                    parts[i][1],
                    i,
                    max(1, limits[i]) if config.max_concurrency else None,
                    warm,
                    ready_q,
                    go_event,
                    start_value,
                    result_q,
                ),
                daemon=True,
                name=f"rlinf-bench-{i}",
            )
            p.start()
            procs.append(p)
        waited = time.monotonic()
        deadline = waited + config.ready_timeout + 120.0
        notice = waited + _READY_NOTICE_S
        ready = 0
        while ready < n:
            try:
                ready_q.get(timeout=0.5)
                ready += 1
            except queue.Empty:
                now = time.monotonic()
                if now > deadline or any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a client process failed to start") from None
                if status is not None and now >= notice:
                    status(
                        f"waiting for {n - ready} of {n} client process(es) to be ready "
                        f"({config.url} readiness and warm-up): {now - waited:.0f} s of "
                        f"--ready-timeout {config.ready_timeout:g} s"
                    )
                    notice = now + _READY_EVERY_S
        start_value.value = time.time() + 0.2
        go_event.set()
        shards: list[_Shard] = []
        errors: list[str] = []
        while len(shards) + len(errors) < n:
            try:
                status, idx, payload = result_q.get(timeout=1.0)
            except queue.Empty:
                if all(p.exitcode is not None for p in procs) and result_q.empty():
                    raise RuntimeError("client processes exited without a result") from None
                continue
            if status == "ok":
                shards.append(payload)
            else:
                errors.append(f"client process {idx}:\n{payload}")
        if errors:
            raise RuntimeError("\n".join(errors))
        return sorted(shards, key=lambda s: s.process)
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)


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


async def _run_on(
    config: BenchConfig,
    embedded: EmbeddedInfo | None,
    progress: Progress | None,
    status: Status | None = None,
) -> BenchResult:
    items, schedule = build_plan(config)
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
            )
        ]
    result = _result(config, shards, embedded)
    result.ray = ray_info
    return result


def _embedded_target(config: BenchConfig) -> EmbeddedTarget:
    return EmbeddedTarget(
        config.num_workers,
        config.fake_ttft_ms,
        config.fake_itl_ms,
        use_router=config.use_router,
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
        result = await _run_on(config, None, progress, status)
    else:
        target = _embedded_target(config)
        try:
            info = await anyio.to_thread.run_sync(target.start)
            result = await _run_on(
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
) -> SweepResult:
    """One run per ``max_concurrency`` (or ``request_rate``) value, one embedded target."""
    if bool(concurrencies) == bool(rates):
        raise ValueError("give exactly one of concurrencies or rates")
    config.check()
    if config.calibrate:
        raise BenchOptionError("--calibrate", "calibrates one run; not used with sweeps")
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
                point = await _run_on(base.model_copy(update=update), embedded, progress)
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
