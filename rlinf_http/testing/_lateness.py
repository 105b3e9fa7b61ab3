"""How late the fake server sends what its latency model schedules.

A streamed token is due at ``start + ttft_s + (k - 1) * itl_s`` (``start``: the
request admitted). When the server's event loop cannot keep up (too many
streams for the CPU it has), tokens leave later than due and in bursts: what a
client then measures is the server's lag, not its own error. The engine records,
after writing each step, how late the step was; ``app.stats["lateness"]`` (also
``GET /_fake/stats``) summarizes it.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

__all__ = ["LatenessRecorder", "summarize_lateness"]

#: samples kept per kind (the newest); counts, means and maxima cover all of them
_KEEP = 50_000


def summarize_lateness(
    samples_s: list[float], count: int, total_s: float, max_s: float
) -> dict[str, Any]:
    """``count``, ``mean_ms``, ``p50_ms``, ``p99_ms``, ``max_ms`` (percentiles: kept samples)."""
    if count == 0:
        return {"count": 0, "mean_ms": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(samples_s)

    def pct(q: float) -> float:
        if not ordered:
            return 0.0
        i = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return 1000.0 * ordered[i]

    return {
        "count": count,
        "mean_ms": 1000.0 * total_s / count,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": 1000.0 * max_s,
    }


class _Series:
    __slots__ = ("count", "max", "samples", "total")

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=_KEEP)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, late_s: float) -> None:
        late_s = max(0.0, late_s)
        self.samples.append(late_s)
        self.count += 1
        self.total += late_s
        if late_s > self.max:
            self.max = late_s

    def summary(self) -> dict[str, Any]:
        return summarize_lateness(list(self.samples), self.count, self.total, self.max)


class LatenessRecorder:
    """Lateness of first tokens and of later tokens (seconds late, >= 0)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first = _Series()
        self._later = _Series()

    def record(self, first: bool, late_s: float) -> None:
        with self._lock:
            (self._first if first else self._later).add(late_s)

    def reset(self) -> None:
        with self._lock:
            self._first = _Series()
            self._later = _Series()

    def snapshot(self) -> dict[str, Any]:
        """``{"first_token": {...}, "later_tokens": {...}}`` (see :func:`summarize_lateness`)."""
        with self._lock:
            return {"first_token": self._first.summary(), "later_tokens": self._later.summary()}
