"""Reporting: the rich table, strict-JSON output files and sweep plots.

JSON keys match sglang's ``bench_serving`` where they overlap
(``request_throughput``, ``mean_ttft_ms``, ``p99_itl_ms``, ``concurrency``...);
infinities are written as the string ``"inf"`` (as vLLM does) and NaN as
``null``, so every file is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .metrics import PERCENTILE_METRICS, Distribution, Metrics
from .results import BenchResult, SweepResult
from .update_report import render_comparison, render_updates, simple_table, updates_json

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = [
    "DEFAULT_RESULTS_DIR",
    "THROUGHPUT_NOTE",
    "append_jsonl",
    "default_sweep_paths",
    "plot_sweep",
    "print_result",
    "render_result",
    "render_sweep",
    "request_details",
    "result_to_json",
    "saturation_warning",
    "strict_json",
    "sweep_figure",
    "sweep_point_to_json",
    "sweep_to_json",
    "write_json",
]

#: where ``rlinf-http bench`` writes what it was not told where to write (a sweep's
#: JSONL and PNG), relative to the working directory; created on demand
DEFAULT_RESULTS_DIR = "bench-results"

_LATENCY = (
    ("e2e_latency", "e2e_latency_ms"),
    ("ttft", "ttft_ms"),
    ("tpot", "tpot_ms"),
    ("itl", "itl_ms"),
    ("client_queue", "client_queue_ms"),
)


#: printed under the result table: two rates that are easy to confuse
THROUGHPUT_NOTE = (
    "Request throughput = completed requests / benchmark duration (first send to last "
    "response): what the server delivered. Achieved request rate = requests sent per "
    "second between the first and the last send: what the client offered; compare it "
    "with the traffic request rate (at rate inf it only shows how fast "
    "--max-concurrency slots freed up)."
)


def strict_json(value: Any) -> Any:
    """``value`` with ``inf`` -> ``"inf"`` and NaN -> ``None`` (recursively)."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _dist_keys(name: str, d: Distribution) -> dict[str, float]:
    out = {
        f"mean_{name}_ms": d.mean,
        f"median_{name}_ms": d.median,
        f"std_{name}_ms": d.std,
        f"p90_{name}_ms": d.p90,
        f"p95_{name}_ms": d.p95,
        f"p99_{name}_ms": d.p99,
        f"max_{name}_ms": d.max,
    }
    return out


def request_details(result: BenchResult) -> dict[str, list[Any]]:
    """Per-request arrays (``--output-details``), in request order.

    bench_serving's ``input_lens, output_lens, ttfts, itls, errors`` plus
    ``start_times`` and ``scheduled_times`` (s from the run start, vLLM's
    ``start_times``); ``ttfts``/``itls`` in seconds as bench_serving writes them,
    ``ttfts`` 0 for failures, ``itls`` the per-token gaps.
    """
    from .metrics import itl_per_token

    recs = result.records
    return {
        "input_lens": [r.prompt_tokens for r in recs],
        "output_lens": [r.output_tokens for r in recs],
        "ttfts": [r.ttft if r.ttft is not None else 0.0 for r in recs],
        "itls": [itl_per_token(r) for r in recs],
        "e2e_latencies": [r.e2e for r in recs],
        "start_times": [r.start for r in recs],
        "scheduled_times": [r.scheduled for r in recs],
        "errors": [r.error for r in recs],
        "groups": [r.group for r in recs],
    }


