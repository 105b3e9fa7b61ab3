"""``rlinf-http bench`` options: bench_serving aliases, JSONL output, progress, waiting notices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlinf_http.bench.argv import normalize_bench_argv
from rlinf_http.cli import _build_app
from rlinf_http.testing import FakeConfig, FakeServer, FaultSpec

runner = CliRunner()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(ttft_s=0.002, itl_s=0.001)) as srv:
        yield srv


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(_build_app(), list(args))
    return result.exit_code, result.output


def _small(url: str) -> list[str]:
    return [
        "bench",
        "--base-url",
        url,
        "--num-prompts",
        "4",
        "--random-input-len",
        "8",
        "--random-output-len",
        "4",
        "--warmup-requests",
        "0",
    ]


def test_bench_serving_aliases_jsonl_and_details(server: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    args = [
        *_small(server.url),
        "--backend",
        "sglang-oai",
        "--dataset-name",
        "random",
        "--disable-stream",
        "--extra-request-body",
        '{"top_p": 0.5}',
        "--goodput",
        "ttft:5000",
        "tpot:1000",
        "e2el:9000",
        "--percentile-metrics",
        "ttft,e2el",
        "--metric-percentiles",
        "50,90,99",
        "--output-file",
        str(out),
        "--output-details",
        "-q",
    ]
    code, text = _invoke(*args)
    assert code == 0, text
    assert "Request goodput (req/s):" in text and "P50 TTFT (ms):" in text
    body = server.app.stats["last_bodies"]["/v1/completions"]
    assert body["stream"] is False and body["top_p"] == 0.5
    code, text = _invoke(*args)
    assert code == 0, text
    lines = out.read_text().splitlines()
    assert len(lines) == 2  # appended, one JSON line per run
    data = json.loads(lines[1])
    assert data["endpoint"] == "completions" and data["stream"] is False
    assert data["goodput_slos_ms"] == {"ttft": 5000.0, "tpot": 1000.0, "e2el": 9000.0}
    assert data["slo_attainment"] == 1.0
    assert {"p50_ttft_ms", "p90_ttft_ms", "p99_e2el_ms"} <= set(data)
    for key in ("input_lens", "output_lens", "ttfts", "itls", "errors", "start_times"):
        assert len(data[key]) == 4, key
    assert data["output_lens"] == [4, 4, 4, 4]


def test_output_file_is_checked_before_the_run(tmp_path: Path) -> None:
    # an unreachable target and a 60 s readiness wait: the check must fail first
    missing = tmp_path / "no" / "such" / "dir" / "r.jsonl"
    code, text = _invoke(
        "bench", "--url", "http://127.0.0.1:9", "--output-file", str(missing), "-q"
    )
    assert code == 2
    assert "--output-file" in text and "does not exist" in text


def test_bad_option_values_name_the_option() -> None:
    base = ["bench", "--url", "http://127.0.0.1:9"]
    for args, option in (
        (["--goodput", "ttft:abc"], "--goodput"),
        (["--goodput", "latency:5"], "--goodput"),
        (["--percentile-metrics", "ttft,foo"], "--percentile-metrics"),
        (["--metric-percentiles", "0"], "--metric-percentiles"),
        (["--backend", "vllm"], "--backend"),
        (["--dataset", "trace"], "--trace-file"),
        (["--output-len-distribution", "pareto"], "--output-len-distribution"),
        (
            ["--dataset", "rl-groups", "--group-size", "8", "--max-concurrency", "4"],
            "--max-concurrency",
        ),
        (["tpot:5"], "bench"),  # a stray value without --goodput
        (["--sweep-concurrency", "1,2", "--calibrate"], "--calibrate"),
    ):
        code, text = _invoke(*base, *args)
        assert code == 2, (args, text)
        assert option in text, (args, text)


def test_progress_lines_and_error_examples_when_not_a_terminal(
    server: FakeServer,
) -> None:
    server.app.faults.add(FaultSpec(path="/generate", status=503, times=1))
    try:
        code, text = _invoke(*_small(server.url), "--max-concurrency", "1")
    finally:
        server.app.faults.clear()
    assert code == 0, text
    # CliRunner's stdout is not a terminal: plain progress lines, the last at completion
    assert "progress: 4/4 requests done, 1 failed" in text
    assert "http_503:" in text and "e.g. " in text and "503" in text.split("http_503:")[1]


def test_unreachable_target_says_what_it_waits_for() -> None:
    code, text = _invoke("bench", "--url", "http://127.0.0.1:9", "--ready-timeout", "3", "-q")
    assert code == 1
    assert "waiting for http://127.0.0.1:9 to become ready" in text
    assert "of --ready-timeout 3 s" in text


def test_bare_ray_flag_means_a_local_cluster() -> None:
    assert normalize_bench_argv(["bench", "--ray"]) == ["bench", "--ray", "local"]
    assert normalize_bench_argv(["bench", "--ray", "--ray-actors", "2"]) == [
        "bench",
        "--ray",
        "local",
        "--ray-actors",
        "2",
    ]
    assert normalize_bench_argv(["bench", "--ray", "auto"]) == ["bench", "--ray", "auto"]
    assert normalize_bench_argv(["health", "--ray"]) == ["health", "--ray"]


def test_rl_groups_trace_and_calibrate_from_the_cli(server: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    code, text = _invoke(
        "bench",
        "--url",
        server.url,
        "--dataset",
        "rl-groups",
        "--rl-batch-size",
        "3",
        "--group-size",
        "2",
        "--random-input-len",
        "8",
        "--random-output-len",
        "6",
        "--output-len-distribution",
        "uniform",
        "--calibrate",
        "--fake-ttft-ms",
        "10",
        "--fake-itl-ms",
        "2",
        "--output-file",
        str(out),
        "-q",
    )
    assert code == 0, text
    assert "RL Rollout Groups" in text and "Calibration (fake server" in text
    data = json.loads(out.read_text())
    assert data["completed"] == 6 and data["num_prompts"] == 6
    assert data["rl_groups"]["groups"] == 3 and data["rl_groups"]["group_size"] == 2
    assert data["calibration"]["ttft"]["expected_ms"] == 10.0
    assert data["calibration"]["completed"] == 6
    trace = tmp_path / "t.jsonl"
    trace.write_text(
        "".join(
            json.dumps({"timestamp": 20 * i, "input_length": 4, "output_length": 2}) + "\n"
            for i in range(5)
        )
    )
    code, text = _invoke(
        "bench", "--url", server.url, "--dataset", "trace", "--trace-file", str(trace), "-q"
    )
    assert code == 0, text
    assert "Schedule Fidelity" in text and "Successful requests:" in text
    code, text = _invoke(
        "bench", "--url", server.url, "--dataset", "trace", "--trace-file", str(tmp_path / "x")
    )
    assert code == 2 and "--trace-file" in text and "no such file" in text
