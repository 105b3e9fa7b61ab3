"""The ``rlinf-http`` command line: bench (embedded default and --url), small commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlinf_http.cli import _build_app
from rlinf_http.testing import FakeConfig, FakeServer, router_available

runner = CliRunner()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(ttft_s=0.002, itl_s=0.001)) as srv:
        yield srv


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(_build_app(), list(args))
    return result.exit_code, result.output


_BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("typer", "rich"):
            raise ImportError("blocked " + name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_import_does_not_need_typer_or_rich() -> None:
    code = _BLOCK + "import rlinf_http, rlinf_http.cli, rlinf_http.bench.runner\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    code = _BLOCK + "from rlinf_http.cli import main\nmain(['--help'])\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 1
    assert b"pip install 'rlinf-http[bench]'" in done.stderr


def test_bench_embedded_default(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code, text = _invoke(
        "bench",
        "--num-prompts",
        "8",
        "--random-input-len",
        "16",
        "--random-output-len",
        "8",
        "--max-concurrency",
        "4",
        "-q",
        "--output-file",
        str(out),
    )
    assert code == 0, text
    assert "Serving Benchmark Result" in text
    assert "Successful requests:" in text
    data = json.loads(out.read_text())
    assert data["completed"] == 8 and data["failed"] == 0
    assert data["embedded"]["router"] is router_available()
    assert data["embedded"]["num_workers"] == 2
    assert data["total_output_tokens"] == 64
    if router_available():
        assert data["target_kind"] == "router"
        assert "behind sglang-router" in text


def test_bench_url_chat_and_options(server: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "chat.json"
    code, text = _invoke(
        "bench",
        "--url",
        server.url,
        "--endpoint",
        "chat",
        "--no-stream",
        "--num-prompts",
        "5",
        "--random-input-len",
        "8",
        "--random-output-len",
        "4",
        "--request-rate",
        "50",
        "--burstiness",
        "2",
        "--warmup-requests",
        "0",
        "--header",
        "X-Bench=1",
        "--extra-request-body",
        '{"top_p": 0.9}',
        "--output-file",
        str(out),
        "-q",
    )
    assert code == 0, text
    data = json.loads(out.read_text())
    assert data["completed"] == 5 and data["stream"] is False
    assert data["request_rate"] == 50.0
    assert data["config"]["headers"] == {"X-Bench": "1"}
    last = server.app.stats["last_bodies"]
    assert last, "the fake server saw no body"


def test_bench_sweep_cli(server: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    code, text = _invoke(
        "bench",
        "--url",
        server.url,
        "--num-prompts",
        "4",
        "--random-input-len",
        "8",
        "--random-output-len",
        "4",
        "--sweep-concurrency",
        "1,2",
        "--output-file",
        str(out),
        "-q",
    )
    assert code == 0, text
    assert json.loads(out.read_text())["sweep_values"] == [1, 2]
    assert out.with_suffix(".png").is_file()


def test_bench_rejects_bad_options() -> None:
    code, text = _invoke("bench", "--url", "http://127.0.0.1:9", "--request-rate", "-1")
    assert code == 2 and "request rate" in text
    code, text = _invoke("bench", "--url", "http://127.0.0.1:9", "--extra-request-body", "[1]")
    assert code == 2


def test_small_commands(server: FakeServer) -> None:
    code, text = _invoke("health", server.url)
    assert code == 0 and "healthy" in text
    code, text = _invoke("health", "http://127.0.0.1:9")
    assert code == 1
    code, text = _invoke("generate", server.url, "hello", "--max-new-tokens", "3")
    assert code == 0 and "tok0 tok1 tok2" in text
    code, text = _invoke("generate", server.url, "hello", "--max-new-tokens", "2", "--stream")
    assert code == 0 and "tok0 tok1" in text
    code, text = _invoke("chat", server.url, "hi", "--max-tokens", "2")
    assert code == 0 and "tok0 tok1" in text
    code, text = _invoke("chat", server.url, "hi", "--max-tokens", "2", "--stream")
    assert code == 0 and "tok0 tok1" in text


def _children(pid: int) -> set[int]:
    kids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_processes(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from rlinf_http.cli import main; main()",
            "bench",
            "--num-prompts",
            "100000",
            "--max-concurrency",
            "4",
            "--random-input-len",
            "8",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        want = 3 if router_available() else 2
        deadline = time.monotonic() + 30
        kids: set[int] = set()
        while time.monotonic() < deadline:
            kids = _children(proc.pid)
            if len(kids) >= want:
                break
            time.sleep(0.2)
        assert len(kids) >= want, kids
        time.sleep(1.0)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not any(_alive(k) for k in kids), err.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
