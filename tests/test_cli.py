"""The ``rlinf-http`` command line: bench (embedded default and --url), small commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlinf_http import __version__
from rlinf_http._core.requests import DEFAULT_CHAT_MODEL
from rlinf_http.bench.embedded import default_gateway
from rlinf_http.cli import _build_app
from rlinf_http.testing import FakeConfig, FakeServer, FaultSpec, router_available, smg_available

runner = CliRunner()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer(config=FakeConfig(ttft_s=0.002, itl_s=0.001)) as srv:
        yield srv


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(_build_app(), list(args))
    # the CLI reports every error itself: nothing but SystemExit may escape
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``rlinf-http ARGS`` as a user would: a new process, real stdout/stderr."""
    return subprocess.run(
        [sys.executable, "-c", "from rlinf_http.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_short_error(text: str, *needles: str) -> None:
    """One or two lines, 'error: ...', no traceback, naming what is wrong."""
    lines = text.strip().splitlines()
    assert 1 <= len(lines) <= 2, text
    assert lines[0].startswith("error: "), text
    assert "Traceback" not in text and "MarkupError" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)


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
    assert b"pip install -e '.[bench]'" in done.stderr


def test_bench_embedded_default(tmp_path: Path) -> None:
    # the embedded default: fake workers behind smg (--enable-rl) when it is installed
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
    assert data["embedded"]["router"] is (default_gateway() is not None)
    assert data["embedded"]["gateway"] == default_gateway()
    assert data["embedded"]["num_workers"] == 2
    assert data["total_output_tokens"] == 64
    if smg_available():
        assert data["embedded"]["gateway"] == "smg"
        assert data["target_kind"] == "router"
        assert "behind smg" in text


@pytest.mark.parametrize("gateway", ["smg", "sglang-router"])
def test_bench_embedded_gateway_chat(tmp_path: Path, gateway: str) -> None:
    # --gateway chooses the embedded gateway; chat without --model sends the served
    # model name from /v1/models (smg routes by it, 0.3.2 passes it on)
    if not (smg_available() if gateway == "smg" else router_available()):
        pytest.skip(f"{gateway} is not installed")
    out = tmp_path / "bench.json"
    code, text = _invoke(
        "bench",
        "--gateway",
        gateway,
        "--endpoint",
        "chat",
        "--num-prompts",
        "6",
        "--random-input-len",
        "8",
        "--random-output-len",
        "4",
        "--num-workers",
        "1",
        "-q",
        "--output-file",
        str(out),
    )
    assert code == 0, text
    data = json.loads(out.read_text())
    assert data["completed"] == 6 and data["failed"] == 0, data.get("errors")
    assert data["embedded"]["gateway"] == gateway and data["target_kind"] == "router"
    assert f"behind {gateway}" in text


def test_bench_gateway_option_is_checked() -> None:
    code, text = _invoke("bench", "--gateway", "nginx", "--num-prompts", "1")
    assert code == 2 and "--gateway" in text, text
    code, text = _invoke("bench", "--gateway", "smg", "--url", "http://127.0.0.1:9")
    assert code == 2 and "--gateway" in text and "--url" in text, text
    code, text = _invoke("bench", "--gateway", "smg", "--no-router")
    assert code == 2 and "--no-router" in text, text


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
    out = tmp_path / "sweep.jsonl"
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
    points = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["sweep_value"] for p in points] == [1, 2]
    assert len(list(tmp_path.glob("sweep-sweep-*.png"))) == 1


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
            # a finite rate: the runner starts one task per released request, and
            # cancelling 100,000 waiting tasks at once takes longer than the wait below
            "--request-rate",
            "200",
            "--random-input-len",
            "8",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        want = 3 if default_gateway() else 2
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


# -- errors, --version, -h ------------------------------------------------------


def test_bad_url_is_a_usage_error_naming_the_argument() -> None:
    done = _run_cli("health", "not-a-url")
    assert done.returncode == 2, done.stderr
    _assert_short_error(done.stderr, "URL", "'not-a-url'")
    code, text = _invoke("bench", "--url", "not-a-url")
    assert code == 2
    _assert_short_error(text, "--url", "'not-a-url'")


def test_host_port_without_scheme_means_http(server: FakeServer) -> None:
    host_port = server.url.removeprefix("http://")
    code, text = _invoke("generate", host_port, "hello", "--max-new-tokens", "2")
    assert code == 0 and "tok0 tok1" in text
    # nothing listens: a failure (1), reported in one line, no markup crash
    done = _run_cli("generate", f"localhost:{_closed_port()}", "Hello")
    assert done.returncode == 1, done.stderr
    _assert_short_error(done.stderr, "APIConnectionError", "localhost:")


def test_error_text_is_printed_verbatim_not_as_markup(server: FakeServer) -> None:
    body = "bad [/path] and [bold red]not markup[/]"
    server.app.faults.add(FaultSpec(path="/generate", status=400, body=body))
    done = _run_cli("generate", server.url, "hi")
    assert done.returncode == 1, done.stderr
    _assert_short_error(done.stderr, "BadRequestError", body)