def result_to_json(result: BenchResult, *, details: bool = False) -> dict[str, Any]:
    """One run as a flat, bench_serving-compatible JSON object (strict).

    ``details`` adds the per-request arrays of :func:`request_details`.
    """
    c, m = result.config, result.metrics
    out: dict[str, Any] = {
        "date": result.date,
        "rlinf_http_version": result.version,
        "command_line": result.command_line,
        "backend": "rlinf-http",
        "endpoint": c.endpoint,
        "stream": c.stream,
        "dataset_name": c.dataset,
        "num_prompts": len(result.records) or c.num_prompts,
        "seed": c.seed,
        "request_rate": c.request_rate,
        "burstiness": c.burstiness,
        "max_concurrency": c.max_concurrency,
        "random_input_len": c.random_input_len,
        "random_output_len": c.random_output_len,
        "random_range_ratio": c.random_range_ratio,
        "processes": c.processes,
        "target": result.target,
        "target_kind": result.target_kind,
        "embedded": result.embedded.model_dump() if result.embedded else None,
        "server_info": result.server_info,
        "duration": m.duration,
        "completed": m.completed,
        "failed": m.failed,
        "error_breakdown": m.error_breakdown,
        "error_examples": m.error_examples,
        "total_input_tokens": m.total_input_tokens,
        "total_output_tokens": m.total_output_tokens,
        "request_throughput": m.request_throughput,
        "input_throughput": m.input_throughput,
        "output_throughput": m.output_throughput,
        "total_throughput": m.total_throughput,
        "max_output_tokens_per_s": m.max_output_tokens_per_s,
        "max_concurrent_requests": m.max_concurrent_requests,
        "concurrency": m.concurrency,
        "achieved_request_rate": m.achieved_request_rate,
    }
    for name, attr in _LATENCY:
        out.update(_dist_keys(name, getattr(m, attr)))
    for name in c.percentile_metrics:  # vLLM's names: {mean,median,std,p<p>}_<metric>_ms
        d = getattr(m, PERCENTILE_METRICS[name])
        out.update({f"mean_{name}_ms": d.mean, f"median_{name}_ms": d.median})
        out[f"std_{name}_ms"] = d.std
        out.update({f"{k}_{name}_ms": v for k, v in d.percentiles.items()})
    if m.goodput is not None:
        g = m.goodput
        out.update(
            {
                "goodput_slos_ms": g.slos_ms,
                "request_goodput": g.request_goodput,
                "good_requests": g.good_requests,
                "slo_attainment": g.slo_attainment,
                "slo_attainment_by_metric": g.slo_attainment_by_metric,
            }
        )
    if result.rl_groups is not None:
        out["rl_groups"] = result.rl_groups.model_dump()
    if result.schedule is not None:
        out["schedule_fidelity"] = result.schedule.model_dump()
    if result.calibration is not None:
        out["calibration"] = result.calibration.model_dump()
    if result.ray is not None:
        out["ray"] = result.ray
    out.update(updates_json(result))
    if result.direct is not None:  # --compare-direct: the same load, straight to the workers
        out["direct"] = result_to_json(result.direct, details=details)
    out.update(
        {
            "client_saturated": m.client_saturated,
            "client_cpu_seconds": m.client_cpu_seconds,
            "client_cpu_ms_per_request": m.client_cpu_ms_per_request,
            "client_cpu_utilization": m.client_cpu_utilization,
            "client_processes": [h.model_dump() for h in m.client],
            "warnings": m.warnings,
            "notes": m.notes,
            "config": c.model_dump(),
        }
    )
    if details:
        out.update(request_details(result))
    return dict(strict_json(out))


def sweep_to_json(sweep: SweepResult) -> dict[str, Any]:
    """A sweep as one strict-JSON object with every point."""
    first = sweep.points[0] if sweep.points else None
    return dict(
        strict_json(
            {
                "date": first.date if first else "",
                "rlinf_http_version": first.version if first else "",
                "command_line": first.command_line if first else "",
                "sweep_parameter": sweep.parameter,
                "sweep_values": sweep.values,
                "points": [result_to_json(p) for p in sweep.points],
            }
        )
    )


def sweep_point_to_json(
    point: BenchResult,
    parameter: str,
    value: float,
    *,
    sweep_id: str = "",
    values: Sequence[float] = (),
    details: bool = False,
) -> dict[str, Any]:
    """One sweep point as one JSONL object: :func:`result_to_json` plus the sweep keys.

    ``sweep_parameter`` (``max_concurrency`` or ``request_rate``), ``sweep_value``,
    ``sweep_values`` (the whole sweep) and ``sweep_id`` (the same on every line of
    one sweep), so sweeps and plain runs can share one appended file.
    """
    out = result_to_json(point, details=details)
    out.update(
        {
            "sweep_id": sweep_id,
            "sweep_parameter": parameter,
            "sweep_value": value,
            "sweep_values": list(values),
        }
    )
    return dict(strict_json(out))


