"""One client process (a *shard*) of a run, and several of them.

One pooled client session per process, no retries (a failure is counted, not
hidden). Dispatch follows a precomputed absolute schedule; ``max_concurrency``
is a semaphore acquired *after* the scheduled time, so the time spent waiting
for it is reported as client queue time. Streamed responses are timed when their
bytes arrive, before they are parsed. A ticker task measures event-loop lag and
the process CPU time is read around the measured phase, so a run whose client
was the bottleneck says so. An ``rl-groups`` workload is dispatched one group at
a time: a group's samples are released together and take their
``max_concurrency`` slots together.

:func:`_run_shard` is what one process (or one Ray actor, ``rlinf_http.bench.ray``)
runs; :func:`_run_processes` runs several spawned processes that start at the
same instant; :func:`split_plan` deals the plan over them. Nothing here imports
the entry points (``rlinf_http.bench.runner``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from .._client import InferenceHTTPClient
from .._core.waits import LAST, last_reason
from .._errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    IncompleteStreamError,
    StreamErrorEvent,
)
from ..models.generate import FinishAbort
from ..models.rl import WeightVersionSpan, mix_of_spans
from ..testing._children import die_with_parent
from .config import BenchConfig, Progress, Status
from .metrics import RequestRecord
from .workload import (
    WorkItem,
    build_chat_kwargs,
    build_completion_kwargs,
    build_generate_kwargs,
    warmup_items,
)

__all__ = ["split_plan"]

_clock = time.perf_counter
#: ``during(t0, records, stop)`` runs alongside the measured phase (t0: its start on
#: ``time.perf_counter``) until it returns; ``stop`` is set when the load has ended
During = Callable[[float, Sequence[RequestRecord], anyio.Event], Awaitable[None]]
_LAG_TICK_S = 0.01
#: say what we wait for once readiness takes this long, then every _READY_EVERY_S
_READY_NOTICE_S = 2.0
_READY_EVERY_S = 5.0


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
            if meta.weight_versions is not None:  # sglang 0.5.23: on the final chunk
                rec.weight_versions = meta.weight_version_mix().versions
            if isinstance(meta.finish_reason, FinishAbort):
                rec.aborted = True
    rec.output_tokens = line.tokens
    _finish(rec, line.tokens)


def _finish(rec: RequestRecord, tokens: int) -> None:
    rec.tokens_received = tokens
    if rec.aborted:  # its partial output is discarded (a pause in abort mode...)
        rec.success = False
        rec.error_kind = "aborted"
        rec.error = f"aborted by the server after {tokens} token(s)"
    elif tokens == 0:
        _empty(rec)
    else:
        rec.success = True


def _openai_versions(rec: RequestRecord, response: Any) -> None:
    """sglang 0.5.23 puts ``{"weight_version", "weight_versions"}`` in the ``metadata`` of a
    whole (non-streamed) OpenAI response; typed or not, a dict or a model."""
    if isinstance(response, dict):
        meta = response.get("metadata")
    else:
        meta = getattr(response, "metadata", None) or (response.model_extra or {}).get("metadata")
    spans = meta.get("weight_versions") if isinstance(meta, dict) else None
    if spans is None and meta is not None and not isinstance(meta, dict):
        spans = getattr(meta, "weight_versions", None)
    if isinstance(spans, list):
        rec.weight_versions = mix_of_spans(
            [WeightVersionSpan.model_validate(x) for x in spans]
        ).versions


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
            _openai_versions(rec, chunk)
            rec.aborted |= any(c.finish_reason == "abort" for c in chunk.choices)
            if any(c.delta.content or c.delta.reasoning_content for c in chunk.choices):
                # continuous usage stats give exact token counts; else 1 per chunk
                reported = chunk.usage.completion_tokens if chunk.usage is not None else 0
                line.tokens_at(now, max(reported, line.tokens + 1))
    rec.output_tokens = usage.completion_tokens if usage is not None else line.tokens
    rec.prompt_tokens = usage.prompt_tokens if usage is not None else rec.expected_prompt_tokens
    _finish(rec, line.tokens)


async def _completion_stream(
    client: InferenceHTTPClient, body: dict[str, Any], rec: RequestRecord, t0: float
) -> None:
    kwargs = dict(body)
    prompt = kwargs.pop("prompt")
    model = kwargs.pop("model")
    kwargs.pop("stream", None)
    stream = await client.async_completion(prompt, model, stream=True, max_retries=0, **kwargs)
    line = _Timeline(rec, t0)
    usage: dict[str, Any] | None = None
    async with stream:
        async for chunk in stream:
            now = stream.arrived_at - t0  # when the bytes arrived, not when parsed
            rec.end = now
            reported = None
            if chunk.usage is not None:
                usage = {
                    "completion_tokens": chunk.usage.completion_tokens,
                    "prompt_tokens": chunk.usage.prompt_tokens,
                }
                reported = chunk.usage.completion_tokens
            _openai_versions(rec, chunk)
            rec.aborted |= any(c.finish_reason == "abort" for c in chunk.choices)
            if any(c.text for c in chunk.choices):
                line.tokens_at(now, max(reported or 0, line.tokens + 1))
    _finish_openai(rec, line.tokens, usage)


def _finish_openai(rec: RequestRecord, tokens: int, usage: dict[str, Any] | None) -> None:
    usage = usage or {}
    out = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    rec.output_tokens = out if isinstance(out, int) else tokens
    rec.prompt_tokens = prompt if isinstance(prompt, int) else rec.expected_prompt_tokens
    _finish(rec, tokens)


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
        if out.meta_info.weight_versions is not None:
            rec.weight_versions = out.meta_info.weight_version_mix().versions
        rec.aborted = isinstance(out.meta_info.finish_reason, FinishAbort)
    elif endpoint == "completions":
        body = await client.async_post("/v1/completions", kwargs)
        rec.end = _clock() - t0
        usage = body.get("usage") if isinstance(body, dict) else None
        choices = body.get("choices") if isinstance(body, dict) else None
        has_text = isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("text") for c in choices
        )
        _openai_versions(rec, body)
        rec.aborted = isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("finish_reason") == "abort" for c in choices
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
        _openai_versions(rec, chat)
        rec.aborted = any(c.finish_reason == "abort" for c in chat.choices)
        if chat.usage is not None:
            rec.output_tokens = chat.usage.completion_tokens
            rec.prompt_tokens = chat.usage.prompt_tokens
        elif chat.choices and chat.choices[0].message.content:
            rec.output_tokens = rec.expected_output_tokens
            rec.prompt_tokens = rec.expected_prompt_tokens
    rec.ttft = rec.e2e  # non-streaming: the first token arrives with the last (sglang)
    _finish(rec, max(rec.output_tokens, 0))


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
            item, model=config.model or "default", stream=config.stream, extra=extra
        )
    else:
        kwargs = build_chat_kwargs(
            item, model=config.model or "default", stream=config.stream, extra=extra
        )
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
    if rec.end < rec.start or not (rec.success or rec.aborted):
        rec.end = max(rec.end, _clock() - t0)  # an abort ends when its last chunk arrived
    if not rec.success:
        rec.ttft = None
        if not rec.aborted:  # an aborted request's tokens did arrive (weight-update metrics)
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
    during: During | None = None,
    direct_urls: Sequence[str] = (),
) -> _Shard:
    """One client process's run; with ``direct_urls`` the measured requests go to
    these servers (dispatch units round robin) instead of ``config.url``."""
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
    direct = [client.copy(base_url=u) for u in direct_urls]
    try:
        if config.ready_timeout > 0:
            shard.target_kind = await _wait_ready(client, config, status)
        if config.model is None and config.endpoint != "generate":
            config = config.model_copy(update={"model": await _served_model(client)})
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
        shard.records = await _measure(
            direct or [client], config, items, schedule, sem, shard, progress, during
        )
    finally:
        with anyio.CancelScope(shield=True):
            for c in direct:
                await c.aclose()
            await client.aclose()
    return shard


async def _served_model(client: InferenceHTTPClient) -> str:
    """The model name chat/completions send without ``--model``: the first one
    ``GET /v1/models`` lists (smg routes by it; a server accepts any name), else
    ``"default"``."""
    with contextlib.suppress(Exception):
        names = [card.id for card in (await client.async_models()).data]
        if names:
            return names[0]
    return "default"


async def _wait_ready(
    client: InferenceHTTPClient, config: BenchConfig, status: Status | None
) -> str:
    """Wait for readiness; after a moment, say every few seconds what we wait for and why.

    The client's wait stops at once on what waiting cannot fix (a name that does
    not resolve, 401/403...); its timeout names the last probe's failure, which
    each notice repeats (``connection refused``, ``HTTP 503 ...``).
    """
    if status is None:
        return await client.async_wait_until_ready(timeout=config.ready_timeout)
    t0 = _clock()
    deadline = t0 + config.ready_timeout
    notice = t0 + _READY_NOTICE_S
    while True:
        step = max(min(notice, deadline) - _clock(), 0.05)
        try:
            return await client.async_wait_until_ready(timeout=step)
        except APITimeoutError as exc:
            now = _clock()
            if now >= deadline:
                raise APITimeoutError(
                    f"{config.url} was not ready within --ready-timeout "
                    f"{config.ready_timeout:g} s{LAST}{last_reason(exc)}"
                ) from None
            status(
                f"waiting for {config.url} to become ready (GET /readiness on a router, "
                f"/health on a server): {now - t0:.0f} s of --ready-timeout "
                f"{config.ready_timeout:g} s{LAST}{last_reason(exc)}"
            )
            notice = now + _READY_EVERY_S


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
    clients: Sequence[InferenceHTTPClient],
    config: BenchConfig,
    items: Sequence[WorkItem],
    schedule: Sequence[float],
    sem: anyio.Semaphore | None,
    shard: _Shard,
    progress: Progress | None,
    during: During | None = None,
) -> list[RequestRecord]:
    records = [RequestRecord(index=it.index, process=shard.process, group=it.group) for it in items]
    total = len(items)
    counts = [0, 0]
    group_lock = anyio.Lock()

    async def one(
        client: InferenceHTTPClient, item: WorkItem, rec: RequestRecord, slot_held: bool = False
    ) -> None:
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

    async def group(client: InferenceHTTPClient, members: list[int]) -> None:
        # A group takes all its slots before any sample is sent, so its samples
        # start together; one group acquires at a time (no partial deadlock).
        if sem is not None:
            async with group_lock:
                for _ in members:
                    await sem.acquire()
        async with anyio.create_task_group() as g:
            for i in members:
                g.start_soon(one, client, items[i], records[i], True)

    shard.start_wall = time.time()
    t0 = _clock()
    cpu0 = time.process_time()
    stop, stopped = anyio.Event(), anyio.Event()

    async def run_during(task: During) -> None:
        try:
            await task(t0, records, stop)
        finally:
            stopped.set()

    async with anyio.create_task_group() as outer:
        outer.start_soon(_ticker, shard.loop_lags)
        if during is not None:
            outer.start_soon(run_during, during)
        else:
            stopped.set()
        async with anyio.create_task_group() as tg:
            for u, members in enumerate(_units(items)):
                client = clients[u % len(clients)]
                at = schedule[members[0]]
                delay = t0 + at - _clock()
                if delay > 0:
                    await anyio.sleep(delay)
                released = _clock() - t0
                for i in members:
                    records[i].scheduled = schedule[i]
                    records[i].released = released
                if len(members) == 1:
                    tg.start_soon(one, client, items[members[0]], records[members[0]])
                else:
                    tg.start_soon(group, client, members)
        shard.duration = _clock() - t0
        stop.set()  # a task running alongside (weight updates) finishes what it started
        await stopped.wait()
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
                status=lambda msg: ready_q.put(("status", process, msg)),
            )
        )
        result_q.put(("ok", process, shard))
    except BaseException as exc:
        summary = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result_q.put(("error", process, f"{summary}\n{traceback.format_exc()}"))
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
                item = ready_q.get(timeout=0.5)
                if isinstance(item, tuple):  # a child's notice: it says why it waits
                    if status is not None:
                        status(f"client process {item[1]}: {item[2]}")
                    notice = time.monotonic() + _READY_EVERY_S
                    continue
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
                outcome, idx, payload = result_q.get(timeout=1.0)
            except queue.Empty:
                if all(p.exitcode is not None for p in procs) and result_q.empty():
                    raise RuntimeError("client processes exited without a result") from None
                continue
            if outcome == "ok":
                shards.append(payload)
            else:
                errors.append(f"client process {idx}: {payload}")
        if errors:
            raise RuntimeError("\n".join(errors))
        return sorted(shards, key=lambda s: s.process)
    finally:
        for p in procs:
            p.join(timeout=5.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
