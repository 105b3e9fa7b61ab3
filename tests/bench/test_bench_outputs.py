"""What ``rlinf-http bench`` writes and prints: sweeps append JSON lines, default
outputs go to ``bench-results/``, help and tables read whole at 80 columns, the
sweep plot shows what matters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("typer")

from typer.testing import CliRunner

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
