"""``rlinf-http bench``: a benchmark harness for sglang routers and servers.

Library use::

    from rlinf_http.bench import BenchConfig, run_benchmark

    result = run_benchmark(BenchConfig(url="http://router:30000", num_prompts=200))
    print(result.metrics.output_throughput, result.metrics.ttft_ms.p99)

With ``url=None`` it benchmarks an embedded default: fake sglang workers behind
the real ``sglang-router`` (when installed). See ``docs/bench.md``. Needs the
``bench`` extra (numpy; rich/typer/matplotlib for the CLI, table and plots).

Modules (imports go one way, no cycle): ``config`` (:class:`BenchConfig`),
``results`` (:class:`BenchResult`, :class:`SweepResult`), ``workload``, ``rl``
and ``trace`` (what to send and when), ``shard`` (one client process: requests,
readiness, warm-up, measurement; several spawned processes), ``ray`` (shards on
Ray actors), ``calibrate``, ``metrics``, ``report`` (table, JSON, plot) and
``runner`` (the entry points; it also re-exports the config and result types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Calibration",
    "Goodput",
    "Metrics",
    "RLGroupMetrics",
    "RequestRecord",
    "ScheduleFidelity",
    "SweepResult",
    "async_run_benchmark",
    "compute_metrics",
    "run_benchmark",
    "run_sweep",
]

if TYPE_CHECKING:
    from .calibrate import Calibration
    from .config import BenchConfig
    from .metrics import Goodput, Metrics, RequestRecord, compute_metrics
    from .results import BenchResult, SweepResult
    from .rl import RLGroupMetrics
    from .runner import async_run_benchmark, run_benchmark, run_sweep
    from .trace import ScheduleFidelity

_LAZY = {
    "Calibration": "calibrate",
    "Goodput": "metrics",
    "RLGroupMetrics": "rl",
    "ScheduleFidelity": "trace",
    "Metrics": "metrics",
    "RequestRecord": "metrics",
    "compute_metrics": "metrics",
    "BenchConfig": "config",
    "BenchResult": "results",
    "SweepResult": "results",
    "async_run_benchmark": "runner",
    "run_benchmark": "runner",
    "run_sweep": "runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rlinf_http.bench' has no attribute {name!r}")
    import importlib

    try:
        mod = importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:  # numpy is the bench extra's
        from .._errors import MissingDependencyError

        raise MissingDependencyError(
            "rlinf_http.bench needs the 'bench' extra (rlinf-http[bench]; in a clone of "
            f"the repository: pip install -e '.[bench]') ({exc})"
        ) from exc
    return getattr(mod, name)
