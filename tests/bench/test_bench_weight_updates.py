"""``rlinf-http bench --weight-update-every``: weight updates under load, and ``--compare-direct``.

The embedded default (fake workers with a load time behind the real
sglang-router) runs a small load with updates every 0.3 s; each update's
metrics are checked against the fake's known load time and the pause mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlinf_http.bench.config import BenchConfig
from rlinf_http.bench.embedded import EmbeddedTarget
from rlinf_http.bench.metrics import RequestRecord
from rlinf_http.bench.options import BenchOptionError
from rlinf_http.bench.runner import run_benchmark
from rlinf_http.bench.updates import UpdateEvent, parse_update_every, update_metrics
from rlinf_http.cli import _build_app

runner = CliRunner()

LOAD_MS = 80.0


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """The embedded default's fake workers (with a load time) behind the real router."""
    with EmbeddedTarget(2, 5.0, 5.0, load_ms=LOAD_MS) as t:
        assert t.info is not None and t.info.router
        yield t.url


def _config(url: str, **kw: object) -> BenchConfig:
    base: dict[str, object] = {
        "url": url,
        "num_prompts": 40,
        "random_input_len": 8,
        "random_output_len": 40,
        "max_concurrency": 8,
        "weight_update_every": 0.3,
        "ready_timeout": 60.0,
    }
    base.update(kw)
    return BenchConfig.model_validate(base)


def test_retract_updates_under_load_report_every_metric(target: str) -> None:
    result = run_benchmark(_config(target, weight_update_pause="retract"))
    ups = result.weight_updates
    assert ups, "at least one update ran during the load"
    for u in ups:
        assert u.ok, u.error
        assert u.workers == 2
        assert u.pause_mode == "retract"
        assert u.load_time_ms >= LOAD_MS  # the fake's load time
        assert u.pause_latency_ms > 0 and u.drain_time_ms >= 0 and u.continue_time_ms > 0
        assert u.total_ms >= u.pause_latency_ms + u.load_time_ms
        assert u.aborted == 0 and u.tokens_discarded == 0  # retract keeps every request
        assert u.retracted == u.in_flight_at_pause
        assert u.mixed_share is not None and 0 <= u.mixed_share <= 1
    first = ups[0]
    assert first.in_flight_at_pause > 0
    assert first.ttft_after_continue_ms is not None and first.ttft_after_continue_ms >= 0
    # requests held across the update finish on the new version: their spans mix versions
    assert first.mixed_completions > 0
    assert result.metrics.failed == 0
    assert result.mixed_version_share is not None and result.mixed_version_share > 0


def test_abort_updates_discard_partial_output(target: str) -> None:
    result = run_benchmark(_config(target, weight_update_pause="abort"))
    ups = result.weight_updates
    assert ups
    assert all(u.ok for u in ups)
    assert sum(u.aborted for u in ups) > 0
    assert sum(u.tokens_discarded for u in ups) > 0
    assert all(u.retracted == 0 for u in ups)
    assert all(u.mixed_completions == 0 for u in ups)  # an aborted request never completes
    assert result.metrics.error_breakdown.get("aborted") == sum(u.aborted for u in ups)
    assert all(u.load_time_ms >= LOAD_MS for u in ups)