def test_serve_fake_on_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _run_cli("serve-fake", "--port", str(port))
    assert done.returncode == 1, done.stderr
    _assert_short_error(done.stderr, "--port", str(port), "in use")
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--request-rate", "fast"], ["--request-rate", "'fast'"]),
        (["--request-rate", "0"], ["--request-rate"]),
        (["--sweep-concurrency", "a,b"], ["--sweep-concurrency", "'a,b'"]),
        (["--sweep-rate", "1,x"], ["--sweep-rate"]),
        (["--num-prompts", "0"], ["--num-prompts", "greater than or equal to 1"]),
        (["--max-concurrency", "0"], ["--max-concurrency"]),
        (["--extra-request-body", "[1"], ["--extra-request-body"]),
        (["--extra-request-body", "[1]"], ["--extra-request-body", "JSON object"]),
        (["--header", "nothing"], ["--header"]),
        (["--num-prompts", "many"], ["--num-prompts"]),
        (["--no-such-option"], ["--no-such-option"]),
        (["--sweep-concurrency", "0"], ["--sweep-concurrency", "0"]),
        (["--sweep-concurrency", "-1,2"], ["--sweep-concurrency", "-1"]),
        (["--sharegpt-output-len", "0"], ["--sharegpt-output-len"]),
        (
            ["--sweep-concurrency", "1", "--plot-file", "/nonexistent/dir/sweep.png"],
            ["--plot-file", "/nonexistent/dir"],
        ),
    ],
)
def test_bench_usage_errors_name_the_option(args: list[str], needles: list[str]) -> None:
    # (--ready-timeout 0: a value wrongly accepted fails fast on the closed port)
    code, text = _invoke("bench", "--url", "http://127.0.0.1:9", "--ready-timeout", "0", *args)
    assert code == 2, text
    _assert_short_error(text, *needles)
    assert "pydantic" not in text and "validation error" not in text


def test_usage_errors_of_the_small_commands() -> None:
    for args, needle in [
        (["health"], "url"),
        (["health", "http://127.0.0.1:9", "--wait", "soon"], "--wait"),
        (["no-such-command"], "no-such-command"),
        (["generate", "http://127.0.0.1:9"], "prompt"),
    ]:
        code, text = _invoke(*args)
        assert code == 2, (args, text)
        _assert_short_error(text, needle)


def test_failures_exit_1_in_one_line() -> None:
    code, text = _invoke("health", "http://127.0.0.1:9")
    assert code == 1
    _assert_short_error(text, "127.0.0.1:9")
    code, text = _invoke("chat", f"127.0.0.1:{_closed_port()}", "hi")
    assert code == 1
    _assert_short_error(text, "APIConnectionError")


def test_version() -> None:
    done = _run_cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"rlinf-http {__version__}"


@pytest.mark.parametrize("command", ["", "bench", "health", "generate", "chat", "serve-fake"])
def test_dash_h_everywhere(command: str) -> None:
    code, text = _invoke(*([command] if command else []), "-h")
    assert code == 0, text
    assert "Usage" in text and "--help" in text


def test_chat_defaults_to_the_served_model(server: FakeServer) -> None:
    code, text = _invoke("chat", server.url, "hi", "--max-tokens", "1")
    assert code == 0, text
    served = server.app.served_model_name
    assert served != DEFAULT_CHAT_MODEL
    assert server.app.stats["last_bodies"]["/v1/chat/completions"]["model"] == served


# -- child processes die with the CLI ---------------------------------------------


def _listening_ports(pid: int) -> set[int]:
    """TCP ports on which process ``pid`` listens (from /proc)."""
    return {port for state, port in _tcp_sockets(pid) if state == "0A"}  # 0A = LISTEN


def _tcp_sockets(pid: int) -> set[tuple[str, int]]:
    """(state, local port) of the TCP sockets of process ``pid`` (from /proc)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with_target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if with_target.startswith("socket:["):
                inodes.add(with_target[8:-1])
    except OSError:
        return set()
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    sockets.add((fields[3], int(fields[1].rsplit(":", 1)[1], 16)))
    return sockets


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("processes", [1, 2])
def test_kill_9_of_bench_leaves_no_process_listening(processes: int) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from rlinf_http.cli import main; main()",
            "bench",
            "--num-prompts",
            "100000",
            "--request-rate",
            "200",
            "--max-concurrency",
            "2",
            "--processes",
            str(processes),
            "--random-input-len",
            "8",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        servers = 3 if default_gateway() else 2  # fake workers (+ the gateway)
        clients = processes if processes > 1 else 0  # client processes of --processes
        deadline = time.monotonic() + 60
        sockets: dict[int, set[tuple[str, int]]] = {}
        while time.monotonic() < deadline:
            sockets = {k: _tcp_sockets(k) for k in _children(proc.pid)}
            listening = [k for k, s in sockets.items() if any(st == "0A" for st, _ in s)]
            # client processes sending requests: connected (01), not listening
            sending = [k for k, s in sockets.items() if s and k not in listening]
            if len(listening) >= servers and len(sending) >= clients:
                break
            time.sleep(0.2)
        assert len(listening) >= servers and len(sending) >= clients, sockets
        ports = {k: {p for st, p in s if st == "0A"} for k, s in sockets.items()}
        proc.kill()  # SIGKILL: no clean-up code runs in the CLI
        proc.wait(30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(k) for k in ports):
            time.sleep(0.1)
        assert not [k for k in ports if _alive(k)], "children outlived kill -9"
        assert not [p for ps in ports.values() for p in ps if _port_open(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
