"""The bench package's shape: no import cycle (lazy and TYPE_CHECKING imports
included), and every public name importable where it was before the split."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

pytest.importorskip("numpy")

BENCH = Path(__file__).resolve().parents[2] / "rlinf_http" / "bench"


def _bench_imports(path: Path) -> set[str]:
    """Modules of rlinf_http.bench that ``path`` imports anywhere (any depth)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.level == 0 and (node.module or "").startswith("rlinf_http.bench."):
                out.add((node.module or "").split(".")[2])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("rlinf_http.bench."):
                    out.add(a.name.split(".")[2])
    return out


def test_no_import_cycle_in_bench() -> None:
    modules = {p.stem for p in BENCH.glob("*.py") if p.stem != "__init__"}
    graph = {m: _bench_imports(BENCH / f"{m}.py") & modules for m in modules}
    assert "runner" not in graph["ray"] and "runner" not in graph["calibrate"]
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*path[path.index(n) :], n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m)


def test_runner_is_split() -> None:
    lines = (BENCH / "runner.py").read_text(encoding="utf-8").count("\n")
    assert lines < 500


@pytest.mark.parametrize(
    "module,names",
    [
        (
            "rlinf_http.bench",
            [
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
            ],
        ),
        (
            "rlinf_http.bench.runner",
            [
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
            ],
        ),
    ],
)
def test_public_names_stay_importable(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is not None, name
    from rlinf_http.bench import config, results, runner

    assert runner.BenchConfig is config.BenchConfig
    assert runner.BenchResult is results.BenchResult
    assert runner.SweepResult is results.SweepResult


def test_bench_and_cli_use_only_the_public_client() -> None:
    """The facade's privates (``_aopen``, ``_policy``, ``_run``...) may move at any time."""
    import re

    sources = [*BENCH.glob("*.py"), BENCH.parent / "cli.py"]
    private = re.compile(r"\bclient\._[a-z]|\._aopen\b|\._policy\b|\._a?run\(")
    hits = [
        f"{p.name}:{i}: {line.strip()}"
        for p in sources
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert hits == []


@pytest.mark.parametrize(
    "field,bad",
    [
        ("group_size", 0),
        ("random_range_ratio", 1.5),
        ("sharegpt_output_len", 0),
        ("max_concurrency", 0),
        ("request_timeout", 0.0),
        ("burstiness", 0.0),
    ],
)
def test_config_defaults_are_plain_and_constraints_kept(field: str, bad: object) -> None:
    """Defaults are written ``Annotated[int, Field(ge=1)] = 8`` (mypy reads them
    without the pydantic plugin) and the constraints still apply."""
    import pydantic

    from rlinf_http.bench.config import BenchConfig

    with pytest.raises(pydantic.ValidationError):
        BenchConfig(**{field: bad})  # type: ignore[arg-type]
    assert BenchConfig().group_size == 8 and BenchConfig().max_concurrency is None
