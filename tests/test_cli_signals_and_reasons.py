"""Exit statuses on Ctrl-C, bad latencies of serve-fake, and why a health check failed."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from rlinf_http.cli import _build_app
from rlinf_http.testing import FakeConfig, FakeServer, FaultSpec

runner = CliRunner()
_CLI = [sys.executable, "-c", "from rlinf_http.cli import main; main()"]


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(_build_app(), list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_error_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--ttft-ms", "-5", "--itl-ms", "-1"], "--ttft-ms"),
        (["--itl-ms", "-1"], "--itl-ms"),
        (["--ttft-ms", "nan"], "--ttft-ms"),
        (["--itl-ms", "inf"], "--itl-ms"),
    ],
)
def test_serve_fake_rejects_negative_or_non_finite_latencies(args: list[str], option: str) -> None:
    # a subprocess: before the check, the server started and served until killed
    done = subprocess.run(
        [*_CLI, "serve-fake", "--port", "0", *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2, done.stderr
    assert option in _one_error_line(done.stderr)


@pytest.mark.parametrize("field", ["ttft_s", "itl_s", "weight_update_s"])
@pytest.mark.parametrize("value", [-0.005, math.nan, math.inf])
def test_fake_config_rejects_negative_or_non_finite_latencies(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"FakeConfig.{field} must be a finite number >= 0"):
        FakeConfig(**{field: value})  # type: ignore[arg-type]


def test_ray_actors_without_ray_is_a_usage_error() -> None:
    code, text = _invoke("bench", "--ray-actors", "2", "--num-prompts", "1")
    assert code == 2, text
    assert "--ray-actors" in _one_error_line(text)


def test_serve_fake_exits_130_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [*_CLI, "serve-fake", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, err
        assert "interrupted" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_health_wait_exits_130_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [*_CLI, "health", "--wait", "120", f"127.0.0.1:{_closed_port()}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)  # the interpreter is up and polling
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, err
        assert time.monotonic() - t0 < 5.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_health_of_a_dead_port_says_why() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    code, text = _invoke("health", url)
    assert code == 1
    assert "connection refused" in _one_error_line(text), text
    code, text = _invoke("health", "--wait", "0.5", url)
    assert code == 1
    line = _one_error_line(text)
    assert "not ready: not ready" not in line and line.count("not ready") == 1, line
    assert "connection refused" in line and "0.5 s" in line, line


def test_health_of_an_unhealthy_server_names_the_status() -> None:
    with FakeServer() as srv:
        srv.app.faults.add(FaultSpec(path="/health", status=503, times=None))
        code, text = _invoke("health", srv.url)
    assert code == 1
    assert "HTTP 503" in _one_error_line(text), text


@pytest.mark.parametrize("value", ["inf", "-1"])
def test_bench_fake_latencies_must_be_finite(value: str) -> None:
    code, text = _invoke("bench", "--fake-itl-ms", value, "--num-prompts", "1", "-q")
    assert code == 2, text
    assert "--fake-itl-ms" in _one_error_line(text)


def test_python_m_testing_serve_rejects_a_negative_latency() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rlinf_http.testing", "serve", "--port", "0", "--ttft-ms", "-5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "ttft_s must be a finite number >= 0" in done.stderr
    assert "Traceback" not in done.stderr


def _kids(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_with_client_processes_exits_within_seconds() -> None:
    # the wait for --processes runs in a worker thread the interpreter would wait for
    proc = subprocess.Popen(
        [
            *_CLI,
            "bench",
            "--num-prompts",
            "100000",
            "--request-rate",
            "200",
            "--max-concurrency",
            "4",
            "--processes",
            "2",
            "--random-input-len",
            "8",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        kids: set[int] = set()
        while time.monotonic() < deadline and len(kids) < 5:  # workers, tracker, clients
            kids |= _kids(proc.pid)
            time.sleep(0.2)
        assert len(kids) >= 5, kids
        time.sleep(2.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - t0
        assert proc.returncode == 130, err
        assert elapsed < 10.0, (elapsed, err)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_running(k) for k in kids):
            time.sleep(0.1)
        assert not [k for k in kids if _running(k)], err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
