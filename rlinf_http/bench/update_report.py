"""Reporting of weight updates under load and of ``--compare-direct``.

:func:`render_updates` is the per-update table (one row per update),
:func:`render_comparison` the two-column table of a router run next to the same
load sent directly to its workers; :func:`updates_json` the JSON keys they add
to a run's JSONL line (``weight_updates``, ``mixed_version_share``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .results import BenchResult
from .updates import WeightUpdateMetrics

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = ["render_comparison", "render_updates", "simple_table", "updates_json"]

#: the per-update columns: (header, value of one update)
_COLUMNS: tuple[tuple[str, Callable[[WeightUpdateMetrics], str]], ...] = (
    ("#", lambda u: str(u.index) + ("" if u.ok else "!")),
    ("pause\nms", lambda u: f"{u.pause_latency_ms:.1f}"),
    ("drain\nms", lambda u: f"{u.drain_time_ms:.1f}"),
    ("load\nms", lambda u: f"{u.load_time_ms:.1f}"),
    ("cont\nms", lambda u: f"{u.continue_time_ms:.1f}"),
    ("TTFT+\nms", lambda u: _opt(u.ttft_after_continue_ms)),
    ("in\nflight", lambda u: str(u.in_flight_at_pause)),
    ("abort", lambda u: str(u.aborted)),
    ("retr", lambda u: str(u.retracted)),
    ("disc\ntok", lambda u: str(u.tokens_discarded)),
    ("mixed\n%", lambda u: _pct(u.mixed_share)),
)


def simple_table(title: str | None) -> Table:
    """A header-ruled table without edges (the sweep, update and comparison tables)."""
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        title_style="bold",
    )


def _opt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def updates_json(result: BenchResult) -> dict[str, Any]:
    """``weight_updates`` (one object per update) and ``mixed_version_share``."""
    out: dict[str, Any] = {"mixed_version_share": result.mixed_version_share}
    if result.weight_updates is not None:
        out["weight_updates"] = [u.model_dump() for u in result.weight_updates]
    return out


def render_updates(result: BenchResult) -> RenderableType:
    """One row per weight update (``!`` after the number marks a failed update)."""
    from rich.console import Group
    from rich.text import Text

    updates = result.weight_updates or []
    c = result.config
    title = (
        f"Weight Updates Under Load ({c.weight_update_pause}, every "
        f"{c.weight_update_every:g}{'s' if c.weight_update_unit == 'seconds' else ' groups'})"
    )
    table = simple_table(title)
    for header, _ in _COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for u in updates:
        table.add_row(*(value(u) for _, value in _COLUMNS))
    parts: list[RenderableType] = [table]
    if not updates:
        parts.append(Text("No weight update ran: the load ended first.", style="yellow"))
    for u in updates:
        if not u.ok:
            back = f" (restored by the bench: {', '.join(u.restored)})" if u.restored else ""
            parts.append(Text(f"update {u.index} failed{back}: {u.error}", style="red"))
    parts.append(
        Text(
            "One update = fleet.update_weights (pause -> drain -> load -> version stamp "
            "-> continue); phase times are the slowest worker's. pause: /pause_generation; "
            "drain: until the workers report themselves paused and, but for in_place, "
            "idle; load: from disk; cont: /continue_generation; TTFT+: continue sent -> "
            "the first token any request received; in flight: requests running at the "
            "pause; abort / retr: aborted / held (retracted or in place) and resumed; "
            "disc tok: tokens the aborted requests had received (discarded); mixed %: "
            "completions mixing this version with an older one.",
            style="dim",
        )
    )
    return Group(*parts)


def _mean(values: Sequence[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _rows(r: BenchResult) -> list[tuple[str, str]]:
    m = r.metrics
    rows = [
        ("Successful requests", str(m.completed)),
        ("Failed requests", str(m.failed)),
        ("Benchmark duration (s)", f"{m.duration:.2f}"),
        ("Request throughput (req/s)", f"{m.request_throughput:.2f}"),
        ("Output token throughput (tok/s)", f"{m.output_throughput:.1f}"),
        ("Mean TTFT (ms)", f"{m.ttft_ms.mean:.2f}"),
        ("P99 TTFT (ms)", f"{m.ttft_ms.p99:.2f}"),
        ("Mean TPOT (ms)", f"{m.tpot_ms.mean:.2f}"),
        ("Mean ITL (ms)", f"{m.itl_ms.mean:.2f}"),
        ("P99 ITL (ms)", f"{m.itl_ms.p99:.2f}"),
        ("Mean E2E latency (ms)", f"{m.e2e_latency_ms.mean:.2f}"),
        ("P99 E2E latency (ms)", f"{m.e2e_latency_ms.p99:.2f}"),
        ("Mixed-version completions (%)", _pct(r.mixed_version_share)),
    ]
    ups = r.weight_updates
    if ups is not None:
        rows += [
            ("Weight updates (failed)", f"{len(ups)} ({sum(not u.ok for u in ups)})"),
            ("Mean pause latency (ms)", _opt(_mean([u.pause_latency_ms for u in ups]))),
            ("Mean load time (ms)", _opt(_mean([u.load_time_ms for u in ups]))),
            ("Mean TTFT after continue (ms)", _opt(_mean([u.ttft_after_continue_ms for u in ups]))),
            ("Requests aborted", str(sum(u.aborted for u in ups))),
            ("Requests retracted", str(sum(u.retracted for u in ups))),
            ("Tokens discarded", str(sum(u.tokens_discarded for u in ups))),
        ]
    return rows


def render_comparison(result: BenchResult) -> RenderableType:
    """``--compare-direct``: the router run and the direct run, side by side."""

    direct = result.direct
    assert direct is not None
    table = simple_table("Router vs. direct to the workers (same load)")
    table.add_column("metric", style="cyan", no_wrap=True)
    table.add_column("router", justify="right", no_wrap=True)
    table.add_column("direct", justify="right", no_wrap=True)
    for (label, a), (_, b) in zip(_rows(result), _rows(direct), strict=True):
        table.add_row(label, a, b)
    return table