def test_embedded_default_cli_table_and_jsonl_carry_the_updates(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    args = [
        "bench",
        "--num-prompts", "30",
        "--random-input-len", "8",
        "--random-output-len", "40",
        "--max-concurrency", "6",
        "--fake-ttft-ms", "5",
        "--fake-itl-ms", "5",
        "--fake-load-ms", "60",
        "--weight-update-every", "0.3s",
        "--weight-update-pause", "in_place",
        "--compare-direct",
        "-q",
        "--output-file", str(out),
    ]  # fmt: skip
    res = runner.invoke(_build_app(), args)
    assert res.exit_code == 0, res.output
    assert "Weight Updates Under Load (in_place" in res.output
    assert "Router vs. direct to the workers" in res.output
    header = next(line for line in res.output.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "router", "direct"]
    (line,) = out.read_text().splitlines()
    data = json.loads(line)
    assert data["weight_updates"] and data["weight_updates"][0]["load_time_ms"] >= 60
    assert data["direct"]["target_kind"] == "direct"
    assert len(data["direct"]["target"].split(", ")) == 2  # both workers, directly
    assert data["direct"]["completed"] + data["direct"]["failed"] == 30
    assert data["direct"]["weight_updates"]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--weight-update-every", "0"], "--weight-update-every"),
        (["--weight-update-every", "soon"], "--weight-update-every"),
        (["--weight-update-every", "1.5g", "--dataset", "rl-groups"], "--weight-update-every"),
        (["--weight-update-every", "2g"], "--weight-update-every"),  # groups need rl-groups
        (["--weight-update-every", "1", "--weight-update-pause", "later"], "--weight-update-pause"),
        (["--weight-update-path", "/x"], "--weight-update-path"),
        (["--weight-update-every", "1", "--processes", "2"], "--weight-update-every"),
        (["--compare-direct", "--sweep-concurrency", "1,2"], "--compare-direct"),
        (["--fake-load-ms", "-1"], "--fake-load-ms"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(args: list[str], option: str) -> None:
    res = runner.invoke(_build_app(), ["bench", *args])
    assert res.exit_code == 2, res.output
    assert option in res.output


def test_parse_update_every() -> None:
    assert parse_update_every("2") == ("seconds", 2.0)
    assert parse_update_every("0.5s") == ("seconds", 0.5)
    assert parse_update_every("4g") == ("groups", 4.0)
    with pytest.raises(BenchOptionError, match="--weight-update-every"):
        parse_update_every("inf")


def test_update_metrics_on_a_synthetic_timeline() -> None:
    e = UpdateEvent(1, "v1", "abort", 2, start=1.0, continue_start=1.5, end=1.6)
    e.pause_s, e.drain_s, e.load_s, e.continue_s = 0.1, 0.1, 0.3, 0.1
    held_ok = RequestRecord(index=0, start=0.5, end=2.0, success=True, weight_versions=["v0", "v1"])
    held_ok.chunk_times = [0.6, 1.7]
    aborted = RequestRecord(index=1, start=0.9, end=1.05, aborted=True, tokens_received=7)
    later = RequestRecord(index=2, start=1.55, end=1.9, success=True, weight_versions=["v1"])
    later.chunk_times = [1.58]
    (m,) = update_metrics([e], [held_ok, aborted, later])
    assert m.pause_latency_ms == pytest.approx(100.0)
    assert m.drain_time_ms == pytest.approx(100.0)
    assert m.load_time_ms == pytest.approx(300.0)
    assert m.continue_time_ms == pytest.approx(100.0)
    assert m.ttft_after_continue_ms == pytest.approx(80.0)
    assert (m.in_flight_at_pause, m.aborted, m.retracted, m.tokens_discarded) == (2, 1, 0, 7)
    assert m.mixed_completions == 1 and m.mixed_share == pytest.approx(0.5)


def test_rl_groups_update_after_every_n_completed_groups(target: str) -> None:
    config = _config(
        target,
        dataset="rl-groups",
        rl_batch_size=6,
        group_size=4,
        weight_update_every=2,
        weight_update_unit="groups",
    )
    result = run_benchmark(config)
    ups = result.weight_updates
    assert ups and all(u.ok for u in ups)
    # an update starts only once 2 more groups finished, so at most 6 / 2 of them
    assert len(ups) <= 3
    done_at = sorted(max(r.end for r in result.records if r.group == g) for g in range(6))
    for k, u in enumerate(ups, start=1):
        assert u.start_s >= done_at[2 * k - 1]


def test_a_server_is_a_fleet_of_one() -> None:
    from rlinf_http.testing import FakeConfig, FakeServer

    config = FakeConfig(ttft_s=0.005, itl_s=0.005, weight_update_s=LOAD_MS / 1000)
    with FakeServer(config=config) as srv:
        result = run_benchmark(_config(srv.url, weight_update_path="/ckpt/step-1"))
        assert srv.app.model_path == "/ckpt/step-1"
    ups = result.weight_updates
    assert ups and all(u.ok and u.workers == 1 for u in ups)
    assert all(u.load_time_ms >= LOAD_MS for u in ups)
    assert ups[-1].version.startswith("bench-") and ups[-1].version.endswith(f"-{len(ups)}")
    assert len({u.version for u in ups}) == len(ups)


def test_openai_metadata_spans_are_read_typed_or_not() -> None:
    from rlinf_http.bench.shard import _openai_versions
    from rlinf_http.models.chat import ChatCompletion

    spans = [{"version": "v0", "start": 0, "end": 3}, {"version": "v1", "start": 3, "end": 5}]
    usage = {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6}
    body = {
        "id": "x",
        "choices": [],
        "metadata": {"weight_version": "v1", "weight_versions": spans},
    }
    rec = RequestRecord()
    _openai_versions(rec, body)
    assert rec.weight_versions == ["v0", "v1"]
    rec = RequestRecord()
    _openai_versions(rec, ChatCompletion.model_validate({**body, "usage": usage}))
    assert rec.weight_versions == ["v0", "v1"]
    rec = RequestRecord()
    _openai_versions(rec, {"choices": [], "metadata": {"weight_version": "v1"}})
    assert rec.weight_versions is None  # no spans (a stream, or an older server): unknown


def test_a_failed_load_is_reported_and_the_worker_restored_so_the_load_goes_on() -> None:
    from rich.console import Console

    from rlinf_http.bench.report import render_result
    from rlinf_http.testing import FakeConfig, FakeServer, FaultSpec

    config = FakeConfig(ttft_s=0.005, itl_s=0.005, weight_update_s=LOAD_MS / 1000)
    with FakeServer(config=config) as srv:
        srv.app.faults.add(FaultSpec(path="/update_weights_from_disk", weight_update_error="load"))
        result = run_benchmark(_config(srv.url, num_prompts=60, request_timeout=10.0))
        assert srv.app.paused is None  # the bench continued the worker the step left paused
    ups = result.weight_updates
    assert ups and len(ups) >= 2
    first, rest = ups[0], ups[1:]
    assert not first.ok and "load" in first.error and len(first.restored) == 1
    assert all(u.ok and not u.restored for u in rest)
    assert result.metrics.failed == 0  # the retracted requests resumed after the restore
    console = Console(record=True, width=80)
    console.print(render_result(result))
    text = console.export_text()
    assert "1!" in text and "update 1 failed (restored by the bench: " in text