def default_sweep_paths(
    output_file: str | os.PathLike[str] | None,
    plot_file: str | os.PathLike[str] | None,
    stamp: str,
) -> tuple[Path, Path]:
    """Where a sweep appends its points and writes its plot.

    Explicit paths are used as given. Without ``output_file`` the points go to
    ``bench-results/sweep-<stamp>.jsonl``; without ``plot_file`` the PNG goes next
    to the JSONL as ``<stem>-sweep-<stamp>.png`` (``sweep-<stamp>.png`` by default),
    so a later sweep never overwrites an earlier plot.
    """
    if output_file is None:
        out = Path(DEFAULT_RESULTS_DIR) / f"sweep-{stamp}.jsonl"
        png = out.with_suffix(".png")
    else:
        out = Path(output_file)
        png = out.parent / f"{out.stem}-sweep-{stamp}.png"
    return out, Path(plot_file) if plot_file is not None else png


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write strict JSON (raises on any NaN/inf left)."""
    text = json.dumps(strict_json(data), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def append_jsonl(path: str | os.PathLike[str], data: Any) -> None:
    """Append ``data`` as one line of strict JSON (bench_serving's JSONL: runs accumulate).

    The file's directory is created when missing.
    """
    line = json.dumps(strict_json(data), allow_nan=False, separators=(",", ":"))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def saturation_warning(metrics: Metrics) -> str | None:
    """The loud warning text for a saturated client, or None."""
    if not metrics.client_saturated:
        return None
    lines = [
        "WARNING: THE CLIENT WAS SATURATED - these numbers describe the benchmark client, "
        "not the server.",
        *(f"  - {w}" for w in metrics.warnings),
        "  Use --processes N (several client processes), lower --max-concurrency / "
        "--request-rate, or run the client on a machine with free cores.",
    ]
    return "\n".join(lines)


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def render_result(result: BenchResult) -> RenderableType:
    """The result table (sglang's labels and sections, plus failures and client health)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    c, m = result.config, result.metrics
    table = Table(title="Serving Benchmark Result", show_header=False, box=None, title_style="bold")
    table.add_column("metric", style="cyan", no_wrap=True)
    table.add_column("value", justify="right", overflow="fold")

    def row(label: str, value: object) -> None:
        table.add_row(label, str(value))

    def section(title: str) -> None:
        table.add_row(Text(f"---- {title} ----", style="bold"), "")

    target = result.target
    if result.embedded is not None:
        e = result.embedded
        behind = f"behind {e.gateway or 'sglang-router'}" if e.router else "direct (no router)"
        target = f"{target} (embedded: {e.num_workers} fake workers {behind})"
    row("Backend:", f"rlinf-http /{c.endpoint} ({'stream' if c.stream else 'no stream'})")
    row("Target:", target)
    row("Traffic request rate:", "inf" if math.isinf(c.request_rate) else c.request_rate)
    row("Max request concurrency:", c.max_concurrency or "not set")
    row("Successful requests:", m.completed)
    row("Failed requests:", m.failed)
    row("Benchmark duration (s):", _fmt(m.duration))
    row("Total input tokens:", m.total_input_tokens)
    row("Total generated tokens:", m.total_output_tokens)
    row("Request throughput (req/s):", _fmt(m.request_throughput))
    row("Input token throughput (tok/s):", _fmt(m.input_throughput))
    row("Output token throughput (tok/s):", _fmt(m.output_throughput))
    row("Peak output token throughput (tok/s):", _fmt(m.max_output_tokens_per_s))
    row("Peak concurrent requests:", m.max_concurrent_requests)
    row("Total token throughput (tok/s):", _fmt(m.total_throughput))
    row("Concurrency:", _fmt(m.concurrency))
    row("Achieved request rate (req/s):", _fmt(m.achieved_request_rate))
    if m.goodput is not None:
        g = m.goodput
        section("Goodput")
        row("SLOs (ms):", ", ".join(f"{k} <= {v:g}" for k, v in g.slos_ms.items()))
        row("Request goodput (req/s):", _fmt(g.request_goodput))
        row("SLO attainment (%):", _fmt(100 * g.slo_attainment))
        for k, v in g.slo_attainment_by_metric.items():
            row(f"{k.upper()} SLO attainment (%):", _fmt(100 * v))
    if m.error_breakdown:
        section("Errors")
        for kind, n in m.error_breakdown.items():
            example = m.error_examples.get(kind, "")
            row(f"{kind}:", f"{n}  e.g. {example[:120]}" if example else n)
    blocks: Sequence[tuple[str, str, str, Distribution, bool]] = (
        ("e2el", "End-to-End Latency", "E2E Latency", m.e2e_latency_ms, False),
        ("ttft", "Time to First Token", "TTFT", m.ttft_ms, False),
        ("tpot", "Time per Output Token (excl. 1st token)", "TPOT", m.tpot_ms, False),
        ("itl", "Inter-Token Latency", "ITL", m.itl_ms, True),
    )
    for key, title, short, d, with_max in blocks:
        if key not in c.percentile_metrics:
            continue
        section(title)
        row(f"Mean {short} (ms):", _fmt(d.mean))
        row(f"Median {short} (ms):", _fmt(d.median))
        if d.percentiles:
            for k, v in d.percentiles.items():
                row(f"{k.upper()} {short} (ms):", _fmt(v))
        else:
            row(f"P90 {short} (ms):", _fmt(d.p90))
            row(f"P95 {short} (ms):", _fmt(d.p95))
            row(f"P99 {short} (ms):", _fmt(d.p99))
        if with_max:
            row(f"Max {short} (ms):", _fmt(d.max))
    rl = result.rl_groups
    if rl is not None:
        section("RL Rollout Groups")
        row("Groups x samples:", f"{rl.groups} x {rl.group_size}")
        row("Complete groups:", rl.complete_groups)
        row("Batch makespan (ms):", _fmt(rl.batch_makespan_ms))
        row("Batch output throughput (tok/s):", _fmt(rl.batch_output_throughput))
        for k, v in rl.group_makespan_ms.percentiles.items():
            row(f"{k.upper()} group makespan (ms):", _fmt(v))
        row("Max group makespan (ms):", _fmt(rl.group_makespan_ms.max))
        row("Median straggler ratio (max/median):", _fmt(rl.straggler_ratio.median))
        row("P99 straggler ratio:", _fmt(rl.straggler_ratio.percentiles.get("p99", 0.0)))
    sched = result.schedule
    if sched is not None:
        section("Schedule Fidelity (sent - scheduled)")
        for k, v in sched.send_lateness_ms.percentiles.items():
            row(f"{k.upper()} send lateness (ms):", _fmt(v))
        row("Max send lateness (ms):", _fmt(sched.send_lateness_ms.max))
        for k, v in sched.on_time.items():
            row(f"Sent within {k} (%):", _fmt(100 * v))
        row("Pace (scheduled / actual span):", _fmt(sched.pace, 3))
    section("Client Queue (scheduled -> sent)")
    row("Mean queue time (ms):", _fmt(m.client_queue_ms.mean))
    row("Median queue time (ms):", _fmt(m.client_queue_ms.median))
    row("P99 queue time (ms):", _fmt(m.client_queue_ms.p99))
    section("Client CPU")
    row("Client processes:", len(m.client))
    row("CPU time (s):", _fmt(m.client_cpu_seconds))
    row("CPU per request (ms):", _fmt(m.client_cpu_ms_per_request, 3))
    row("Peak process CPU (% of one core):", _fmt(100 * m.client_cpu_utilization, 1))
    lag = max((h.loop_lag_ms.p99 for h in m.client), default=0.0)
    late = max((h.dispatch_lateness_ms.p99 for h in m.client), default=0.0)
    row("Event-loop lag P99 (ms):", _fmt(lag))
    row("Dispatch lateness P99 (ms):", _fmt(late))
    row("Client saturated:", "YES" if m.client_saturated else "no")
    cal = result.calibration
    if cal is not None:
        section(
            f"Calibration (fake server: TTFT {cal.fake_ttft_ms:g} ms, ITL {cal.fake_itl_ms:g} ms)"
        )
        for label, err in (("TTFT", cal.ttft), ("ITL", cal.itl), ("TPOT", cal.tpot)):
            row(
                f"{label} error mean / P99 (ms):",
                f"{err.mean_error_ms:+.2f} / {err.p99_error_ms:+.2f}",
            )
        row("Client CPU headroom (%):", _fmt(100 * cal.client_cpu_headroom, 1))
        server_late = cal.server_lateness
        if server_late is not None:
            row(
                "Fake server late, first / later tokens (ms):",
                f"{server_late.first_token.mean_ms:.2f} / {server_late.later_tokens.mean_ms:.2f}",
            )
    if result.ray is not None:
        section("Ray")
        row("Actors / nodes:", f"{result.ray['actors']} / {len(result.ray['nodes'])}")
    parts: list[RenderableType] = [table, Text(THROUGHPUT_NOTE, style="dim")]
    if result.weight_updates is not None:
        parts.append(render_updates(result))
    if result.direct is not None:
        parts.append(render_comparison(result))
    for note in m.notes:
        parts.append(Text(f"Note: {note}", style="dim"))
    if result.embedded is not None and result.embedded.note:
        parts.append(Text(result.embedded.note, style="yellow"))
    if cal is not None and cal.verdict:
        parts.append(Text(cal.verdict, style="green" if cal.valid else "bold red"))
    warning = saturation_warning(m)
    if warning is not None:
        parts.append(Panel(Text(warning, style="bold red"), border_style="red"))
    return Group(*parts)


def _sweep_columns(sweep: SweepResult) -> list[tuple[str, list[str]]]:
    name = "concurrency" if sweep.parameter == "max_concurrency" else "rate\n(req/s)"
    cols: list[tuple[str, list[str]]] = [
        (name, []),
        ("ok", []),
        ("failed", []),
        ("req/s", []),
        ("out\ntok/s", []),
        ("TTFT\np50 ms", []),
        ("TTFT\np99 ms", []),
        ("E2E\np50 ms", []),
        ("E2E\np99 ms", []),
        ("client", []),
    ]
    for v, p in zip(sweep.values, sweep.points, strict=True):
        m = p.metrics
        row = (
            f"{v:g}",
            str(m.completed),
            str(m.failed),
            f"{m.request_throughput:.2f}",
            f"{m.output_throughput:.0f}",
            f"{m.ttft_ms.median:.1f}",
            f"{m.ttft_ms.p99:.1f}",
            f"{m.e2e_latency_ms.median:.1f}",
            f"{m.e2e_latency_ms.p99:.1f}",
            "SATURATED" if m.client_saturated else "ok",
        )
        for (_, values), cell in zip(cols, row, strict=True):
            values.append(cell)
    return cols


def render_sweep(sweep: SweepResult, width: int = 80) -> RenderableType:
    """The sweep table with every header and value whole within ``width`` columns.

    Columns have the width of their longest value or header line; when they do
    not fit side by side they are split into several tables, each starting with
    the swept value (a narrow terminal or a pipe: rich's 80 columns, or
    ``COLUMNS``).
    """
    from rich.console import Group
    from rich.text import Text

    cols = _sweep_columns(sweep)
    need = [max(len(x) for x in [*header.splitlines(), *values]) for header, values in cols]
    gap = 2  # the column divider and one space of padding (collapsed)
    groups: list[list[int]] = [[0]]
    used = need[0]
    for i in range(1, len(cols)):
        if used + gap + need[i] > width and len(groups[-1]) > 1:
            groups.append([0])
            used = need[0]
        groups[-1].append(i)
        used += gap + need[i]
    tables: list[RenderableType] = []
    for n, group in enumerate(groups):
        table = simple_table("Sweep" if n == 0 else None)
        for i in group:
            table.add_column(cols[i][0], justify="right", width=need[i], no_wrap=True)
        for r in range(len(sweep.points)):
            cells: list[str | Text] = []
            for i in group:
                cell = cols[i][1][r]
                cells.append(Text(cell, style="bold red") if cell == "SATURATED" else cell)
            table.add_row(*cells)
        if tables:
            tables.append(Text(""))
        tables.append(table)
    return Group(*tables)


def print_result(result: BenchResult, console: Console | None = None) -> None:
    """Print :func:`render_result` (to stdout by default)."""
    from rich.console import Console

    (console or Console()).print(render_result(result))


#: the sweep plot's panels: (title, y label, [(series label, value of a point)])
_PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("Output throughput", "output tokens / s", (("output tok/s", "output_throughput"),)),
    ("Total throughput (input + output)", "tokens / s", (("total tok/s", "total_throughput"),)),
    ("Request throughput", "requests / s", (("completed / duration", "request_throughput"),)),
    ("Time to first token", "ms", (("p50", "ttft_ms.median"), ("p99", "ttft_ms.p99"))),
    (
        "End-to-end latency",
        "ms",
        (("p50", "e2e_latency_ms.median"), ("p99", "e2e_latency_ms.p99")),
    ),
    ("Failed requests", "requests", (("failed", "failed"),)),
)


def _metric(m: Metrics, path: str) -> float:
    value: Any = m
    for part in path.split("."):
        value = getattr(value, part)
    return float(value)


def sweep_figure(sweep: SweepResult) -> Any:
    """The sweep plot as a matplotlib ``Figure`` (the caller closes it).

    One panel per quantity, each with its own y axis and unit; x ticks at the
    swept values (a log x axis when they span 10x or more); a failed point is
    marked with a red x and its count, a point where the client was saturated
    with a red band (its numbers describe the client, not the server).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    xs = [float(v) for v in sweep.values]
    ms = [p.metrics for p in sweep.points]
    label = "max concurrency" if sweep.parameter == "max_concurrency" else "request rate (req/s)"
    fig, grid = plt.subplots(2, 3, figsize=(15, 8))
    log_x = len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 10
    failed = [(x, m) for x, m in zip(xs, ms, strict=True) if m.failed]
    saturated = [x for x, m in zip(xs, ms, strict=True) if m.client_saturated]
    for ax, (title, unit, series) in zip(grid.flat, _PANELS, strict=True):
        for name, path in series:
            ys = [_metric(m, path) for m in ms]
            if path == "failed":
                ax.bar(range(len(xs)), ys, color="tab:red", label=name)
                if not any(ys):
                    ax.set_ylim(0, 1)
                    ax.text(0.5, 0.5, "no failed requests", transform=ax.transAxes, ha="center")
                continue
            ax.plot(xs, ys, "o-" if name != "p99" else "s--", label=name)
            bad = [(x, _metric(m, path)) for x, m in failed]
            if bad:
                ax.plot(
                    [b[0] for b in bad],
                    [b[1] for b in bad],
                    "x",
                    color="red",
                    markersize=12,
                    markeredgewidth=2.5,
                    label="has failures" if name == series[0][0] else None,
                    gid="failed",
                )
        if series[0][1] == "failed":
            ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
            for i, m in enumerate(ms):
                if m.client_saturated:
                    ax.axvspan(i - 0.5, i + 0.5, color="red", alpha=0.12)
        else:
            if log_x:
                ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(xs))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            for x, m in failed:
                ax.annotate(
                    f"{m.failed} failed",
                    (x, _metric(m, series[-1][1])),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    color="red",
                    fontsize=8,
                )
            for j, x in enumerate(saturated):
                ax.axvline(
                    x,
                    color="red",
                    alpha=0.35,
                    linewidth=6,
                    label="client saturated" if j == 0 else None,
                    gid="saturated",
                )
        ax.set_title(title)
        ax.set_xlabel(label)
        ax.set_ylabel(unit)
        ax.margins(x=0.08, y=0.15)  # room for the failure counts
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    title = "rlinf-http bench sweep"
    if sweep.points:
        title += f": {sweep.points[0].target}"
    notes = []
    if failed:
        notes.append("red x: a point with failed requests")
    if saturated:
        notes.append("red band: client saturated (numbers describe the client)")
    if notes:
        title += "\n" + "; ".join(notes)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_sweep(sweep: SweepResult, path: str | os.PathLike[str]) -> None:
    """Write :func:`sweep_figure` as a PNG (the directory is created when missing)."""
    import matplotlib.pyplot as plt

    fig = sweep_figure(sweep)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(os.fspath(path), dpi=100)
    finally:
        plt.close(fig)
