"""Trace replay (mooncake format) and schedule fidelity, without I/O but the file read.

A trace is JSON Lines, one request per line::

    {"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 48]}

``timestamp`` is the arrival time in milliseconds (any origin: the first
request is sent at t=0), ``input_length`` / ``output_length`` are tokens and
the optional ``hash_ids`` name the prompt's blocks of ``block_size`` tokens
(mooncake uses 512): requests that share a hash id share that block of their
prompt, so prefix caching sees the trace's sharing. Requests are replayed at
``timestamp / speedup``.

Schedule fidelity says how late each request was sent: ``start - scheduled``
(the send lateness, including any ``--max-concurrency`` wait) and
``released - scheduled`` (the dispatcher's own lateness).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .metrics import Distribution, RequestRecord, distribution
from .workload import TOKEN_ID_RANGE, WorkItem, words

__all__ = [
    "ScheduleFidelity",
    "TraceFormatError",
    "TraceRow",
    "load_trace",
    "schedule_fidelity",
    "trace_schedule",
    "trace_workload",
]

#: mooncake's block size (tokens per hash id)
DEFAULT_BLOCK_SIZE = 512
#: fidelity thresholds reported as "sent within X ms of schedule"
ON_TIME_MS = (1.0, 10.0, 100.0)


class TraceFormatError(ValueError):
    """A trace line is not a mooncake request (the message names file and line)."""


@dataclass(slots=True)
class TraceRow:
    """One request of a trace."""

    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: list[int] = field(default_factory=list)


def _int(row: dict[str, object], key: str, where: str, minimum: int) -> int:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TraceFormatError(f"{where}: {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def load_trace(path: str | Path, limit: int | None = None) -> list[TraceRow]:
    """The rows of a mooncake JSONL trace (blank lines skipped), sorted by timestamp."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"trace file not found: {p}")
    rows: list[TraceRow] = []
    with p.open("r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceFormatError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TraceFormatError(f"{where}: expected a JSON object")
            ts = row.get("timestamp")
            if (
                isinstance(ts, bool)
                or not isinstance(ts, (int, float))
                or not math.isfinite(ts)
                or ts < 0
            ):
                raise TraceFormatError(f"{where}: 'timestamp' (ms) must be a number >= 0")
            hashes = row.get("hash_ids", [])
            if not isinstance(hashes, list) or not all(
                isinstance(h, int) and not isinstance(h, bool) for h in hashes
            ):
                raise TraceFormatError(f"{where}: 'hash_ids' must be a list of integers")
            rows.append(
                TraceRow(
                    float(ts),
                    _int(row, "input_length", where, 1),
                    _int(row, "output_length", where, 1),
                    list(hashes),
                )
            )
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise TraceFormatError(f"{p}: the trace has no requests")
    rows.sort(key=lambda r: r.timestamp_ms)
    return rows


def trace_schedule(rows: Sequence[TraceRow], speedup: float = 1.0) -> list[float]:
    """Send times in seconds: ``(timestamp - first timestamp) / 1000 / speedup``."""
    if not speedup > 0 or math.isinf(speedup):
        raise ValueError(f"--trace-speedup must be a positive number, got {speedup}")
    if not rows:
        return []
    t0 = rows[0].timestamp_ms
    return [(r.timestamp_ms - t0) / 1000.0 / speedup for r in rows]


def trace_workload(
    rows: Sequence[TraceRow],
    *,
    block_size: int = DEFAULT_BLOCK_SIZE,
    seed: int = 42,
    as_text: bool = False,
) -> list[WorkItem]:
    """One item per row; the prompt's blocks come from its ``hash_ids``.

    Block ``h`` is the same ``block_size`` token ids wherever it appears; tokens
    beyond the hashed blocks are unique to the request. The prompt is cut to
    ``input_length``.
    """
    if block_size < 1:
        raise ValueError(f"--trace-block-size must be >= 1, got {block_size}")
    lo, hi = TOKEN_ID_RANGE
    blocks: dict[int, list[int]] = {}
    rng = np.random.default_rng(seed)
    items: list[WorkItem] = []
    for i, row in enumerate(rows):
        ids: list[int] = []
        for h in row.hash_ids:
            if len(ids) >= row.input_length:
                break
            block = blocks.get(h)
            if block is None:
                block_rng = np.random.default_rng([seed, h & 0xFFFFFFFF, h >> 32 & 0xFFFFFFFF])
                block = [int(x) for x in block_rng.integers(lo, hi, size=block_size)]
                blocks[h] = block
            ids.extend(block)
        if len(ids) < row.input_length:
            ids.extend(int(x) for x in rng.integers(lo, hi, size=row.input_length - len(ids)))
        ids = ids[: row.input_length]
        if as_text:
            items.append(WorkItem(i, row.input_length, row.output_length, text=words(ids)))
        else:
            items.append(WorkItem(i, row.input_length, row.output_length, input_ids=ids))
    return items


class ScheduleFidelity(BaseModel):
    """How closely the sends followed the schedule (times in ms)."""

    requests: int = 0
    #: start - scheduled: the request's send lateness (includes a --max-concurrency wait)
    send_lateness_ms: Distribution = Field(default_factory=Distribution)
    #: released - scheduled: the dispatcher's own lateness
    dispatch_lateness_ms: Distribution = Field(default_factory=Distribution)
    #: fraction of requests sent within 1, 10 and 100 ms of their time (keys "1ms"...)
    on_time: dict[str, float] = Field(default_factory=dict)
    #: scheduled span / actual send span (1.0 = the schedule's pace was kept)
    pace: float = 0.0


def schedule_fidelity(records: Sequence[RequestRecord]) -> ScheduleFidelity:
    """Send lateness of every request against its scheduled time."""
    if not records:
        return ScheduleFidelity()
    late = [r.queue_time for r in records]
    n = len(records)
    on_time = {f"{t:g}ms": sum(x * 1000.0 <= t for x in late) / n for t in ON_TIME_MS}
    sched_span = max(r.scheduled for r in records) - min(r.scheduled for r in records)
    send_span = max(r.start for r in records) - min(r.start for r in records)
    return ScheduleFidelity(
        requests=n,
        send_lateness_ms=distribution(late, percentiles=(50.0, 90.0, 99.0)),
        dispatch_lateness_ms=distribution([r.lateness for r in records]),
        on_time=on_time,
        pace=sched_span / send_span if send_span > 0 else 1.0,
    )
