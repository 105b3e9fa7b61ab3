"""What ``rlinf-http bench`` writes and prints: sweeps append JSON lines, default
outputs go to ``bench-results/``, help and tables read whole at 80 columns, the
sweep plot shows what matters."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("typer")

from typer.testing import CliRunner

from rlinf_http.bench.config import BenchConfig
from rlinf_http.bench.metrics import Distribution, Metrics
from rlinf_http.bench.report import THROUGHPUT_NOTE, plot_sweep, render_sweep, sweep_figure
from rlinf_http.bench.results import BenchResult, SweepResult
from rlinf_http.cli import _build_app
from rlinf_http.testing import FakeConfig, FakeServer

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(ttft_s=0.002, itl_s=0.001)) as srv:
        yield srv


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(_build_app(), list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def _small(url: str) -> list[str]:
    return [
        "bench",
        "--url",
        url,
        "--num-prompts",
        "4",
        "--random-input-len",
        "8",
        "--random-output-len",
        "4",
        "-q",
    ]


def test_sweep_appends_one_line_per_point_to_saved_runs(server: FakeServer, tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    for _ in range(2):
        code, text = _invoke(*_small(server.url), "--output-file", str(runs))
        assert code == 0, text
    before = runs.read_text().splitlines()
    assert len(before) == 2
    code, text = _invoke(
        *_small(server.url), "--sweep-concurrency", "1,2", "--output-file", str(runs)
    )
    assert code == 0, text
    lines = runs.read_text().splitlines()
    assert lines[:2] == before, "the sweep rewrote saved runs"
    assert len(lines) == 4
    plain, points = [json.loads(x) for x in lines[:2]], [json.loads(x) for x in lines[2:]]
    # the same schema as a plain run, plus the swept value
    for p in points:
        assert set(plain[0]) <= set(p)
        assert p["sweep_parameter"] == "max_concurrency"
        assert p["sweep_values"] == [1, 2]
    assert [p["sweep_value"] for p in points] == [1, 2]
    assert [p["max_concurrency"] for p in points] == [1, 2]
    assert points[0]["sweep_id"] == points[1]["sweep_id"] != ""
    pngs = list(tmp_path.glob("runs-sweep-*.png"))
    assert len(pngs) == 1


def test_sweep_outputs_default_to_bench_results(
    server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = _invoke(*_small(server.url), "--sweep-rate", "50,100")
    assert code == 0, text
    assert {p.name for p in tmp_path.iterdir()} == {"bench-results"}
    jsonl = list((tmp_path / "bench-results").glob("sweep-*.jsonl"))
    png = list((tmp_path / "bench-results").glob("sweep-*.png"))
    assert len(jsonl) == 1 and len(png) == 1
    assert jsonl[0].stem == png[0].stem
    values = [json.loads(x)["sweep_value"] for x in jsonl[0].read_text().splitlines()]
    assert values == [50, 100]


def test_explicit_plot_file_is_honoured(server: FakeServer, tmp_path: Path) -> None:
    png = tmp_path / "plot.png"
    out = tmp_path / "points.jsonl"
    code, text = _invoke(
        *_small(server.url),
        "--sweep-concurrency",
        "1",
        "--output-file",
        str(out),
        "--plot-file",
        str(png),
    )
    assert code == 0, text
    assert png.is_file() and len(out.read_text().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "points.jsonl"]


def test_no_bench_artifacts_in_the_repository() -> None:
    assert not list(ROOT.glob("rlinf-bench-sweep*"))
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "bench-results/" in ignored


# -- 80 columns, piped ---------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="80")
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-c", "from rlinf_http.cli import main; main()", *args],
        capture_output=True,  # piped: not a terminal
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def _whole(token: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def test_help_reads_whole_at_80_columns_piped(tmp_path: Path) -> None:
    import typer.main

    group = typer.main.get_command(_build_app())
    bench = group.commands["bench"]  # type: ignore[attr-defined]
    names = [n for p in bench.params for n in (*p.opts, *p.secondary_opts)]
    assert "--output-len-distribution" in names and "--sweep-concurrency" in names
    proc = _cli("bench", "-h", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    missing = [n for n in names if not _whole(n, text)]
    assert missing == []
    top = _cli("-h", cwd=tmp_path)
    assert "…" not in top.stdout
    commands = top.stdout.split("Commands:")[1].splitlines()
    assert not [line for line in commands if line.rstrip().endswith("...")]
    for command in group.commands:  # type: ignore[attr-defined]
        assert _whole(command, top.stdout)


def test_sweep_table_whole_at_80_columns_piped(server: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "sweep.jsonl"
    proc = _cli(
        *_small(server.url),
        "--sweep-concurrency",
        "1,2,4",
        "--output-file",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for header in ("concurrency", "ok", "failed", "req/s", "tok/s", "p50 ms", "p99 ms"):
        assert header in text, header
    for line in out.read_text().splitlines():
        p = json.loads(line)
        for value in (
            f"{p['request_throughput']:.2f}",
            f"{p['output_throughput']:.0f}",
            f"{p['median_ttft_ms']:.1f}",
            f"{p['p99_ttft_ms']:.1f}",
            f"{p['median_e2e_latency_ms']:.1f}",
            f"{p['p99_e2e_latency_ms']:.1f}",
        ):
            assert _whole(value, text), (value, text)


def _sweep(
    values: list[float], *, failed_at: float = -1, saturated_at: float = -1, big: bool = False
) -> SweepResult:
    points = []
    for v in values:
        scale = 1e5 if big else 1.0
        m = Metrics(
            completed=100,
            failed=5 if v == failed_at else 0,
            request_throughput=v * 9.5 * scale,
            output_throughput=v * 150.0 * scale,
            total_throughput=v * 1500.0 * scale,
            ttft_ms=Distribution(median=20 + v * scale, p99=25 + 2 * v * scale),
            e2e_latency_ms=Distribution(median=100 + v * scale, p99=110 + 3 * v * scale),
            client_saturated=v == saturated_at,
        )
        cfg = BenchConfig(url="http://x:1", max_concurrency=int(v))
        points.append(BenchResult(date="d", config=cfg, target="http://x:1", metrics=m))
    return SweepResult(parameter="max_concurrency", values=values, points=points)


@pytest.mark.parametrize("width", [80, 60, 40])
def test_sweep_table_splits_instead_of_cutting(width: int) -> None:
    from rich.console import Console

    sweep = _sweep([1, 4, 16, 1024], saturated_at=1024, big=True)
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(render_sweep(sweep, width))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    for p in sweep.points:
        m = p.metrics
        for value in (
            f"{m.request_throughput:.2f}",
            f"{m.output_throughput:.0f}",
            f"{m.ttft_ms.p99:.1f}",
            f"{m.e2e_latency_ms.p99:.1f}",
        ):
            assert _whole(value, text), (value, text)
    assert "SATURATED" in text


def test_result_table_explains_the_two_rates(server: FakeServer, tmp_path: Path) -> None:
    proc = _cli(*_small(server.url), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    flat = " ".join(proc.stdout.split())
    assert " ".join(THROUGHPUT_NOTE.split()) in flat
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    doc = " ".join((ROOT / "docs" / "bench.md").read_text().split())
    assert "Request throughput" in doc and "what the client offered" in doc


# -- the sweep plot ----------------------------------------------------------------


def test_sweep_plot_axes_ticks_and_marks(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    values = [1.0, 4.0, 16.0, 64.0]
    fig = sweep_figure(_sweep(values, failed_at=16, saturated_at=64))
    try:
        axes = fig.axes
        units = [ax.get_ylabel() for ax in axes]
        # one y axis per quantity, each with one unit; output tok/s alone on its axis
        assert "output tokens / s" in units and "requests / s" in units and "ms" in units
        out_ax = axes[units.index("output tokens / s")]
        assert [ln.get_label() for ln in out_ax.get_lines() if ln.get_gid() is None] == [
            "output tok/s"
        ]
        line_axes = [ax for ax in axes if ax.get_lines()]
        assert len(line_axes) >= 5
        for ax in line_axes:
            assert list(ax.get_xticks()) == values
            assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4", "16", "64"]
            failed = [ln for ln in ax.get_lines() if ln.get_gid() == "failed"]
            assert failed and 16.0 in list(failed[0].get_xdata())
            saturated = [ln for ln in ax.get_lines() if ln.get_gid() == "saturated"]
            assert saturated and list(saturated[0].get_xdata()) == [64.0, 64.0]
        bars = [ax for ax in axes if ax.patches and ax.get_ylabel() == "requests"]
        assert bars and [t.get_text() for t in bars[0].get_xticklabels()] == [
            "1",
            "4",
            "16",
            "64",
        ]
        assert [p.get_height() for p in bars[0].patches[:4]] == [0, 0, 5, 0]
    finally:
        plt.close(fig)
    png = tmp_path / "deep" / "sweep.png"
    plot_sweep(_sweep(values), png)
    assert png.stat().st_size > 10_000
